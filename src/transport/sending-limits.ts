import { sql } from 'kysely';
import { newId } from '../core/ids.js';
import type { Db } from '../store/db.js';

/**
 * Sending limits against hijacked accounts (issue 6 item 4): per mailbox and per organization, messages per
 * hour and recipients per day (plan values: plans/limits.ts SENDING_DEFAULTS), enforced by the Postfix policy
 * service (dataplane/policy.ts) on authenticated submission only. A stolen password's usual signature is a burst
 * of mail from one account, or from several accounts of one organization at once; refusing with a temporary
 * `450 4.7.1` caps the damage at the limit while a real user's client simply retries later, and the event it
 * records tells the organization's admins to look.
 *
 * Counting. A message counts once, when Postfix asks at END-OF-MESSAGE and the policy lets it through; its
 * accepted recipients (Postfix's recipient_count) count toward recipients per day. The counts live in the
 * database (sending_counters), not in the policy service's memory, so several Postfix nodes, each with its own
 * policy service, sharing one database enforce one limit between them and a restart forgets nothing.
 *
 * Windows: rolling, in buckets. Messages per hour are kept per minute and summed over the current minute and the
 * 60 before it; recipients per day are kept per hour and summed over the current hour and the 24 before it. So a
 * message stops counting between 60 and 61 minutes after it was sent (a recipient between 24 and 25 hours): never
 * earlier, which is the side that matters, since then no 60-minute span ever holds more than the limit. Per-minute
 * buckets for the day would be 1,440 rows to sum per check; hour buckets for the hour would let a sender send the
 * limit twice within a minute across an hour boundary.
 *
 * Cost. Only authenticated submissions write: one statement at END-OF-MESSAGE that upserts four rows (the
 * mailbox's and the organization's minute and hour buckets, always in that order, so two messages of one
 * organization never wait on each other in opposite orders). The MX (unauthenticated, most of the traffic) writes
 * nothing. The check is one query at a message's first RCPT, on the primary key (two subjects × two spans, at most
 * 61 + 25 live rows each), cached for the rest of the message. Rows carry their expiry and are pruned in the
 * background (pruneCounters, on the expiry index).
 *
 * Exactness. The check and the count are not one transaction: messages of one sender that are in flight at once
 * all see the count from before any of them ended, so a sender with N concurrent transactions can pass a limit by
 * at most N - 1 messages (and their recipients). Postfix bounds N by its smtpd processes; a hijacked client is
 * stopped at its next message. A message refused after the policy said yes (a later restriction, a queue failure)
 * still counts: the error is toward the safe side.
 */

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

export interface SendingLimits {
  maxMessagesPerHour: number;
  maxRecipientsPerDay: number;
}

/** An authenticated sender as the counters know it: its mailbox and organization, each with its limits. */
export interface LimitedSender {
  login: string;
  mailboxId: string;
  orgId: string;
  resellerId: string;
  mailbox: SendingLimits;
  organization: SendingLimits;
}

export interface WindowCounts {
  /** Messages in the last hour's window. */
  messages: number;
  /** Recipients in the last day's window. */
  recipients: number;
}

export interface SendingUsage {
  mailbox: WindowCounts;
  organization: WindowCounts;
}

/** Persisted names (event data, metric labels). */
export type LimitScope = 'mailbox' | 'organization';
export type LimitName = 'messagesPerHour' | 'recipientsPerDay';
export interface LimitHit {
  scope: LimitScope;
  limit: LimitName;
  max: number;
  /** What the window holds now (the message or recipient asked for would be one more). */
  count: number;
}

/** Persisted event name of mail_events. */
export const SENDING_LIMIT_REACHED = 'sending_limit_reached';

const minuteOf = (t: number) => Math.floor(t / MINUTE_MS) * MINUTE_MS;
const hourOf = (t: number) => Math.floor(t / HOUR_MS) * HOUR_MS;

/** The counts of the mailbox and its organization in the windows ending at `now`: one query on the primary key. */
export async function readSendingUsage(db: Db, s: Pick<LimitedSender, 'mailboxId' | 'orgId'>, now: number): Promise<SendingUsage> {
  const rows = await db.selectFrom('sending_counters')
    .select((eb) => ['subject_id', 'span', eb.fn.sum<string | number>('messages').as('messages'), eb.fn.sum<string | number>('recipients').as('recipients')])
    .where('subject_id', 'in', [s.mailboxId, s.orgId])
    .where((eb) => eb.or([
      eb.and([eb('span', '=', 'minute'), eb('bucket', '>=', minuteOf(now) - HOUR_MS)]),
      eb.and([eb('span', '=', 'hour'), eb('bucket', '>=', hourOf(now) - DAY_MS)]),
    ]))
    .groupBy(['subject_id', 'span'])
    .execute();
  const usage: SendingUsage = { mailbox: { messages: 0, recipients: 0 }, organization: { messages: 0, recipients: 0 } };
  for (const r of rows) {
    const w = r.subject_id === s.mailboxId ? usage.mailbox : usage.organization;
    // minute buckets answer the hour's messages, hour buckets the day's recipients
    if (r.span === 'minute') w.messages = Number(r.messages);
    else w.recipients = Number(r.recipients);
  }
  return usage;
}

/**
 * The first limit that one more recipient of the current message would pass, or null. `accepted` recipients of
 * this message were let through already (they count once it ends); the message itself would be one more message.
 */
export function limitReached(s: LimitedSender, usage: SendingUsage, accepted: number): LimitHit | null {
  for (const scope of ['mailbox', 'organization'] as const) {
    const limits = s[scope];
    const w = usage[scope];
    if (w.messages + 1 > limits.maxMessagesPerHour) return { scope, limit: 'messagesPerHour', max: limits.maxMessagesPerHour, count: w.messages };
    if (w.recipients + accepted + 1 > limits.maxRecipientsPerDay) {
      return { scope, limit: 'recipientsPerDay', max: limits.maxRecipientsPerDay, count: w.recipients + accepted };
    }
  }
  return null;
}

/** Count one accepted message with `recipients` recipients for the mailbox and its organization: one statement. */
export async function recordMessage(db: Db, s: Pick<LimitedSender, 'mailboxId' | 'orgId'>, recipients: number, now: number): Promise<void> {
  const m = minuteOf(now);
  const h = hourOf(now);
  // a row is read while its bucket is inside the window (readSendingUsage), and not after
  const rows = [s.mailboxId, s.orgId].flatMap((subject_id) => [
    { subject_id, span: 'minute', bucket: m, messages: 1, recipients, expires_at: m + HOUR_MS + MINUTE_MS },
    { subject_id, span: 'hour', bucket: h, messages: 1, recipients, expires_at: h + DAY_MS + HOUR_MS },
  ]);
  await db.insertInto('sending_counters').values(rows)
    .onConflict((oc) => oc.columns(['subject_id', 'span', 'bucket']).doUpdateSet({
      messages: sql`sending_counters.messages + excluded.messages`,
      recipients: sql`sending_counters.recipients + excluded.recipients`,
    }))
    .execute();
}

/**
 * The key that makes a limit's event one row per window: the subject, the limit and the clock period the refusal
 * fell in (the hour for messages per hour, the UTC day for recipients per day). A client retrying against the
 * limit for a whole day leaves one row per hour at most, not one per attempt.
 */
export function limitEventKey(s: Pick<LimitedSender, 'mailboxId' | 'orgId'>, hit: Pick<LimitHit, 'scope' | 'limit'>, now: number): { key: string; until: number } {
  const period = hit.limit === 'messagesPerHour' ? HOUR_MS : DAY_MS;
  const start = Math.floor(now / period) * period;
  const subject = hit.scope === 'mailbox' ? s.mailboxId : s.orgId;
  return { key: `${SENDING_LIMIT_REACHED}:${subject}:${hit.limit}:${start}`, until: start + period };
}

/**
 * Record that `s` reached a limit, unless this window has its row already (another refusal, another node).
 * True when this call wrote the row.
 */
export async function recordLimitReached(db: Db, s: LimitedSender, hit: LimitHit, now: number): Promise<boolean> {
  const { key } = limitEventKey(s, hit, now);
  const r = await db.insertInto('mail_events')
    .values({
      id: newId('mailEvent'), org_id: s.orgId, reseller_id: s.resellerId, at: now, event: SENDING_LIMIT_REACHED, mailbox_id: s.mailboxId,
      login: s.login, data: JSON.stringify({ scope: hit.scope, limit: hit.limit, max: hit.max, count: hit.count }), dedupe_key: key,
    })
    .onConflict((oc) => oc.column('dedupe_key').doNothing())
    .executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

/** Delete counter rows no window reads any more; the number deleted. */
export async function pruneCounters(db: Db, now: number): Promise<number> {
  const r = await db.deleteFrom('sending_counters').where('expires_at', '<=', now).executeTakeFirst();
  return Number(r.numDeletedRows);
}
