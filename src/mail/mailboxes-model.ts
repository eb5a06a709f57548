import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { iso } from '../core/time.js';
import { Address, DisplayName } from '../directory/model.js';
import { Id, Nullable } from '../engine/http.js';
import type { ProcContext } from '../engine/procedure.js';
import { Bytes, MailboxMessagesPerHour, MailboxRecipientsPerDay } from '../plans/limits.js';
import { Protocols } from '../plans/model.js';

/**
 * Mailboxes: user (one per directory user), shared, room and equipment. Every address a mailbox has is a
 * row of the platform-wide namespace (`addresses`); `primary_address` mirrors the primary one for lists.
 * Quotas are materialised (plan + overrides) because the data plane reads them, and `charged_bytes` is what
 * the organization's counters hold for the mailbox (its prohibitSendReceiveQuota while active, 0 once deleted).
 */

const strict = { additionalProperties: false } as const;
const Timestamp = Type.String({ format: 'date-time' });

/** Persisted job kinds of the mail area's mailboxes (never rename). */

export const MAILBOX_KINDS = ['user', 'shared', 'room', 'equipment'] as const;
export const MailboxKind = Type.Union(MAILBOX_KINDS.map((k) => Type.Literal(k)));
export const MAILBOX_STATES = ['active', 'deleted'] as const;
export const MailboxState = Type.Union(MAILBOX_STATES.map((k) => Type.Literal(k)));
export const FORWARD_MODES = ['forward_only', 'deliver_and_forward'] as const;

export const Overrides = Type.Object(
  {
    issueWarningQuota: Type.Optional(Bytes()),
    prohibitSendQuota: Type.Optional(Bytes()),
    prohibitSendReceiveQuota: Type.Optional(Bytes('what the organization is charged for this mailbox')),
    maxSendSize: Type.Optional(Bytes()),
    maxReceiveSize: Type.Optional(Bytes()),
    recipientLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    maxMessagesPerHour: Type.Optional(MailboxMessagesPerHour),
    maxRecipientsPerDay: Type.Optional(MailboxRecipientsPerDay),
    protocols: Type.Optional(Protocols),
  },
  { ...strict, description: 'per-mailbox values on top of the mailbox plan' },
);
export const Forwarding = Type.Object(
  {
    to: Address,
    mode: Type.Union(FORWARD_MODES.map((m) => Type.Literal(m)), { description: 'forward_only: no copy kept; deliver_and_forward: keep a copy' }),
  },
  strict,
);

export const CreateMailboxBody = Type.Object(
  {
    kind: Type.Optional(MailboxKind),
    userId: Type.Optional(Id('usr')),
    primaryAddress: Type.Optional(Address),
    displayName: Type.Optional(DisplayName),
    aliases: Type.Optional(Type.Array(Address, { maxItems: 100, uniqueItems: true })),
    planId: Id('mpl'),
    overrides: Type.Optional(Overrides),
    hiddenFromAddressBook: Type.Optional(Type.Boolean({ description: 'default: the plan\'s' })),
    enabled: Type.Optional(Type.Boolean({ description: 'default true; a disabled mailbox exists, counts and is charged, but cannot log in or receive' })),
    forwarding: Type.Optional(Forwarding),
  },
  strict,
);
export const UpdateMailboxBody = Type.Object(
  {
    displayName: Type.Optional(DisplayName),
    hiddenFromAddressBook: Type.Optional(Type.Boolean()),
    enabled: Type.Optional(Type.Boolean()),
    overrides: Type.Optional(Nullable(Overrides)),
    forwarding: Type.Optional(Nullable(Forwarding)),
  },
  { ...strict, minProperties: 1, description: 'overrides replace the current ones (null: none); forwarding null stops forwarding' },
);
export const ChangePlanBody = Type.Object({ planId: Id('mpl') }, strict);
export const AliasBody = Type.Object({ address: Address }, strict);
export const RenameBody = Type.Object(
  {
    address: Address,
    keepOldAsAlias: Type.Optional(Type.Boolean({ description: 'default true: the old primary address stays as an alias; false releases it into quarantine' })),
  },
  strict,
);

const Quotas = Type.Object({
  issueWarningQuota: Type.Integer(), prohibitSendQuota: Type.Integer(), prohibitSendReceiveQuota: Type.Integer(),
  maxSendSize: Type.Integer(), maxReceiveSize: Type.Integer(), recipientLimit: Type.Integer(),
  maxMessagesPerHour: Type.Integer(), maxRecipientsPerDay: Type.Integer(),
});
export const MailboxView = Type.Object({
  id: Type.String(), orgId: Type.String(), kind: Type.String(), userId: Nullable(Type.String()), displayName: Type.String(),
  primaryAddress: Type.String(), aliases: Type.Array(Type.String()), planId: Type.String(), planVersion: Type.Integer(),
  overrides: Type.Object({}, { additionalProperties: true }), quotas: Quotas, protocols: Type.Array(Type.String()),
  externalForwarding: Type.Boolean(), chargedBytes: Type.Integer(), hiddenFromAddressBook: Type.Boolean(), enabled: Type.Boolean(),
  forwarding: Nullable(Type.Object({ to: Type.String(), mode: Type.String() })), state: Type.String(),
  deletedAt: Nullable(Timestamp), purgeAfter: Nullable(Timestamp), createdAt: Timestamp, updatedAt: Timestamp,
  purgeRequestId: Type.Optional(Type.String({ description: 'after a delete: the scheduled request that purges the mailbox at purgeAfter' })),
});
export type MailboxView = Static<typeof MailboxView>;

/* eslint-disable @typescript-eslint/no-explicit-any */
/** A mailbox row and its aliases (addresses other than the primary) as the API shows them. */
export const toMailbox = (r: any, aliases: string[]): MailboxView => ({
  id: r.id, orgId: r.org_id, kind: r.kind, userId: r.user_id ?? null, displayName: r.display_name, primaryAddress: r.primary_address,
  aliases, planId: r.mailbox_plan_id, planVersion: Number(r.plan_version), overrides: JSON.parse(r.overrides),
  quotas: {
    issueWarningQuota: Number(r.issue_warning_quota), prohibitSendQuota: Number(r.prohibit_send_quota),
    prohibitSendReceiveQuota: Number(r.prohibit_send_receive_quota), maxSendSize: Number(r.max_send_size),
    maxReceiveSize: Number(r.max_receive_size), recipientLimit: Number(r.recipient_limit),
    maxMessagesPerHour: Number(r.max_messages_per_hour), maxRecipientsPerDay: Number(r.max_recipients_per_day),
  },
  protocols: JSON.parse(r.protocols), externalForwarding: Number(r.external_forwarding) === 1, chargedBytes: Number(r.charged_bytes),
  hiddenFromAddressBook: Number(r.hidden) === 1, enabled: Number(r.enabled) === 1,
  forwarding: r.forward_to ? { to: r.forward_to, mode: r.forward_mode } : null, state: r.state,
  deletedAt: iso(r.deleted_at), purgeAfter: iso(r.purge_after), createdAt: iso(r.created_at)!, updatedAt: iso(r.updated_at)!,
});

/** Persisted procedure ids of mailboxes (never rename). */
export const MAILBOX_PROCS = {
  createMailbox: 'mail.create_mailbox',
  updateMailbox: 'mail.update_mailbox',
  changeMailboxPlan: 'mail.change_mailbox_plan',
  addMailboxAlias: 'mail.add_mailbox_alias',
  removeMailboxAlias: 'mail.remove_mailbox_alias',
  renameMailboxAddress: 'mail.rename_mailbox_address',
  deleteMailbox: 'mail.delete_mailbox',
  restoreMailbox: 'mail.restore_mailbox',
  purgeMailbox: 'mail.purge_mailbox',
} as const;

export const MailboxRef = { orgId: Id('org'), mailboxId: Id('mbx') };

export const mailboxEvent = (ctx: ProcContext, r: any, event: 'created' | 'deleted' | 'plan_changed' | 'updated', data?: unknown) =>
  ctx.event({ resellerId: r.reseller_id, orgId: r.org_id, objectType: 'mailbox', objectId: r.id, event, data });

/** The audit target of a mailbox. */
export const mailboxTarget = (r: any) => ({ type: 'mailbox', id: r.id, resellerId: r.reseller_id, orgId: r.org_id });
