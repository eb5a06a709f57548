import { Type } from '@sinclair/typebox';
import { liveOrg } from '../directory/procedures.js';
import { defineProcedure } from '../engine/procedure.js';
import { Id } from '../engine/http.js';
import { lockSubscription } from '../plans/limits.js';
import { REAPPLY_MAILBOX_PLAN, RESETTLE_MAILBOX } from '../plans/procedures.js';
import { checkKeptForwarding, placementOf, settleMailboxSettings } from './mailbox-settings.js';
import { mailboxEvent, mailboxTarget } from './mailboxes-model.js';
import { viewOf } from './mailboxes-repo.js';

/**
 * One item of the batch that re-applies an edited mailbox plan to every mailbox on it (started by the
 * plan's update). Idempotent by version: an item applies only while the mailbox is still on the plan and
 * below the edit's version, and then records the plan's current version, so a batch resumed after a crash
 * (or overtaken by a newer edit's batch) updates every mailbox exactly once. A mailbox the new settings
 * do not fit (STORAGE_LIMIT, PLAN_LIMIT, QUOTA_ORDER with its overrides) fails as its own item and stays
 * as it was; the other items go on.
 */
export const reapplyMailboxPlan = defineProcedure({
  id: REAPPLY_MAILBOX_PLAN,
  input: Type.Object({ orgId: Id('org'), mailboxId: Id('mbx'), planId: Id('mpl'), version: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
  minRole: 'reseller_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    let q = ctx.tx.selectFrom('mailboxes').selectAll().where('id', '=', input.mailboxId).where('org_id', '=', org.id);
    if (ctx.dialect === 'postgres') q = q.forUpdate();
    const before = await q.executeTakeFirst();
    const skipped = { mailboxId: input.mailboxId, skipped: true };
    if (!before || before.mailbox_plan_id !== input.planId || Number(before.plan_version) >= input.version) return skipped;
    const s = await lockSubscription(ctx, org.id);
    const plan = await ctx.tx.selectFrom('mailbox_plans').selectAll().where('id', '=', input.planId).executeTakeFirstOrThrow();
    const active = before.state === 'active';
    const cols = await settleMailboxSettings(ctx, s, plan, JSON.parse(before.overrides), { was: placementOf(before), row: before as any, active });
    if (active) await checkKeptForwarding(ctx.tx, before, cols.external_forwarding === 1);
    const set = { ...cols, updated_at: ctx.now };
    await ctx.tx.updateTable('mailboxes').set(set).where('id', '=', before.id).execute();
    const after = { ...before, ...set };
    const is = await viewOf(ctx.tx, after);
    ctx.target(mailboxTarget(before));
    ctx.diff(await viewOf(ctx.tx, before), is);
    if (cols.charged_bytes !== Number(before.charged_bytes)) mailboxEvent(ctx, after, 'updated', { planId: plan.id, planVersion: cols.plan_version, chargedBytes: cols.charged_bytes });
    return { mailboxId: before.id, skipped: false, planVersion: cols.plan_version, chargedBytes: cols.charged_bytes };
  },
});

/**
 * One item of the batch that follows a change of an organization's plan (a new subscription plan, or an
 * edit of its protocols or largest mailbox): the mailbox's settings are computed again from its mailbox plan
 * and the organization plan now in force. Idempotent (computing twice gives the same columns); a mailbox the
 * organization plan no longer allows (PLAN_LIMIT on maxMailboxBytes) fails as its own item and stays as it was.
 */
export const resettleMailbox = defineProcedure({
  id: RESETTLE_MAILBOX,
  input: Type.Object({ orgId: Id('org'), mailboxId: Id('mbx') }, { additionalProperties: false }),
  minRole: 'reseller_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    let q = ctx.tx.selectFrom('mailboxes').selectAll().where('id', '=', input.mailboxId).where('org_id', '=', org.id);
    if (ctx.dialect === 'postgres') q = q.forUpdate();
    const before = await q.executeTakeFirst();
    if (!before || before.state !== 'active') return { mailboxId: input.mailboxId, skipped: true };
    const s = await lockSubscription(ctx, org.id);
    const plan = await ctx.tx.selectFrom('mailbox_plans').selectAll().where('id', '=', before.mailbox_plan_id).executeTakeFirstOrThrow();
    const cols = await settleMailboxSettings(ctx, s, plan, JSON.parse(before.overrides), { was: placementOf(before), row: before as any, active: true });
    const changed = Object.entries(cols).filter(([k, v]) => String(before[k]) !== String(v)).map(([k]) => k);
    if (changed.length === 0) return { mailboxId: before.id, skipped: true };
    const set = { ...cols, updated_at: ctx.now };
    await ctx.tx.updateTable('mailboxes').set(set).where('id', '=', before.id).execute();
    const after = { ...before, ...set };
    ctx.target(mailboxTarget(before));
    ctx.diff(await viewOf(ctx.tx, before), await viewOf(ctx.tx, after));
    return { mailboxId: before.id, skipped: false, changed };
  },
});
