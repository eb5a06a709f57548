import type { SelectQueryBuilder } from 'kysely';
import { Errors } from '../core/errors.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import type { ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';
import { page, type Page, type PageParams } from '../store/page.js';
import { noRows } from '../store/scope.js';

/**
 * Plan queries, scoped. A plan is visible to the provider; to the reseller that owns it; and to the
 * tenants it is offered to: a reseller sees the provider plan that is its own (ceiling) plan and the plans
 * its organizations are subscribed to or may use; an organization sees its subscription plan and its
 * available mailbox plans. Another reseller's plans are 404, like every object outside the scope.
 */

type Q = SelectQueryBuilder<any, any, any>;
export type PlanTable = 'org_plans' | 'mailbox_plans';

export function plansQuery(db: Db, p: Principal, table: PlanTable): Q {
  const q = db.selectFrom(table).selectAll();
  const level = roleLevel(p.role);
  if (level === 'provider') return q;
  if (level === 'reseller') {
    const r = p.resellerId!;
    return q.where((eb) =>
      eb.or(
        table === 'org_plans'
          ? [
              eb('owner_key', '=', r),
              eb('id', 'in', eb.selectFrom('reseller_plans').select('org_plan_id').where('reseller_id', '=', r)),
              eb('id', 'in', eb.selectFrom('org_subscriptions').select('org_plan_id').where('reseller_id', '=', r)),
            ]
          : [eb('owner_key', '=', r), eb('id', 'in', eb.selectFrom('org_available_plans').select('mailbox_plan_id').where('reseller_id', '=', r))],
      ),
    );
  }
  if (!p.orgId) return noRows(q);
  return table === 'org_plans'
    ? q.where('id', 'in', db.selectFrom('org_subscriptions').select('org_plan_id').where('org_id', '=', p.orgId))
    : q.where('id', 'in', db.selectFrom('org_available_plans').select('mailbox_plan_id').where('org_id', '=', p.orgId));
}

export async function getPlan(db: Db, p: Principal, table: PlanTable, id: string): Promise<any> {
  const r = await plansQuery(db, p, table).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`plan ${id} not found`);
  return r;
}

export function listPlans(db: Db, p: Principal, table: PlanTable, f: PageParams & { owner?: string }): Promise<Page<any>> {
  let q = plansQuery(db, p, table);
  if (f.owner) q = q.where('owner_key', '=', f.owner);
  return page(q, 'id', f);
}

/** Plans the caller may change: provider roles any plan, reseller admins only their reseller's. */
export async function getOwnPlan(ctx: Pick<ProcContext, 'tx' | 'principal'>, table: PlanTable, id: string): Promise<any> {
  const plan = await getPlan(ctx.tx, ctx.principal, table, id);
  const level = roleLevel(ctx.principal.role);
  if (level === 'provider') return plan;
  if (level === 'reseller' && plan.owner_key === ctx.principal.resellerId) return plan;
  throw Errors.forbidden(`plan ${id} belongs to ${plan.owner_key === 'provider' ? 'the provider' : 'another owner'}; only its owner changes it`);
}

/**
 * The mailbox plan `planId` for a mailbox of `orgId`: it must be one of the organization's available plans
 * (plan_not_available otherwise). Used by the mail area for every mailbox create and plan change.
 */
export async function requireMailboxPlan(ctx: Pick<ProcContext, 'tx'>, orgId: string, planId: string): Promise<any> {
  const plan = await ctx.tx
    .selectFrom('mailbox_plans')
    .selectAll('mailbox_plans')
    .innerJoin('org_available_plans', 'org_available_plans.mailbox_plan_id', 'mailbox_plans.id')
    .where('org_available_plans.org_id', '=', orgId)
    .where('mailbox_plans.id', '=', planId)
    .executeTakeFirst();
  if (!plan) throw Errors.planNotAvailable(`mailbox plan ${planId} is not available to this organization`);
  return plan;
}

/** The subscription of an organization (for views); undefined when it has none. */
export async function findSubscription(db: Db, orgId: string): Promise<{ sub: any; plan: any } | undefined> {
  const sub = await db.selectFrom('org_subscriptions').selectAll().where('org_id', '=', orgId).executeTakeFirst();
  if (!sub) return undefined;
  const plan = await db.selectFrom('org_plans').selectAll().where('id', '=', sub.org_plan_id).executeTakeFirstOrThrow();
  return { sub, plan };
}

export function listAvailablePlans(db: Db, orgId: string, f: PageParams): Promise<Page<any>> {
  const q = db
    .selectFrom('org_available_plans')
    .innerJoin('mailbox_plans', 'mailbox_plans.id', 'org_available_plans.mailbox_plan_id')
    .select(['org_available_plans.org_id as org_id', 'mailbox_plans.id as id', 'mailbox_plans.name as name', 'mailbox_plans.display_name as display_name'])
    .where('org_available_plans.org_id', '=', orgId);
  return page(q, 'mailbox_plans.id', f);
}
