import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { assertSlug } from '../core/names.js';
import { roleLevel } from '../core/tenancy.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { Id } from '../engine/http.js';
import { isUniqueViolation } from '../store/db.js';
import { getReseller } from '../directory/repo.js';
import { liveOrg } from '../directory/procedures.js';
import { syncAllocation } from '../resources/placement.js';
import { allocationOf, checkMailboxQuotaOrder, lockSubscription, MAX_BYTES, parseFeatures, SENDING_DEFAULTS, type OrgFeatures } from './limits.js';
import {
  CreateMailboxPlanBody, CreateOrgPlanBody, DEFAULT_FEATURES, DEFAULT_PROTOCOLS, ResellerPlanBody, SubscribeBody, toMailboxPlan, toOrgPlan,
  toSubscription, UpdateMailboxPlanBody, UpdateOrgPlanBody,
} from './model.js';
import { getOwnPlan, getPlan, type PlanTable } from './repo.js';

/** Persisted procedure ids (never rename). */
export const PP = {
  createOrgPlan: 'plans.create_organization_plan',
  updateOrgPlan: 'plans.update_organization_plan',
  deleteOrgPlan: 'plans.delete_organization_plan',
  createMailboxPlan: 'plans.create_mailbox_plan',
  updateMailboxPlan: 'plans.update_mailbox_plan',
  deleteMailboxPlan: 'plans.delete_mailbox_plan',
  setResellerPlan: 'plans.set_reseller_plan',
  subscribe: 'plans.subscribe_organization',
  addAvailablePlan: 'plans.add_available_plan',
  removeAvailablePlan: 'plans.remove_available_plan',
} as const;

/** The batch item procedure (mail area) that re-applies an edited mailbox plan to one mailbox. */
export const REAPPLY_MAILBOX_PLAN = 'mail.reapply_mailbox_plan';
/** The batch item procedure (mail area) that recomputes a mailbox's settings after its organization's plan changed. */
export const RESETTLE_MAILBOX = 'mail.resettle_mailbox';

/**
 * After an organization plan change: recompute the settings of the active mailboxes of `orgIds` (their
 * protocols are the mailbox plan's ∩ the organization plan's, their size is capped by maxMailboxBytes), as
 * batch requests of at most 100,000 items. Returns the batch request ids.
 */
async function resettleMailboxes(ctx: ProcContext, orgIds: string[], target: { type: string; id: string; resellerId: string | null; orgId: string | null }): Promise<string[]> {
  if (orgIds.length === 0) return [];
  const boxes: { id: string; org_id: string }[] = [];
  for (let i = 0; i < orgIds.length; i += 500) {
    boxes.push(...await ctx.tx.selectFrom('mailboxes').select(['id', 'org_id']).where('org_id', 'in', orgIds.slice(i, i + 500)).where('state', '=', 'active').orderBy('id').execute());
  }
  const ids: string[] = [];
  for (let i = 0; i < boxes.length; i += 100_000) {
    ids.push(ctx.spawnBatch({ procedure: RESETTLE_MAILBOX, items: boxes.slice(i, i + 100_000).map((b) => ({ orgId: b.org_id, mailboxId: b.id })), target }));
  }
  return ids;
}

const strict = { additionalProperties: false } as const;
const withRef = (ref: Record<string, any>, body: any) => Type.Object({ ...ref, ...body.properties }, strict);

/** Who owns a new plan: provider roles choose (default the provider), a reseller admin always its own reseller. */
async function ownerFor(ctx: ProcContext, resellerId: string | undefined): Promise<{ ownerKey: string; resellerId: string | null }> {
  if (roleLevel(ctx.principal.role) === 'provider') {
    if (!resellerId) return { ownerKey: 'provider', resellerId: null };
    const r = await getReseller(ctx.tx, ctx.principal, resellerId);
    return { ownerKey: r.id, resellerId: r.id };
  }
  if (resellerId !== undefined && resellerId !== ctx.principal.resellerId) throw Errors.notFound(`reseller ${resellerId} not found`);
  return { ownerKey: ctx.principal.resellerId!, resellerId: ctx.principal.resellerId! };
}

/** The reseller's own (ceiling) plan; its plans may not exceed it. */
async function ceilingOf(ctx: ProcContext, resellerId: string): Promise<any> {
  const rp = await ctx.tx.selectFrom('reseller_plans').select('org_plan_id').where('reseller_id', '=', resellerId).executeTakeFirst();
  if (!rp) throw Errors.noResellerPlan('the reseller has no plan of its own yet; the provider assigns one (PUT /api/v1/resellers/{id}/plan)');
  return ctx.tx.selectFrom('org_plans').selectAll().where('id', '=', rp.org_plan_id).executeTakeFirstOrThrow();
}

const within = (value: number | null, cap: number | null): boolean => cap === null || (value !== null && value <= cap);

/** Refuse an organization plan row that exceeds the reseller's own plan, naming each excess. */
function checkOrgPlanCeiling(row: any, ceiling: any): void {
  const bad: string[] = [];
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  for (const [col, name] of [['max_mailboxes', 'maxMailboxes'], ['max_domains', 'maxDomains'], ['max_groups', 'maxGroups'], ['max_contacts', 'maxContacts'],
    ['max_public_folders', 'maxPublicFolders'], ['max_mailbox_bytes', 'maxMailboxBytes'], ['max_messages_per_hour', 'maxMessagesPerHour'],
    ['max_recipients_per_day', 'maxRecipientsPerDay']] as const) {
    if (!within(n(row[col]), n(ceiling[col]))) bad.push(`${name} ${row[col] ?? 'unlimited'} > ${ceiling[col]}`);
  }
  const ceilStorage = Number(ceiling.dynamic_storage) === 1 ? null : n(ceiling.storage_bytes);
  if (ceilStorage !== null && (Number(row.dynamic_storage) === 1 || !within(n(row.storage_bytes), ceilStorage))) {
    bad.push(`storage ${Number(row.dynamic_storage) === 1 ? 'dynamic' : row.storage_bytes} > ${ceilStorage}`);
  }
  if (Number(row.public_folder_bytes) > Number(ceiling.public_folder_bytes)) bad.push(`publicFolderBytes ${row.public_folder_bytes} > ${ceiling.public_folder_bytes}`);
  const f = JSON.parse(row.features) as OrgFeatures;
  const cf = parseFeatures(ceiling);
  for (const k of ['publicFolders', 'mobility', 'unifiedMessaging', 'collaboration'] as const) if (f[k] && !cf[k]) bad.push(`feature ${k}`);
  for (const p of f.protocols) if (!cf.protocols.includes(p)) bad.push(`protocol ${p}`);
  if (bad.length > 0) throw Errors.resellerPlanExceeded(`the plan exceeds the reseller's own plan: ${bad.join('; ')}`);
}

function checkMailboxPlanCeiling(row: any, ceiling: any): void {
  const bad: string[] = [];
  if (ceiling.max_mailbox_bytes !== null && Number(row.prohibit_send_receive_quota) > Number(ceiling.max_mailbox_bytes)) {
    bad.push(`prohibitSendReceiveQuota ${row.prohibit_send_receive_quota} > ${ceiling.max_mailbox_bytes}`);
  }
  const cf = parseFeatures(ceiling);
  for (const p of JSON.parse(row.protocols) as string[]) if (!cf.protocols.includes(p as never)) bad.push(`protocol ${p}`);
  if (bad.length > 0) throw Errors.resellerPlanExceeded(`the plan exceeds the reseller's own plan: ${bad.join('; ')}`);
}

/**
 * A plan the caller may change, its row locked for the edit (PostgreSQL FOR UPDATE): two edits of one plan
 * serialise, so versions and the re-apply batches they start stay in order.
 */
async function lockOwnPlan(ctx: ProcContext, table: PlanTable, id: string): Promise<any> {
  let q = ctx.tx.selectFrom(table).select('id').where('id', '=', id);
  if (ctx.dialect === 'postgres') q = q.forUpdate();
  await q.executeTakeFirst();
  return getOwnPlan(ctx, table, id);
}

/** The columns an edit may write: everything but identity, owner and name. */
function editableColumns(row: any): Record<string, unknown> {
  const { id: _i, created_at: _c, owner_key: _o, reseller_id: _r, name: _n, ...set } = row;
  return set;
}

const nameTaken = (e: unknown, name: string): never => {
  if (isUniqueViolation(e)) throw Errors.nameTaken(`a plan named ${name} exists for this owner`);
  throw e;
};
const planTarget = (row: any, type: string) => ({ type, id: row.id, resellerId: row.reseller_id ?? null, orgId: null });

/** Apply the optional fields of an organization plan body onto a row. */
function orgPlanColumns(input: any, base: any): any {
  const row = { ...base };
  const set = (col: string, v: unknown) => v !== undefined && (row[col] = v);
  set('display_name', input.displayName);
  set('max_mailboxes', input.maxMailboxes);
  set('max_domains', input.maxDomains);
  set('max_groups', input.maxGroups);
  set('max_contacts', input.maxContacts);
  set('max_public_folders', input.maxPublicFolders);
  set('storage_bytes', input.storageBytes);
  if (input.dynamicStorage !== undefined) row.dynamic_storage = input.dynamicStorage ? 1 : 0;
  set('max_mailbox_bytes', input.maxMailboxBytes);
  set('mailstore_kind', input.mailstoreKind);
  set('placement', input.placement);
  set('public_folder_bytes', input.publicFolderBytes);
  set('max_messages_per_hour', input.maxMessagesPerHour);
  set('max_recipients_per_day', input.maxRecipientsPerDay);
  if (input.features !== undefined) row.features = JSON.stringify({ ...JSON.parse(row.features), ...input.features });
  if (Number(row.dynamic_storage) !== 1 && (row.storage_bytes === null || row.storage_bytes === undefined)) {
    throw Errors.invalidRequest('storageBytes is required unless dynamicStorage is true');
  }
  return row;
}

// ---------------- organization plans ----------------

export const createOrgPlan = defineProcedure({
  id: PP.createOrgPlan,
  input: CreateOrgPlanBody,
  minRole: 'reseller_admin',
  async run(ctx, input: any) {
    const owner = await ownerFor(ctx, input.resellerId);
    // a reseller's plan starts from its own plan's limits, so only what it narrows needs saying
    const ceiling = owner.resellerId ? await ceilingOf(ctx, owner.resellerId) : null;
    const row = orgPlanColumns(input, {
      id: newId('orgPlan'), owner_key: owner.ownerKey, reseller_id: owner.resellerId, name: assertSlug(input.name, 'plan name'), display_name: input.name,
      max_mailboxes: ceiling?.max_mailboxes ?? null, max_domains: ceiling?.max_domains ?? null, max_groups: ceiling?.max_groups ?? null,
      max_contacts: ceiling?.max_contacts ?? null, max_public_folders: ceiling?.max_public_folders ?? null, storage_bytes: null, dynamic_storage: 0,
      max_mailbox_bytes: ceiling?.max_mailbox_bytes ?? null, mailstore_kind: 'shared', placement: 'tightPack', public_folder_bytes: 0,
      max_messages_per_hour: Math.min(SENDING_DEFAULTS.organization.maxMessagesPerHour, Number(ceiling?.max_messages_per_hour ?? Infinity)),
      max_recipients_per_day: Math.min(SENDING_DEFAULTS.organization.maxRecipientsPerDay, Number(ceiling?.max_recipients_per_day ?? Infinity)),
      features: JSON.stringify(ceiling ? { ...DEFAULT_FEATURES, protocols: parseFeatures(ceiling).protocols } : DEFAULT_FEATURES),
      version: 1, created_at: ctx.now, updated_at: ctx.now,
    });
    if (ceiling) checkOrgPlanCeiling(row, ceiling);
    await ctx.tx.insertInto('org_plans').values(row).execute().catch((e) => nameTaken(e, row.name));
    ctx.target(planTarget(row, 'organization_plan'));
    ctx.diff(null, toOrgPlan(row));
    return toOrgPlan(row);
  },
});

export const updateOrgPlan = defineProcedure({
  id: PP.updateOrgPlan,
  input: withRef({ planId: Id('opl') }, UpdateOrgPlanBody),
  minRole: 'reseller_admin',
  async run(ctx, input: any) {
    const before = await lockOwnPlan(ctx, 'org_plans', input.planId);
    const after = orgPlanColumns(input, { ...before, version: Number(before.version) + 1, updated_at: ctx.now });
    if (after.reseller_id) checkOrgPlanCeiling(after, await ceilingOf(ctx, after.reseller_id));
    // An allocation may not drop below what its organizations are already charged (charged ≤ allocated).
    const subs = await ctx.tx.selectFrom('org_subscriptions').selectAll().where('org_plan_id', '=', before.id).execute();
    for (const sub of subs) {
      const a = allocationOf({ sub, plan: after });
      if (!a.dynamic && BigInt(sub.mailbox_bytes) > BigInt(a.mailboxBytes)) {
        throw Errors.storageLimit(`organization ${sub.org_id} is charged ${sub.mailbox_bytes} bytes of mailbox storage; the plan would give it ${a.mailboxBytes}`);
      }
      if (BigInt(sub.public_folder_bytes) > BigInt(a.publicFolderBytes)) {
        throw Errors.storageLimit(`organization ${sub.org_id} is charged ${sub.public_folder_bytes} bytes of public-folder storage; the plan would give it ${a.publicFolderBytes}`);
      }
    }
    const set = editableColumns(after);
    await ctx.tx.updateTable('org_plans').set(set).where('id', '=', before.id).execute();
    // each organization's placed allocation follows the plan's new size (grown or shrunk on its stores)
    for (const sub of subs) {
      const s = await lockSubscription(ctx, sub.org_id);
      await syncAllocation(ctx, s, 'mailbox');
      await syncAllocation(ctx, s, 'public_folder');
    }
    // what mailboxes take from the organization plan: allowed protocols and the largest mailbox
    const reaches = JSON.stringify(parseFeatures(before).protocols) !== JSON.stringify(parseFeatures(after).protocols) || String(before.max_mailbox_bytes) !== String(after.max_mailbox_bytes);
    const resettle = reaches ? await resettleMailboxes(ctx, subs.map((x) => x.org_id), planTarget(before, 'organization_plan')) : [];
    ctx.target(planTarget(before, 'organization_plan'));
    ctx.diff(toOrgPlan(before), toOrgPlan(after));
    for (const sub of subs) {
      ctx.event({ resellerId: sub.reseller_id, orgId: sub.org_id, objectType: 'organization', objectId: sub.org_id, event: 'plan_changed', data: { orgPlanId: before.id, version: after.version } });
    }
    return { ...toOrgPlan(after), resettleRequestIds: resettle };
  },
});

export const deleteOrgPlan = defineProcedure({
  id: PP.deleteOrgPlan,
  input: Type.Object({ planId: Id('opl') }, strict),
  minRole: 'reseller_admin',
  async run(ctx, input) {
    const before = await getOwnPlan(ctx, 'org_plans', input.planId);
    const used = await ctx.tx.selectFrom('org_subscriptions').select('org_id').where('org_plan_id', '=', before.id).limit(1).executeTakeFirst()
      ?? await ctx.tx.selectFrom('reseller_plans').select('reseller_id as org_id').where('org_plan_id', '=', before.id).limit(1).executeTakeFirst();
    if (used) throw Errors.planInUse('organizations or resellers are on this plan; move them to another plan first');
    await ctx.tx.deleteFrom('org_plans').where('id', '=', before.id).execute();
    ctx.target(planTarget(before, 'organization_plan'));
    ctx.diff(toOrgPlan(before), null);
    return toOrgPlan(before);
  },
});

// ---------------- mailbox plans ----------------

function mailboxPlanColumns(input: any, base: any): any {
  const row = { ...base };
  const set = (col: string, v: unknown) => v !== undefined && (row[col] = v);
  set('display_name', input.displayName);
  set('issue_warning_quota', input.issueWarningQuota);
  set('prohibit_send_quota', input.prohibitSendQuota);
  set('prohibit_send_receive_quota', input.prohibitSendReceiveQuota);
  set('max_send_size', input.maxSendSize);
  set('max_receive_size', input.maxReceiveSize);
  set('recipient_limit', input.recipientLimit);
  set('max_messages_per_hour', input.maxMessagesPerHour);
  set('max_recipients_per_day', input.maxRecipientsPerDay);
  if (input.protocols !== undefined) row.protocols = JSON.stringify(input.protocols);
  if (input.hiddenFromAddressBook !== undefined) row.hidden_default = input.hiddenFromAddressBook ? 1 : 0;
  if (input.externalForwarding !== undefined) row.external_forwarding = input.externalForwarding ? 1 : 0;
  checkMailboxQuotaOrder({
    issueWarningQuota: Number(row.issue_warning_quota), prohibitSendQuota: Number(row.prohibit_send_quota), prohibitSendReceiveQuota: Number(row.prohibit_send_receive_quota),
  });
  return row;
}

const DEFAULT_MAX_MESSAGE = 36_700_160; // 35 MiB, Postfix's message_size_limit is 10 MB by default; hosters commonly allow 25-35 MB

export const createMailboxPlan = defineProcedure({
  id: PP.createMailboxPlan,
  input: CreateMailboxPlanBody,
  minRole: 'reseller_admin',
  async run(ctx, input: any) {
    const owner = await ownerFor(ctx, input.resellerId);
    const ceiling = owner.resellerId ? await ceilingOf(ctx, owner.resellerId) : null;
    const protocols = ceiling ? DEFAULT_PROTOCOLS.filter((p) => parseFeatures(ceiling).protocols.includes(p)) : DEFAULT_PROTOCOLS;
    const row = mailboxPlanColumns(input, {
      id: newId('mailboxPlan'), owner_key: owner.ownerKey, reseller_id: owner.resellerId, name: assertSlug(input.name, 'plan name'), display_name: input.name,
      max_send_size: DEFAULT_MAX_MESSAGE, max_receive_size: DEFAULT_MAX_MESSAGE, recipient_limit: 500,
      max_messages_per_hour: SENDING_DEFAULTS.mailbox.maxMessagesPerHour, max_recipients_per_day: SENDING_DEFAULTS.mailbox.maxRecipientsPerDay, protocols: JSON.stringify(protocols),
      hidden_default: 0, external_forwarding: 0, version: 1, created_at: ctx.now, updated_at: ctx.now,
    });
    if (ceiling) checkMailboxPlanCeiling(row, ceiling);
    await ctx.tx.insertInto('mailbox_plans').values(row).execute().catch((e) => nameTaken(e, row.name));
    ctx.target(planTarget(row, 'mailbox_plan'));
    ctx.diff(null, toMailboxPlan(row));
    return toMailboxPlan(row);
  },
});

export const updateMailboxPlan = defineProcedure({
  id: PP.updateMailboxPlan,
  input: withRef({ planId: Id('mpl') }, UpdateMailboxPlanBody),
  minRole: 'reseller_admin',
  async run(ctx, input: any) {
    const before = await lockOwnPlan(ctx, 'mailbox_plans', input.planId);
    const after = mailboxPlanColumns(input, { ...before, version: Number(before.version) + 1, updated_at: ctx.now });
    if (after.reseller_id) checkMailboxPlanCeiling(after, await ceilingOf(ctx, after.reseller_id));
    const set = editableColumns(after);
    await ctx.tx.updateTable('mailbox_plans').set(set).where('id', '=', before.id).execute();
    // Re-apply to every mailbox on the plan as one resumable batch request with per-item results; an item
    // skips a mailbox already at this version, so a batch resumed after a crash updates each mailbox once.
    const boxes = await ctx.tx.selectFrom('mailboxes').select(['id', 'org_id']).where('mailbox_plan_id', '=', before.id).where('state', '=', 'active').orderBy('id').execute();
    let reapplyRequestId: string | null = null;
    if (boxes.length > 0) {
      reapplyRequestId = ctx.spawnBatch({
        procedure: REAPPLY_MAILBOX_PLAN,
        items: boxes.map((b) => ({ orgId: b.org_id, mailboxId: b.id, planId: before.id, version: after.version })),
        target: planTarget(before, 'mailbox_plan'),
      });
    }
    ctx.target(planTarget(before, 'mailbox_plan'));
    ctx.diff(toMailboxPlan(before), toMailboxPlan(after));
    return { ...toMailboxPlan(after), reapplyRequestId };
  },
});

export const deleteMailboxPlan = defineProcedure({
  id: PP.deleteMailboxPlan,
  input: Type.Object({ planId: Id('mpl') }, strict),
  minRole: 'reseller_admin',
  async run(ctx, input) {
    const before = await getOwnPlan(ctx, 'mailbox_plans', input.planId);
    const used = await ctx.tx.selectFrom('mailboxes').select('id').where('mailbox_plan_id', '=', before.id).limit(1).executeTakeFirst();
    if (used) throw Errors.planInUse('mailboxes are on this plan; move them to another plan first');
    await ctx.tx.deleteFrom('org_available_plans').where('mailbox_plan_id', '=', before.id).execute();
    await ctx.tx.deleteFrom('mailbox_plans').where('id', '=', before.id).execute();
    ctx.target(planTarget(before, 'mailbox_plan'));
    ctx.diff(toMailboxPlan(before), null);
    return toMailboxPlan(before);
  },
});

// ---------------- reseller plan, subscriptions, available plans ----------------

export const setResellerPlan = defineProcedure({
  id: PP.setResellerPlan,
  input: withRef({ resellerId: Id('rsl') }, ResellerPlanBody),
  minRole: 'provider_admin',
  async run(ctx, input: any) {
    const r = await getReseller(ctx.tx, ctx.principal, input.resellerId);
    const plan = await getPlan(ctx.tx, ctx.principal, 'org_plans', input.orgPlanId);
    if (plan.owner_key !== 'provider') throw Errors.invalidRequest('a reseller\'s own plan must be a provider plan');
    const before = await ctx.tx.selectFrom('reseller_plans').selectAll().where('reseller_id', '=', r.id).executeTakeFirst();
    if (before) await ctx.tx.updateTable('reseller_plans').set({ org_plan_id: plan.id, updated_at: ctx.now }).where('reseller_id', '=', r.id).execute();
    else await ctx.tx.insertInto('reseller_plans').values({ reseller_id: r.id, org_plan_id: plan.id, updated_at: ctx.now }).execute();
    const view = { resellerId: r.id, orgPlanId: plan.id, updatedAt: new Date(ctx.now).toISOString() };
    ctx.target({ type: 'reseller', id: r.id, resellerId: r.id, orgId: null });
    ctx.diff(before ? { orgPlanId: before.org_plan_id } : null, view);
    ctx.event({ resellerId: r.id, orgId: null, objectType: 'reseller', objectId: r.id, event: 'plan_changed', data: { orgPlanId: plan.id } });
    return view;
  },
});

export const subscribe = defineProcedure({
  id: PP.subscribe,
  input: withRef({ orgId: Id('org') }, SubscribeBody),
  minRole: 'reseller_admin',
  async run(ctx, input: any) {
    const org = await liveOrg(ctx, input.orgId, 'update');
    const plan = await getPlan(ctx.tx, ctx.principal, 'org_plans', input.orgPlanId);
    if (plan.owner_key !== 'provider' && plan.owner_key !== org.reseller_id) throw Errors.notFound(`plan ${input.orgPlanId} not found`);
    if (input.storageBytes !== undefined && input.storageBytes !== null && roleLevel(ctx.principal.role) !== 'provider') {
      // a reseller may size one organization's allocation, but not past its own plan
      const ceiling = await ceilingOf(ctx, org.reseller_id);
      if (Number(ceiling.dynamic_storage) !== 1 && ceiling.storage_bytes !== null && input.storageBytes > Number(ceiling.storage_bytes)) {
        throw Errors.resellerPlanExceeded(`storage ${input.storageBytes} > ${ceiling.storage_bytes}, the reseller's own plan`);
      }
    }
    const existing = await ctx.tx.selectFrom('org_subscriptions').select('org_id').where('org_id', '=', org.id).executeTakeFirst();
    let before: any = null;
    if (!existing) {
      await ctx.tx.insertInto('org_subscriptions').values({
        org_id: org.id, reseller_id: org.reseller_id, org_plan_id: plan.id, storage_override: input.storageBytes ?? null, grown_bytes: 0,
        mailbox_count: 0, mailbox_bytes: 0, domain_count: 0, group_count: 0, contact_count: 0, public_folder_count: 0, public_folder_bytes: 0,
        created_at: ctx.now, updated_at: ctx.now,
      }).execute();
    } else {
      before = await lockSubscription(ctx, org.id);
      const override = input.storageBytes === undefined ? before.sub.storage_override : input.storageBytes;
      await ctx.tx.updateTable('org_subscriptions').set({ org_plan_id: plan.id, storage_override: override, updated_at: ctx.now }).where('org_id', '=', org.id).execute();
    }
    const s = await lockSubscription(ctx, org.id);
    // the new allocation must hold what is already charged, and the counts must fit the new plan
    const a = allocationOf(s);
    if (!a.dynamic && BigInt(s.sub.mailbox_bytes) > BigInt(a.mailboxBytes)) {
      throw Errors.storageLimit(`the organization is charged ${s.sub.mailbox_bytes} bytes of mailbox storage; the new allocation is ${a.mailboxBytes}`);
    }
    if (BigInt(s.sub.public_folder_bytes) > BigInt(a.publicFolderBytes)) {
      throw Errors.storageLimit(`the organization is charged ${s.sub.public_folder_bytes} bytes of public-folder storage; the new pool is ${a.publicFolderBytes}`);
    }
    for (const [col, max, what] of [['mailbox_count', 'max_mailboxes', 'mailboxes'], ['domain_count', 'max_domains', 'domains'], ['group_count', 'max_groups', 'groups'],
      ['contact_count', 'max_contacts', 'contacts'], ['public_folder_count', 'max_public_folders', 'public folders']] as const) {
      if (s.plan[max] !== null && Number(s.sub[col]) > Number(s.plan[max])) throw Errors.planLimit(`the organization has ${s.sub[col]} ${what}; the plan allows ${s.plan[max]}`);
    }
    if (Number(a.mailboxBytes) > MAX_BYTES) throw Errors.storageLimit(`an organization holds at most ${MAX_BYTES} bytes`);
    // the allocation is placed on mailstores now, so what the plan grants is room that exists
    await syncAllocation(ctx, s, 'mailbox');
    await syncAllocation(ctx, s, 'public_folder');
    const resettle = before && before.sub.org_plan_id !== plan.id ? await resettleMailboxes(ctx, [org.id], { type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id }) : [];
    const view = { ...toSubscription(s), resettleRequestIds: resettle };
    ctx.target({ type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(before ? toSubscription(before) : null, view);
    ctx.event({
      resellerId: org.reseller_id, orgId: org.id, objectType: 'organization', objectId: org.id, event: before ? 'plan_changed' : 'created',
      data: { orgPlanId: plan.id, storageBytes: a.mailboxBytes, subscription: true },
    });
    return view;
  },
});

const AvailableRef = Type.Object({ orgId: Id('org'), planId: Id('mpl') }, strict);

export const addAvailablePlan = defineProcedure({
  id: PP.addAvailablePlan,
  input: AvailableRef,
  minRole: 'reseller_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const plan = await getPlan(ctx.tx, ctx.principal, 'mailbox_plans', input.planId);
    if (plan.owner_key !== 'provider' && plan.owner_key !== org.reseller_id) throw Errors.notFound(`plan ${input.planId} not found`);
    const s = await lockSubscription(ctx, org.id);
    if (s.plan.max_mailbox_bytes !== null && Number(plan.prohibit_send_receive_quota) > Number(s.plan.max_mailbox_bytes)) {
      throw Errors.planLimit(`the organization's plan allows mailboxes of at most ${s.plan.max_mailbox_bytes} bytes; this plan gives ${plan.prohibit_send_receive_quota}`);
    }
    const exists = await ctx.tx.selectFrom('org_available_plans').select('org_id').where('org_id', '=', org.id).where('mailbox_plan_id', '=', plan.id).executeTakeFirst();
    if (!exists) await ctx.tx.insertInto('org_available_plans').values({ org_id: org.id, mailbox_plan_id: plan.id, reseller_id: org.reseller_id }).execute();
    const view = { orgId: org.id, planId: plan.id, name: plan.name, displayName: plan.display_name };
    ctx.target({ type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(exists ? view : null, view);
    return view;
  },
});

export const removeAvailablePlan = defineProcedure({
  id: PP.removeAvailablePlan,
  input: AvailableRef,
  minRole: 'reseller_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const row = await ctx.tx
      .selectFrom('org_available_plans').innerJoin('mailbox_plans', 'mailbox_plans.id', 'org_available_plans.mailbox_plan_id')
      .select(['mailbox_plans.id as id', 'mailbox_plans.name as name', 'mailbox_plans.display_name as display_name'])
      .where('org_available_plans.org_id', '=', org.id).where('org_available_plans.mailbox_plan_id', '=', input.planId).executeTakeFirst();
    if (!row) throw Errors.notFound(`plan ${input.planId} is not available to this organization`);
    // mailboxes already on the plan keep it; new mailboxes and plan changes can no longer choose it
    await ctx.tx.deleteFrom('org_available_plans').where('org_id', '=', org.id).where('mailbox_plan_id', '=', row.id).execute();
    const view = { orgId: org.id, planId: row.id, name: row.name, displayName: row.display_name };
    ctx.target({ type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(view, null);
    return view;
  },
});

export const plansProcedures = [
  createOrgPlan, updateOrgPlan, deleteOrgPlan, createMailboxPlan, updateMailboxPlan, deleteMailboxPlan, setResellerPlan, subscribe,
  addAvailablePlan, removeAvailablePlan,
];
