import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Errors } from '../core/errors.js';
import { roleLevel } from '../core/tenancy.js';
import { errorResponses, Id, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps, type VisibilityRegistry } from '../engine/http.js';
import { mapPage } from '../store/page.js';
import { getOrganization } from '../directory/repo.js';
import {
  AvailablePlanView, CreateMailboxPlanBody, CreateOrgPlanBody, MailboxPlanView, OrgPlanView, ResellerPlanBody, ResellerPlanView, SubscribeBody,
  SubscriptionView, toMailboxPlan, toOrgPlan, toSubscription, UpdateMailboxPlanBody, UpdateOrgPlanBody,
} from './model.js';
import { PP } from './procedures.js';
import * as repo from './repo.js';

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const ok = (view: TSchema, status = 200) => ({ [status]: view, 202: view, ...errorResponses });
const tag = (t: string) => ({ tags: [t], security: [{ bearer: [] }] });
const Owner = Type.Optional(Type.String({ maxLength: 30, description: '"provider" or a reseller id' }));

/** Plans are visible as repo.plansQuery says; everything else is 404 before validation. */
export const plansVisibility: VisibilityRegistry = {
  orgPlan: async (db, p, id) => !!(await repo.plansQuery(db, p, 'org_plans').where('id', '=', id).executeTakeFirst()),
  mailboxPlan: async (db, p, id) => !!(await repo.plansQuery(db, p, 'mailbox_plans').where('id', '=', id).executeTakeFirst()),
};

export function registerPlansRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const ORG_PLAN = { planId: Id('opl') };
  const MAILBOX_PLAN = { planId: Id('mpl') };
  const ORG = { orgId: Id('org') };

  // ---- organization plans ----
  app.get('/api/v1/plans/organization', { schema: { ...tag('plans'), querystring: Type.Object({ ...ListQuery, owner: Owner }, strict), response: { 200: ListOf(OrgPlanView) } } },
    async (req) => mapPage(await repo.listPlans(db, req.principal, 'org_plans', req.query as any), toOrgPlan));
  app.post('/api/v1/plans/organization', { schema: { ...tag('plans'), querystring: WaitQuery, body: CreateOrgPlanBody, response: ok(OrgPlanView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.createOrgPlan, req.body, 201));
  app.get('/api/v1/plans/organization/:planId', { schema: { ...tag('plans'), params: params(ORG_PLAN), response: { 200: OrgPlanView, ...errorResponses } } },
    async (req) => toOrgPlan(await repo.getPlan(db, req.principal, 'org_plans', (req.params as any).planId)));
  app.patch('/api/v1/plans/organization/:planId', { schema: { ...tag('plans'), params: params(ORG_PLAN), querystring: WaitQuery, body: UpdateOrgPlanBody, response: ok(OrgPlanView) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.updateOrgPlan, { ...(req.body as object), ...(req.params as object) }));
  app.delete('/api/v1/plans/organization/:planId', { schema: { ...tag('plans'), params: params(ORG_PLAN), querystring: WaitQuery, response: ok(OrgPlanView) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.deleteOrgPlan, req.params));

  // ---- mailbox plans ----
  app.get('/api/v1/plans/mailbox', { schema: { ...tag('plans'), querystring: Type.Object({ ...ListQuery, owner: Owner }, strict), response: { 200: ListOf(MailboxPlanView) } } },
    async (req) => mapPage(await repo.listPlans(db, req.principal, 'mailbox_plans', req.query as any), toMailboxPlan));
  app.post('/api/v1/plans/mailbox', { schema: { ...tag('plans'), querystring: WaitQuery, body: CreateMailboxPlanBody, response: ok(MailboxPlanView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.createMailboxPlan, req.body, 201));
  app.get('/api/v1/plans/mailbox/:planId', { schema: { ...tag('plans'), params: params(MAILBOX_PLAN), response: { 200: MailboxPlanView, ...errorResponses } } },
    async (req) => toMailboxPlan(await repo.getPlan(db, req.principal, 'mailbox_plans', (req.params as any).planId)));
  app.patch('/api/v1/plans/mailbox/:planId', {
    schema: {
      ...tag('plans'), params: params(MAILBOX_PLAN), querystring: WaitQuery, body: UpdateMailboxPlanBody, response: ok(MailboxPlanView),
      description: 'Edit a mailbox plan. Its mailboxes are re-applied by a batch request (`reapplyRequestId`; per-item results under /api/v1/requests/{id}/items).',
    },
  }, (req, reply) => submitAndReply(req, reply, deps, PP.updateMailboxPlan, { ...(req.body as object), ...(req.params as object) }));
  app.delete('/api/v1/plans/mailbox/:planId', { schema: { ...tag('plans'), params: params(MAILBOX_PLAN), querystring: WaitQuery, response: ok(MailboxPlanView) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.deleteMailboxPlan, req.params));

  // ---- a reseller's own plan ----
  app.put('/api/v1/resellers/:resellerId/plan', { schema: { ...tag('plans'), params: params({ resellerId: Id('rsl') }), querystring: WaitQuery, body: ResellerPlanBody, response: ok(ResellerPlanView) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.setResellerPlan, { ...(req.body as object), ...(req.params as object) }));
  app.get('/api/v1/resellers/:resellerId/plan', { schema: { ...tag('plans'), params: params({ resellerId: Id('rsl') }), response: { 200: ResellerPlanView, ...errorResponses } } },
    async (req) => {
      const { resellerId } = req.params as { resellerId: string };
      const r = await db.selectFrom('reseller_plans').selectAll().where('reseller_id', '=', resellerId).executeTakeFirst();
      if (!r) throw Errors.notFound('the reseller has no plan of its own');
      return { resellerId: r.reseller_id, orgPlanId: r.org_plan_id, updatedAt: new Date(Number(r.updated_at)).toISOString() };
    });

  // ---- organization subscription and available mailbox plans ----
  app.put('/api/v1/organizations/:orgId/subscription', { schema: { ...tag('plans'), params: params(ORG), querystring: WaitQuery, body: SubscribeBody, response: ok(SubscriptionView) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.subscribe, { ...(req.body as object), ...(req.params as object) }));
  app.get('/api/v1/organizations/:orgId/subscription', { schema: { ...tag('plans'), params: params(ORG), response: { 200: SubscriptionView, ...errorResponses } } },
    async (req) => {
      const org = await getOrganization(db, req.principal, (req.params as any).orgId);
      if (roleLevel(req.principal.role) === 'user') throw Errors.notFound(`organization ${org.id} not found`);
      const s = await repo.findSubscription(db, org.id);
      if (!s) throw Errors.notFound('the organization has no subscription');
      return toSubscription(s);
    });
  app.get('/api/v1/organizations/:orgId/available-plans', { schema: { ...tag('plans'), params: params(ORG), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(AvailablePlanView), ...errorResponses } } },
    async (req) => {
      const org = await getOrganization(db, req.principal, (req.params as any).orgId);
      return mapPage(await repo.listAvailablePlans(db, org.id, req.query as any), (r: any) => ({ orgId: r.org_id, planId: r.id, name: r.name, displayName: r.display_name }));
    });
  app.put('/api/v1/organizations/:orgId/available-plans/:planId', { schema: { ...tag('plans'), params: params({ ...ORG, ...MAILBOX_PLAN }), querystring: WaitQuery, response: ok(AvailablePlanView) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.addAvailablePlan, req.params));
  app.delete('/api/v1/organizations/:orgId/available-plans/:planId', { schema: { ...tag('plans'), params: params({ ...ORG, ...MAILBOX_PLAN }), querystring: WaitQuery, response: ok(AvailablePlanView) } },
    (req, reply) => submitAndReply(req, reply, deps, PP.removeAvailablePlan, req.params));
}
