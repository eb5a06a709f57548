import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { roleLevel } from '../core/tenancy.js';
import { nodeInScope } from '../core/tenancy.js';
import { iso } from '../core/time.js';
import { Id } from '../engine/http.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { visibleMailbox } from './grants-model.js';

/**
 * Auto-reply (out-of-office) settings per mailbox, as the transport agent will read them: off, on, or
 * scheduled between two instants; an internal message (senders of the same organization) and an external
 * one, sent to nobody, to known senders (the mailbox's contacts) or to all. Settable by the mailbox's own
 * user and by the organization's admins and helpdesk (and anyone above them); a user-role principal reaches
 * only its own mailbox, any other is 404 — the same rule as the mailbox visibility check.
 */

/** Persisted procedure id (never rename). */
export const AUTO_REPLY_PROCS = { setAutoReply: 'mail.set_auto_reply' } as const;

export const AUTO_REPLY_MODES = ['off', 'on', 'scheduled'] as const;
export const EXTERNAL_AUDIENCES = ['none', 'known', 'all'] as const;
/** Largest message, in UTF-8 bytes (and so at most as many characters). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

const strict = { additionalProperties: false } as const;
const Message = (what: string) => Type.String({ maxLength: MAX_MESSAGE_BYTES, pattern: '^[^\\u0000]*$', description: `${what}; at most 64 KiB of UTF-8` });

export const SetAutoReplyBody = Type.Object(
  {
    mode: Type.Union(AUTO_REPLY_MODES.map((m) => Type.Literal(m))),
    startsAt: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
    endsAt: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
    internalMessage: Type.Optional(Message('reply to senders of the same organization')),
    externalMessage: Type.Optional(Message('reply to senders outside the organization')),
    externalAudience: Type.Optional(Type.Union(EXTERNAL_AUDIENCES.map((a) => Type.Literal(a)), { description: 'none (default), known (senders in the mailbox\'s contacts) or all' })),
  },
  { ...strict, description: 'The complete settings: absent fields take their defaults (empty messages, audience none, no schedule).' },
);

export const AutoReplyView = Type.Object({
  mailboxId: Type.String(), orgId: Type.String(), mode: Type.String(),
  startsAt: Type.Union([Type.String(), Type.Null()]), endsAt: Type.Union([Type.String(), Type.Null()]),
  internalMessage: Type.String(), externalMessage: Type.String(), externalAudience: Type.String(),
  updatedAt: Type.Union([Type.String(), Type.Null()], { description: 'null: never set (the defaults)' }),
});
export type AutoReplyView = Static<typeof AutoReplyView>;

/* eslint-disable @typescript-eslint/no-explicit-any */
/** The view of a mailbox's settings row, or of the defaults when it has none. */
export function toAutoReply(mailbox: { id: string; org_id: string }, r: any | undefined): AutoReplyView {
  if (!r) {
    return { mailboxId: mailbox.id, orgId: mailbox.org_id, mode: 'off', startsAt: null, endsAt: null, internalMessage: '', externalMessage: '', externalAudience: 'none', updatedAt: null };
  }
  return {
    mailboxId: r.mailbox_id, orgId: r.org_id, mode: r.mode, startsAt: iso(r.starts_at), endsAt: iso(r.ends_at), internalMessage: r.internal_message,
    externalMessage: r.external_message, externalAudience: r.external_audience, updatedAt: iso(r.updated_at),
  };
}

function instant(value: string | null | undefined, field: string): number | null {
  if (value === undefined || value === null) return null;
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) throw Errors.invalidSchedule(`${field} is not a date-time`);
  return ms;
}

/**
 * The organization (shared lock, live) and the mailbox, for any principal that may set the mailbox's
 * auto-reply. Checks scope itself: liveOrg refuses the user role, which this procedure admits.
 */
async function openMailbox(ctx: ProcContext, orgId: string, mailboxId: string): Promise<any> {
  let q = ctx.tx.selectFrom('organizations').select(['id', 'reseller_id', 'state']).where('id', '=', orgId);
  if (ctx.dialect === 'postgres') q = q.forShare();
  const org = await q.executeTakeFirst();
  const p = ctx.principal;
  const visible = org && (roleLevel(p.role) === 'user' ? org.id === p.orgId : nodeInScope(p, { resellerId: org.reseller_id, orgId: org.id }));
  if (!visible) throw Errors.notFound(`organization ${orgId} not found`);
  if (org.state === 'deleting') throw Errors.stateConflict(`organization ${orgId} is being deleted`);
  const m = await visibleMailbox(ctx.tx, p, org.id, mailboxId);
  if (m.state !== 'active') throw Errors.stateConflict(`mailbox ${mailboxId} is deleted`);
  return m;
}

export const setAutoReply = defineProcedure({
  id: AUTO_REPLY_PROCS.setAutoReply,
  input: Type.Object({ orgId: Id('org'), mailboxId: Id('mbx'), ...SetAutoReplyBody.properties }, strict),
  minRole: 'user',
  async run(ctx, input) {
    const mailbox = await openMailbox(ctx, input.orgId, input.mailboxId);
    const startsAt = instant(input.startsAt, 'startsAt');
    const endsAt = instant(input.endsAt, 'endsAt');
    if (input.mode === 'scheduled' && (startsAt === null || endsAt === null)) throw Errors.invalidSchedule('a scheduled auto-reply needs startsAt and endsAt');
    if (startsAt !== null && endsAt !== null && !(startsAt < endsAt)) throw Errors.invalidSchedule('startsAt must be before endsAt');
    for (const f of ['internalMessage', 'externalMessage'] as const) {
      if (Buffer.byteLength(input[f] ?? '', 'utf8') > MAX_MESSAGE_BYTES) throw Errors.invalidRequest(`${f} is longer than 64 KiB of UTF-8`);
    }
    const before = await ctx.tx.selectFrom('auto_replies').selectAll().where('mailbox_id', '=', mailbox.id).executeTakeFirst();
    const row = {
      mailbox_id: mailbox.id, org_id: mailbox.org_id, mode: input.mode, starts_at: startsAt, ends_at: endsAt,
      internal_message: input.internalMessage ?? '', external_message: input.externalMessage ?? '', external_audience: input.externalAudience ?? 'none',
      updated_at: ctx.now,
    };
    if (before) await ctx.tx.updateTable('auto_replies').set(row).where('mailbox_id', '=', mailbox.id).execute();
    else await ctx.tx.insertInto('auto_replies').values(row).execute();
    // saved settings answer everyone afresh (the transport agent's once-per-period memory starts over)
    await ctx.tx.deleteFrom('auto_reply_log').where('mailbox_id', '=', mailbox.id).execute();
    ctx.target({ type: 'mailbox', id: mailbox.id, resellerId: mailbox.reseller_id, orgId: mailbox.org_id });
    ctx.diff(before ? toAutoReply(mailbox, before) : null, toAutoReply(mailbox, row));
    return toAutoReply(mailbox, row);
  },
});

export const autoReplyProcedures = [setAutoReply];
