import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { conflictOn, liveOrg } from '../directory/procedures.js';
import { getUser } from '../directory/repo.js';
import { defineProcedure } from '../engine/procedure.js';
import { Id } from '../engine/http.js';
import { lockSubscription, type MailboxOverrides } from '../plans/limits.js';
import { requireMailboxPlan } from '../plans/repo.js';
import { addressesOf, claimAddress, type MailSettings } from './addresses.js';
import { checkKeptForwarding, forwardingColumns, placementOf, settleMailboxSettings } from './mailbox-settings.js';
import { mailboxAddressProcedures } from './mailboxes-addresses.js';
import { mailboxLifecycleProcedures } from './mailboxes-lifecycle.js';
import { ChangePlanBody, CreateMailboxBody, MAILBOX_PROCS, mailboxEvent, MailboxRef, mailboxTarget, UpdateMailboxBody } from './mailboxes-model.js';
import { lockMailbox, viewOf } from './mailboxes-repo.js';
import { reapplyMailboxPlan, resettleMailbox } from './reapply.js';

const strict = { additionalProperties: false } as const;
/* eslint-disable @typescript-eslint/no-explicit-any */

/**
 * Create a mailbox: its addresses claimed in the platform-wide namespace, its plan one of the
 * organization's available plans, its effective settings charged to the organization (counts and bytes
 * checked under the subscription lock, so concurrent creates cannot overshoot a limit).
 */
export const createMailbox = defineProcedure({
  id: MAILBOX_PROCS.createMailbox,
  input: Type.Object({ orgId: Id('org'), ...CreateMailboxBody.properties }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const kind = input.kind ?? 'user';
    let user: any = null;
    if (kind === 'user') {
      if (!input.userId) throw Errors.invalidRequest('a user mailbox needs userId');
      user = await getUser(ctx.tx, ctx.principal, org.id, input.userId);
      if (user.state !== 'active') throw Errors.stateConflict(`user ${user.id} is being deleted`);
      const has = await ctx.tx.selectFrom('mailboxes').select(['id', 'state']).where('user_id', '=', user.id).executeTakeFirst();
      if (has) throw Errors.userHasMailbox(`user ${user.id} already has mailbox ${has.id}${has.state === 'deleted' ? ' (deleted: restore it, or wait until it is purged)' : ''}`);
    } else {
      if (input.userId) throw Errors.invalidRequest(`a ${kind} mailbox belongs to no user; leave userId out`);
      if (!input.primaryAddress) throw Errors.invalidRequest(`a ${kind} mailbox needs primaryAddress`);
    }
    const s = await lockSubscription(ctx, org.id);
    const plan = await requireMailboxPlan(ctx, org.id, input.planId);
    const overrides: MailboxOverrides = input.overrides ?? {};
    const settings = await settleMailboxSettings(ctx, s, plan, overrides, { was: { storeId: null, charged: 0, counted: false }, active: true });
    const id = newId('mailbox');
    const claim = (address: string, isPrimary: boolean) =>
      claimAddress(ctx, { orgId: org.id, resellerId: org.reseller_id, address, recipientId: id, recipientKind: 'mailbox', isPrimary });
    const primary = await claim(input.primaryAddress ?? user.login, true);
    const aliases: string[] = [];
    for (const a of input.aliases ?? []) aliases.push(await claim(a, false));
    const fwd = await forwardingColumns(ctx.tx, input.forwarding, { externalAllowed: settings.external_forwarding === 1, own: [primary, ...aliases], orgId: org.id });
    const row = {
      id, org_id: org.id, reseller_id: org.reseller_id, kind, user_id: user?.id ?? null,
      display_name: input.displayName ?? user?.display_name ?? primary.slice(0, primary.indexOf('@')), primary_address: primary,
      ...settings, hidden: (input.hiddenFromAddressBook ?? Number(plan.hidden_default) === 1) ? 1 : 0, enabled: input.enabled === false ? 0 : 1, ...fwd,
      state: 'active', deleted_at: null, purge_after: null, created_at: ctx.now, updated_at: ctx.now,
    };
    await ctx.tx.insertInto('mailboxes').values(row).execute()
      .catch((e) => conflictOn(e, { user_id: () => Errors.userHasMailbox(`user ${input.userId} already has a mailbox`), mailboxes_user: () => Errors.userHasMailbox(`user ${input.userId} already has a mailbox`) }));
    const view = await viewOf(ctx.tx, row);
    ctx.target(mailboxTarget(row));
    ctx.diff(null, view);
    mailboxEvent(ctx, row, 'created', { kind, planId: plan.id, chargedBytes: row.charged_bytes });
    return view;
  },
});

/** Change display name, address-book visibility, enabled, overrides (re-charged) or forwarding. */
export const updateMailbox = defineProcedure({
  id: MAILBOX_PROCS.updateMailbox,
  input: Type.Object({ ...MailboxRef, ...UpdateMailboxBody.properties }, { ...strict, minProperties: 3 }),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const before = await lockMailbox(ctx, org.id, input.mailboxId);
    const set: Record<string, unknown> = {};
    if (input.displayName !== undefined) set.display_name = input.displayName;
    if (input.hiddenFromAddressBook !== undefined) set.hidden = input.hiddenFromAddressBook ? 1 : 0;
    if (input.enabled !== undefined) set.enabled = input.enabled ? 1 : 0;
    if (input.overrides !== undefined) {
      const s = await lockSubscription(ctx, org.id);
      const plan = await ctx.tx.selectFrom('mailbox_plans').selectAll().where('id', '=', before.mailbox_plan_id).executeTakeFirstOrThrow();
      // the mailbox keeps its plan version: only its own values change here
      const settings = await settleMailboxSettings(ctx, s, plan, input.overrides ?? {}, { was: placementOf(before), row: before, active: true });
      Object.assign(set, settings, { plan_version: Number(before.plan_version) });
    }
    if (input.forwarding !== undefined) {
      const own = (await addressesOf(ctx.tx, before.id)).map((a) => a.address);
      Object.assign(set, await forwardingColumns(ctx.tx, input.forwarding, { externalAllowed: Number(before.external_forwarding) === 1, own, orgId: before.org_id }));
    }
    set.updated_at = ctx.now;
    await ctx.tx.updateTable('mailboxes').set(set).where('id', '=', before.id).execute();
    const after = { ...before, ...set };
    const [was, is] = [await viewOf(ctx.tx, before), await viewOf(ctx.tx, after)];
    ctx.target(mailboxTarget(before));
    ctx.diff(was, is);
    // billing cares about what is charged and what is served
    if (input.overrides !== undefined || (input.enabled !== undefined && was.enabled !== is.enabled)) {
      mailboxEvent(ctx, after, 'updated', { overrides: is.overrides, chargedBytes: is.chargedBytes, enabled: is.enabled });
    }
    return is;
  },
});

/** Move a mailbox to another of the organization's available plans: settings recomputed and re-charged. */
export const changeMailboxPlan = defineProcedure({
  id: MAILBOX_PROCS.changeMailboxPlan,
  input: Type.Object({ ...MailboxRef, ...ChangePlanBody.properties }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const before = await lockMailbox(ctx, org.id, input.mailboxId);
    const s = await lockSubscription(ctx, org.id);
    const plan = await requireMailboxPlan(ctx, org.id, input.planId);
    const settings = await settleMailboxSettings(ctx, s, plan, JSON.parse(before.overrides), { was: placementOf(before), row: before, active: true });
    await checkKeptForwarding(ctx.tx, before, settings.external_forwarding === 1);
    const set = { ...settings, updated_at: ctx.now };
    await ctx.tx.updateTable('mailboxes').set(set).where('id', '=', before.id).execute();
    const after = { ...before, ...set };
    const [was, is] = [await viewOf(ctx.tx, before), await viewOf(ctx.tx, after)];
    ctx.target(mailboxTarget(before));
    ctx.diff(was, is);
    mailboxEvent(ctx, after, 'plan_changed', { from: before.mailbox_plan_id, to: plan.id, chargedBytes: is.chargedBytes });
    return is;
  },
});

/** Every mailbox procedure (the ones that need the mail settings are built from them). */
export function mailboxProcedures(settings: MailSettings) {
  return [createMailbox, updateMailbox, changeMailboxPlan, reapplyMailboxPlan, resettleMailbox, ...mailboxAddressProcedures(settings), ...mailboxLifecycleProcedures(settings)];
}
