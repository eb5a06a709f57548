import libmime from 'libmime';
import MailComposer from 'nodemailer/lib/mail-composer';
import type { Db } from '../store/db.js';
import { field, type HeaderField } from './message-head.js';

/**
 * Tenant-aware auto-replies (HMC's out-of-office, fixed the way HMC 4.5's Categorizer Override Agent fixed
 * Exchange's): which text, if any, a mailbox's auto-reply sends to the sender of a message it received.
 *
 * - The internal message goes only to a sender proven to be an authenticated member of the mailbox's own
 *   organization: the message came through the platform's authenticated submission (Postfix checked the
 *   envelope sender against the SASL login, smtpd_sender_login_maps) or bears a genuine stamp of the agent
 *   (stamp.ts). A same-organization address claimed by mail from outside is just an external sender, and so
 *   is any sender of another organization on the platform.
 * - The external message goes to nobody, to known senders, or to all. Known senders are the addresses in the
 *   organization's address book: its contacts (external addresses) and its own recipients' addresses. Previous
 *   correspondents are not tracked (that would be a write per submitted message).
 * - RFC 3834: no reply to the null sender, to mail that says it is automatic (Auto-Submitted other than "no"),
 *   bulk or list mail (Precedence bulk/list/junk, any List-* field), Exchange's X-Auto-Response-Suppress
 *   (All/OOF), mail from MAILER-DAEMON/postmaster/owner-/-request addresses, or the mailbox's own mail; at most
 *   one reply per sender and mailbox per period (default 4 days, HMC_AUTO_REPLY_PERIOD_HOURS), a period that
 *   starts afresh when the settings are saved (mail/auto-reply.ts clears the log, as Exchange forgets whom it
 *   answered when OOF is turned on again). The reply has the null envelope sender, `Auto-Submitted:
 *   auto-replied`, In-Reply-To/References of the original, and `X-Auto-Response-Suppress: All`.
 * - An empty message sends nothing (a mailbox may answer only outsiders, or only colleagues).
 *
 * The database work per message is one indexed query for the recipients that have an auto-reply switched on
 * (none at all for automatic or null-sender mail), then only for those: the sender's own mailbox (for a sender
 * on a hosted domain), a known-sender check and the atomic claim in auto_reply_log. The sender's organization
 * comes from the domain cache, never a query.
 */

export interface AutoReplySetting {
  mailboxId: string;
  orgId: string;
  /** The recipient address the message was for (a mailbox may have several). */
  address: string;
  primaryAddress: string;
  displayName: string;
  mode: 'off' | 'on' | 'scheduled';
  startsAt: number | null;
  endsAt: number | null;
  internalMessage: string;
  externalMessage: string;
  externalAudience: 'none' | 'known' | 'all';
}

export type SkipReason = 'null-sender' | 'auto-submitted' | 'bulk' | 'list' | 'suppressed' | 'system-sender';

/** Why a message gets no auto-reply whatever its recipients' settings, or null when it may get one. */
export function automatedReason(sender: string, fields: HeaderField[]): SkipReason | null {
  if (sender === '' || sender === '<>') return 'null-sender';
  const local = sender.slice(0, sender.lastIndexOf('@')).toLowerCase();
  if (/^(mailer-daemon|postmaster|listserv|majordomo|owner-.*|.*-request|.*-owner|no-?reply)$/.test(local)) return 'system-sender';
  const auto = field(fields, 'auto-submitted');
  if (auto !== undefined && auto.split(';')[0]!.trim().toLowerCase() !== 'no') return 'auto-submitted';
  const precedence = field(fields, 'precedence')?.toLowerCase();
  if (precedence === 'bulk' || precedence === 'list' || precedence === 'junk') return 'bulk';
  if (fields.some((f) => f.name.startsWith('list-'))) return 'list';
  const suppress = field(fields, 'x-auto-response-suppress')?.toLowerCase() ?? '';
  if (/\b(all|oof|autoreply)\b/.test(suppress)) return 'suppressed';
  return null;
}

/** Whether the setting is answering now (on, or inside its scheduled window). */
export function activeAt(s: Pick<AutoReplySetting, 'mode' | 'startsAt' | 'endsAt'>, now: number): boolean {
  if (s.mode === 'on') return true;
  if (s.mode !== 'scheduled' || s.startsAt === null || s.endsAt === null) return false;
  return s.startsAt <= now && now < s.endsAt;
}

export interface ReplyChoice {
  kind: 'internal' | 'external';
  text: string;
}

/**
 * The reply a sender gets from one active setting: internal when the sender is an authenticated member of
 * the mailbox's organization, else external per audience. `known` is asked only when it matters.
 */
export async function chooseReply(s: AutoReplySetting, authenticatedOrgId: string | null, known: () => Promise<boolean>): Promise<ReplyChoice | null> {
  if (authenticatedOrgId !== null && authenticatedOrgId === s.orgId) {
    return s.internalMessage.trim() === '' ? null : { kind: 'internal', text: s.internalMessage };
  }
  if (s.externalMessage.trim() === '' || s.externalAudience === 'none') return null;
  if (s.externalAudience === 'known' && !(await known())) return null;
  return { kind: 'external', text: s.externalMessage };
}

/* eslint-disable @typescript-eslint/no-explicit-any */

/** The switched-on auto-replies among these recipient addresses (lower case), one per mailbox. */
export async function settingsFor(db: Db, recipients: string[]): Promise<AutoReplySetting[]> {
  if (recipients.length === 0) return [];
  const rows: any[] = await db.selectFrom('addresses as a')
    .innerJoin('auto_replies as r', 'r.mailbox_id', 'a.recipient_id')
    .innerJoin('mailboxes as m', 'm.id', 'a.recipient_id')
    .select(['a.address', 'm.id as mailbox_id', 'm.org_id', 'm.primary_address', 'm.display_name', 'r.mode', 'r.starts_at', 'r.ends_at',
      'r.internal_message', 'r.external_message', 'r.external_audience'])
    .where('a.address', 'in', recipients.slice(0, 1000))
    .where('a.recipient_kind', '=', 'mailbox')
    .where('r.mode', '<>', 'off')
    .where('m.state', '=', 'active')
    .execute();
  const seen = new Set<string>();
  const out: AutoReplySetting[] = [];
  for (const r of rows) {
    if (seen.has(r.mailbox_id)) continue;
    seen.add(r.mailbox_id);
    out.push({
      mailboxId: r.mailbox_id, orgId: r.org_id, address: r.address, primaryAddress: r.primary_address, displayName: r.display_name, mode: r.mode,
      startsAt: r.starts_at === null ? null : Number(r.starts_at), endsAt: r.ends_at === null ? null : Number(r.ends_at),
      internalMessage: r.internal_message, externalMessage: r.external_message, externalAudience: r.external_audience,
    });
  }
  return out;
}

/**
 * The mailbox `sender` is an address of, by any of its spellings: its primary address, an alias, or either at a
 * domain alias (`aliasOf`: the domain the sender's domain stands for, from the domain cache). A mailbox never
 * answers its own mail, whichever of its addresses the mail came from; null when the sender is no mailbox.
 */
export async function senderMailbox(db: Db, sender: string, aliasOf: string | null): Promise<string | null> {
  const a = sender.toLowerCase();
  const address = aliasOf ? `${a.slice(0, a.lastIndexOf('@'))}@${aliasOf.toLowerCase()}` : a;
  const r = await db.selectFrom('addresses').select('recipient_id').where('address', '=', address).where('recipient_kind', '=', 'mailbox').executeTakeFirst();
  return r ? (r.recipient_id as string) : null;
}

/** Whether `sender` is in the organization's address book: one of its contacts or one of its own addresses. */
export async function isKnownSender(db: Db, orgId: string, sender: string): Promise<boolean> {
  const a = sender.toLowerCase();
  const contact = await db.selectFrom('contacts').select('id').where('org_id', '=', orgId).where('external_address', '=', a).executeTakeFirst();
  if (contact) return true;
  const own = await db.selectFrom('addresses').select('address').where('address', '=', a).where('org_id', '=', orgId).executeTakeFirst();
  return own !== undefined;
}

/**
 * Claim the right to answer `sender` from `mailboxId` now: true when no reply went to it within the period
 * (the claim is recorded in the same statement, so two messages arriving together get one reply).
 */
export async function claimReply(db: Db, mailboxId: string, sender: string, now: number, periodMs: number): Promise<boolean> {
  const r = await db.insertInto('auto_reply_log')
    .values({ mailbox_id: mailboxId, sender: sender.toLowerCase(), sent_at: now })
    .onConflict((oc) => oc.columns(['mailbox_id', 'sender']).doUpdateSet({ sent_at: now }).where('auto_reply_log.sent_at', '<=', now - periodMs))
    .returning('mailbox_id')
    .executeTakeFirst();
  return r !== undefined;
}

/** Give a claim back (the reply could not be sent): the next message from the sender is answered. */
export async function releaseClaim(db: Db, mailboxId: string, sender: string, sentAt: number): Promise<void> {
  await db.deleteFrom('auto_reply_log').where('mailbox_id', '=', mailboxId).where('sender', '=', sender.toLowerCase()).where('sent_at', '=', sentAt).execute();
}

/** Forget claims older than the period (they decide nothing any more). */
export async function pruneClaims(db: Db, now: number, periodMs: number): Promise<void> {
  await db.deleteFrom('auto_reply_log').where('sent_at', '<', now - periodMs).execute();
}

/** The reply message (RFC 3834), ready to send with the null envelope sender. */
export async function composeReply(s: AutoReplySetting, choice: ReplyChoice, sender: string, fields: HeaderField[], hostname: string): Promise<Buffer> {
  let subject = field(fields, 'subject') ?? '';
  try {
    subject = libmime.decodeWords(Buffer.from(subject, 'latin1').toString('utf8'));
  } catch {
    // undecodable: answer with what is readable
  }
  const messageId = field(fields, 'message-id');
  const mail = new MailComposer({
    from: { name: s.displayName, address: s.primaryAddress },
    to: sender,
    subject: `Automatic reply: ${subject}`.slice(0, 900),
    text: choice.text,
    ...(messageId ? { inReplyTo: messageId, references: messageId } : {}),
    headers: { 'Auto-Submitted': 'auto-replied', 'X-Auto-Response-Suppress': 'All' },
    messageId: `<auto-reply.${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}@${hostname}>`,
  });
  return await new Promise<Buffer>((res, rej) => mail.compile().build((err, msg) => (err ? rej(err) : res(msg))));
}
