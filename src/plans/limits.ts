import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import type { ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';

/**
 * Quota math, one formula everywhere (DESIGN §3). Every figure the API shows about an organization's
 * storage and counts comes from `allocationOf` and the counters in `org_subscriptions`, and every check
 * (`charge`) reads the same numbers in the same transaction, so the figure shown is the figure checked.
 *
 * Sizes are integers of bytes up to 2^53 (8 PiB). Sums are compared in BigInt: near 2^53 a double sum
 * can round (2^53 - 1 + 2 == 2^53 + 0 in doubles) and let an over-commit through.
 */

/** Largest size HMC accepts anywhere: 8 PiB = 2^53 bytes, still exact as a JSON number and a double. */
export const MAX_BYTES = 2 ** 53;
/** A size in bytes in a schema. */
export const Bytes = (description?: string) => Type.Integer({ minimum: 0, maximum: MAX_BYTES, ...(description ? { description } : {}) });
/** A count limit in a schema (null = no limit where allowed). */
export const Count = (description?: string) => Type.Integer({ minimum: 0, maximum: 1_000_000_000, ...(description ? { description } : {}) });

/** An organization's sending limit in a schema (messages or recipients per window; no null: see SENDING_DEFAULTS). */
export const SendRate = (description: string) => Type.Integer({ minimum: 1, maximum: 1_000_000_000, description });
/** A mailbox's messages per hour (plan value or override). */
export const MailboxMessagesPerHour = Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'most messages the mailbox sends in any hour (authenticated submission; default 500)' });
/** A mailbox's recipients per day (plan value or override). */
export const MailboxRecipientsPerDay = Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'most recipients of the mailbox\'s messages in any 24 hours (default 2,000)' });

/**
 * Sending limits a new plan gets unless it says otherwise (transport/sending-limits.ts enforces them). A person
 * rarely sends 500 messages an hour or writes to 2,000 recipients a day, while a hijacked account sends that much in
 * minutes; an organization's totals cap what several hijacked accounts of it can do together. Never unlimited by
 * default: a hoster that wants more sets a bigger number.
 */
export const SENDING_DEFAULTS = {
  mailbox: { maxMessagesPerHour: 500, maxRecipientsPerDay: 2_000 },
  organization: { maxMessagesPerHour: 10_000, maxRecipientsPerDay: 50_000 },
} as const;

/** Protocols a mailbox plan can allow (persisted names). */
export const PROTOCOLS = ['imap', 'pop3', 'submission', 'webmail', 'dav', 'mobile'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export interface MailboxQuotas {
  issueWarningQuota: number;
  prohibitSendQuota: number;
  prohibitSendReceiveQuota: number;
  maxSendSize: number;
  maxReceiveSize: number;
  recipientLimit: number;
  maxMessagesPerHour: number;
  maxRecipientsPerDay: number;
}

/** Exchange order: issueWarningQuota ≤ prohibitSendQuota ≤ prohibitSendReceiveQuota, else QUOTA_ORDER. */
export function checkMailboxQuotaOrder(q: Pick<MailboxQuotas, 'issueWarningQuota' | 'prohibitSendQuota' | 'prohibitSendReceiveQuota'>): void {
  if (!(q.issueWarningQuota <= q.prohibitSendQuota && q.prohibitSendQuota <= q.prohibitSendReceiveQuota)) {
    throw Errors.quotaOrder(
      `quotas must satisfy issueWarningQuota (${q.issueWarningQuota}) ≤ prohibitSendQuota (${q.prohibitSendQuota}) ≤ prohibitSendReceiveQuota (${q.prohibitSendReceiveQuota})`,
    );
  }
}

/** Public folder order: issueWarningQuota ≤ prohibitPostQuota, else QUOTA_ORDER. */
export function checkFolderQuotaOrder(q: { issueWarningQuota: number; prohibitPostQuota: number }): void {
  if (!(q.issueWarningQuota <= q.prohibitPostQuota)) {
    throw Errors.quotaOrder(`quotas must satisfy issueWarningQuota (${q.issueWarningQuota}) ≤ prohibitPostQuota (${q.prohibitPostQuota})`);
  }
}

/** What an organization is charged for a mailbox: its prohibitSendReceiveQuota. */
export const mailboxCharge = (q: { prohibitSendReceiveQuota: number }): number => q.prohibitSendReceiveQuota;
/** What an organization is charged for a public folder: its prohibitPostQuota. */
export const folderCharge = (q: { prohibitPostQuota: number }): number => q.prohibitPostQuota;

/** Per-mailbox overrides of a mailbox plan (any subset). */
export type MailboxOverrides = Partial<MailboxQuotas> & { protocols?: Protocol[] };

export interface EffectiveMailboxSettings extends MailboxQuotas {
  protocols: Protocol[];
  externalForwarding: boolean;
}

/** The settings a mailbox actually gets: its plan's values with its overrides on top; checks the quota order. */
export function effectiveMailboxSettings(plan: any, overrides: MailboxOverrides): EffectiveMailboxSettings {
  const eff: EffectiveMailboxSettings = {
    issueWarningQuota: overrides.issueWarningQuota ?? Number(plan.issue_warning_quota),
    prohibitSendQuota: overrides.prohibitSendQuota ?? Number(plan.prohibit_send_quota),
    prohibitSendReceiveQuota: overrides.prohibitSendReceiveQuota ?? Number(plan.prohibit_send_receive_quota),
    maxSendSize: overrides.maxSendSize ?? Number(plan.max_send_size),
    maxReceiveSize: overrides.maxReceiveSize ?? Number(plan.max_receive_size),
    recipientLimit: overrides.recipientLimit ?? Number(plan.recipient_limit),
    maxMessagesPerHour: overrides.maxMessagesPerHour ?? Number(plan.max_messages_per_hour),
    maxRecipientsPerDay: overrides.maxRecipientsPerDay ?? Number(plan.max_recipients_per_day),
    protocols: overrides.protocols ?? (JSON.parse(plan.protocols) as Protocol[]),
    externalForwarding: Number(plan.external_forwarding) === 1,
  };
  checkMailboxQuotaOrder(eff);
  return eff;
}

/** Feature switches of an organization plan (persisted JSON). */
export interface OrgFeatures {
  publicFolders: boolean;
  mobility: boolean;
  unifiedMessaging: boolean;
  collaboration: boolean;
  protocols: Protocol[];
}

export const parseFeatures = (plan: any): OrgFeatures => JSON.parse(plan.features) as OrgFeatures;

/** A subscription row joined with its organization plan (as `lockSubscription` returns it). */
export interface Subscription {
  sub: any;
  plan: any;
}

/** An organization's allocations, as shown by the API and as checked by `charge`. */
export interface Allocation {
  /** Bytes of mailbox storage the organization holds (plan or override, plus what dynamic growth added). */
  mailboxBytes: number;
  dynamic: boolean;
  /** Bytes of public-folder storage the organization holds (the plan's pool). */
  publicFolderBytes: number;
}

/** The one formula for an organization's allocation. */
export function allocationOf(s: Subscription): Allocation {
  const base = s.sub.storage_override ?? s.plan.storage_bytes ?? 0;
  return {
    mailboxBytes: Number(base) + Number(s.sub.grown_bytes),
    dynamic: Number(s.plan.dynamic_storage) === 1,
    publicFolderBytes: Number(s.plan.public_folder_bytes),
  };
}

/**
 * Lock the organization's subscription row for this transaction and return it with its plan.
 * PostgreSQL: FOR UPDATE on the subscription, so concurrent creates in one organization queue here and
 * every count/size check sees the previous one's result. SQLite has one writer: already serialised.
 */
export async function lockSubscription(ctx: Pick<ProcContext, 'tx' | 'dialect'>, orgId: string): Promise<Subscription> {
  let q = ctx.tx.selectFrom('org_subscriptions').selectAll().where('org_id', '=', orgId);
  if (ctx.dialect === 'postgres') q = q.forUpdate();
  const sub = await q.executeTakeFirst();
  if (!sub) throw Errors.notSubscribed('the organization has no organization plan yet; subscribe it to one first');
  const plan = await ctx.tx.selectFrom('org_plans').selectAll().where('id', '=', sub.org_plan_id).executeTakeFirstOrThrow();
  return { sub, plan };
}

/** The organization's subscription with its plan, read without a lock (for views); undefined when it has none. */
export async function readSubscription(db: Db, orgId: string): Promise<Subscription | undefined> {
  const sub = await db.selectFrom('org_subscriptions').selectAll().where('org_id', '=', orgId).executeTakeFirst();
  if (!sub) return undefined;
  return { sub, plan: await db.selectFrom('org_plans').selectAll().where('id', '=', sub.org_plan_id).executeTakeFirstOrThrow() };
}

/** Changes to an organization's counters; positive deltas are checked against the plan. */
export interface ChargeDelta {
  mailboxes?: number;
  mailboxBytes?: number;
  domains?: number;
  groups?: number;
  contacts?: number;
  publicFolders?: number;
  publicFolderBytes?: number;
}

const COUNTS: [keyof ChargeDelta, string, string, string][] = [
  ['mailboxes', 'mailbox_count', 'max_mailboxes', 'mailboxes'],
  ['domains', 'domain_count', 'max_domains', 'accepted domains'],
  ['groups', 'group_count', 'max_groups', 'distribution groups'],
  ['contacts', 'contact_count', 'max_contacts', 'contacts'],
  ['publicFolders', 'public_folder_count', 'max_public_folders', 'public folders'],
];

/**
 * The counters `delta` leads to, checked against the plan's maxima (PLAN_LIMIT for a count that grows past
 * its limit); writes nothing, so a procedure can refuse on a count before it places anything.
 */
export function checkCounts(s: Subscription, delta: ChargeDelta): Record<string, number> {
  const set: Record<string, number> = {};
  for (const [k, col, max, what] of COUNTS) {
    const d = delta[k] ?? 0;
    if (d === 0) continue;
    const next = Number(s.sub[col]) + d;
    const limit = s.plan[max];
    if (d > 0 && limit !== null && limit !== undefined && next > Number(limit)) {
      throw Errors.planLimit(`the organization's plan allows ${limit} ${what}; it has ${s.sub[col]}`);
    }
    set[col] = Math.max(0, next);
  }
  return set;
}

/**
 * Apply `delta` to the organization's counters after checking it: a count that grows must stay within
 * the plan's maximum (PLAN_LIMIT); mailbox bytes within the allocation (STORAGE_LIMIT; a dynamic allocation
 * grows before this, when resources/placement.ts places the charge on a store); public-folder bytes within
 * the plan's pool (STORAGE_LIMIT). Decreases are never refused. Mutates `s.sub` so a caller may charge twice.
 */
export async function charge(ctx: Pick<ProcContext, 'tx' | 'now'>, s: Subscription, delta: ChargeDelta): Promise<void> {
  const set: Record<string, number> = checkCounts(s, delta);
  const alloc = allocationOf(s);
  const mb = delta.mailboxBytes ?? 0;
  if (mb !== 0) {
    const next = BigInt(s.sub.mailbox_bytes) + BigInt(mb);
    // a dynamic allocation has already grown by now (the Resource Manager grows it on a store when it
    // places the mailbox), so this is the same check for both kinds
    if (mb > 0 && next > BigInt(alloc.mailboxBytes)) {
      throw Errors.storageLimit(`the organization's mailbox storage is ${alloc.mailboxBytes} bytes, ${s.sub.mailbox_bytes} charged; ${mb} more does not fit`);
    }
    set.mailbox_bytes = Number(next < 0n ? 0n : next);
  }
  const pb = delta.publicFolderBytes ?? 0;
  if (pb !== 0) {
    const next = BigInt(s.sub.public_folder_bytes) + BigInt(pb);
    if (pb > 0 && next > BigInt(alloc.publicFolderBytes)) {
      throw Errors.storageLimit(`the organization's public-folder storage is ${alloc.publicFolderBytes} bytes, ${s.sub.public_folder_bytes} charged; ${pb} more does not fit`);
    }
    set.public_folder_bytes = Number(next < 0n ? 0n : next);
  }
  if (Object.keys(set).length === 0) return;
  await ctx.tx.updateTable('org_subscriptions').set({ ...set, updated_at: ctx.now }).where('org_id', '=', s.sub.org_id).execute();
  Object.assign(s.sub, set);
}

/** Throw feature_disabled unless the organization's plan has the feature on. */
export function requireFeature(s: Subscription, feature: keyof Omit<OrgFeatures, 'protocols'>): void {
  if (!parseFeatures(s.plan)[feature]) throw Errors.featureDisabled(`the organization's plan does not include ${feature}`);
}
