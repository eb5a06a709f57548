import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { DISPLAY_NAME_PATTERN, SLUG_PATTERN } from '../core/names.js';
import { iso } from '../core/time.js';
import { Id, Nullable } from '../engine/http.js';
import { allocationOf, Bytes, Count, MailboxMessagesPerHour, MailboxRecipientsPerDay, PROTOCOLS, SendRate, type OrgFeatures, type Protocol, type Subscription } from './limits.js';

/**
 * Plan Manager types: input schemas (procedures and routes share them) and API views. Rows are
 * snake_case; views camelCase; sizes are bytes; null limits mean "no limit".
 */

const strict = { additionalProperties: false } as const;
const Slug = Type.String({ pattern: SLUG_PATTERN, minLength: 1, maxLength: 64 });
const DisplayName = Type.String({ minLength: 1, maxLength: 256, pattern: DISPLAY_NAME_PATTERN });
export const Protocols = Type.Array(Type.Union(PROTOCOLS.map((p) => Type.Literal(p))), { uniqueItems: true, maxItems: PROTOCOLS.length });
const Timestamp = Type.String({ format: 'date-time' });

export const FeaturesBody = Type.Object(
  {
    publicFolders: Type.Optional(Type.Boolean()),
    mobility: Type.Optional(Type.Boolean()),
    unifiedMessaging: Type.Optional(Type.Boolean()),
    collaboration: Type.Optional(Type.Boolean()),
    protocols: Type.Optional(Protocols),
  },
  strict,
);

const orgPlanFields = {
  displayName: Type.Optional(DisplayName),
  maxMailboxes: Type.Optional(Nullable(Count('most mailboxes; null = no limit'))),
  maxDomains: Type.Optional(Nullable(Count('most accepted domains; null = no limit'))),
  maxGroups: Type.Optional(Nullable(Count('most mail-enabled groups; null = no limit'))),
  maxContacts: Type.Optional(Nullable(Count('most contacts; null = no limit'))),
  maxPublicFolders: Type.Optional(Nullable(Count('most public folders; null = no limit'))),
  storageBytes: Type.Optional(Nullable(Bytes('mailbox storage allocated to each organization on the plan; null only when dynamic'))),
  dynamicStorage: Type.Optional(Type.Boolean({ description: 'the allocation grows on demand (on top of storageBytes, if set)' })),
  maxMailboxBytes: Type.Optional(Nullable(Bytes('largest prohibitSendReceiveQuota a mailbox may have; null = no limit'))),
  mailstoreKind: Type.Optional(Type.Union([Type.Literal('shared'), Type.Literal('dedicated')])),
  placement: Type.Optional(Type.Union([Type.Literal('tightPack'), Type.Literal('level'), Type.Literal('minStoreCount')])),
  publicFolderBytes: Type.Optional(Bytes('public-folder pool of each organization')),
  features: Type.Optional(FeaturesBody),
  maxMessagesPerHour: Type.Optional(SendRate('most messages the whole organization sends in any hour (authenticated submission; default 10,000)')),
  maxRecipientsPerDay: Type.Optional(SendRate('most recipients of the organization\'s messages in any 24 hours (default 50,000)')),
};
export const CreateOrgPlanBody = Type.Object({ name: Slug, resellerId: Type.Optional(Id('rsl')), ...orgPlanFields }, strict);
export const UpdateOrgPlanBody = Type.Object(orgPlanFields, { ...strict, minProperties: 1 });

const mailboxPlanFields = {
  displayName: Type.Optional(DisplayName),
  issueWarningQuota: Bytes(),
  prohibitSendQuota: Bytes(),
  prohibitSendReceiveQuota: Bytes('what the organization is charged for each mailbox on the plan'),
  maxSendSize: Type.Optional(Bytes()),
  maxReceiveSize: Type.Optional(Bytes()),
  recipientLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
  maxMessagesPerHour: Type.Optional(MailboxMessagesPerHour),
  maxRecipientsPerDay: Type.Optional(MailboxRecipientsPerDay),
  protocols: Type.Optional(Protocols),
  hiddenFromAddressBook: Type.Optional(Type.Boolean({ description: 'default for new mailboxes on the plan' })),
  externalForwarding: Type.Optional(Type.Boolean({ description: 'mailboxes may forward outside the platform' })),
};
export const CreateMailboxPlanBody = Type.Object({ name: Slug, resellerId: Type.Optional(Id('rsl')), ...mailboxPlanFields }, strict);
export const UpdateMailboxPlanBody = Type.Object(
  {
    ...mailboxPlanFields,
    issueWarningQuota: Type.Optional(Bytes()),
    prohibitSendQuota: Type.Optional(Bytes()),
    prohibitSendReceiveQuota: Type.Optional(Bytes()),
  },
  { ...strict, minProperties: 1 },
);

export const ResellerPlanBody = Type.Object({ orgPlanId: Id('opl') }, strict);
export const SubscribeBody = Type.Object(
  { orgPlanId: Id('opl'), storageBytes: Type.Optional(Nullable(Bytes('this organization\'s allocation instead of the plan\'s; null = the plan\'s'))) },
  strict,
);

// ---- views ----
const Limit = Nullable(Type.Integer());
export const OrgPlanView = Type.Object({
  id: Type.String(), owner: Type.String({ description: '"provider" or the owning reseller id' }), resellerId: Nullable(Type.String()),
  name: Type.String(), displayName: Type.String(), maxMailboxes: Limit, maxDomains: Limit, maxGroups: Limit, maxContacts: Limit,
  maxPublicFolders: Limit, storageBytes: Limit, dynamicStorage: Type.Boolean(), maxMailboxBytes: Limit, mailstoreKind: Type.String(),
  placement: Type.String(), publicFolderBytes: Type.Integer(), maxMessagesPerHour: Type.Integer(), maxRecipientsPerDay: Type.Integer(),
  features: Type.Object({
    publicFolders: Type.Boolean(), mobility: Type.Boolean(), unifiedMessaging: Type.Boolean(), collaboration: Type.Boolean(), protocols: Type.Array(Type.String()),
  }),
  version: Type.Integer(), createdAt: Timestamp, updatedAt: Timestamp,
  resettleRequestIds: Type.Optional(Type.Array(Type.String(), { description: 'after an edit of protocols or maxMailboxBytes: the batch requests applying it to mailboxes' })),
});
export const MailboxPlanView = Type.Object({
  id: Type.String(), owner: Type.String(), resellerId: Nullable(Type.String()), name: Type.String(), displayName: Type.String(),
  issueWarningQuota: Type.Integer(), prohibitSendQuota: Type.Integer(), prohibitSendReceiveQuota: Type.Integer(),
  maxSendSize: Type.Integer(), maxReceiveSize: Type.Integer(), recipientLimit: Type.Integer(),
  maxMessagesPerHour: Type.Integer(), maxRecipientsPerDay: Type.Integer(), protocols: Type.Array(Type.String()),
  hiddenFromAddressBook: Type.Boolean(), externalForwarding: Type.Boolean(), version: Type.Integer(),
  reapplyRequestId: Type.Optional(Nullable(Type.String({ description: 'after an edit: the batch request re-applying the plan to its mailboxes' }))),
  createdAt: Timestamp, updatedAt: Timestamp,
});
export const ResellerPlanView = Type.Object({ resellerId: Type.String(), orgPlanId: Type.String(), updatedAt: Timestamp });
export const SubscriptionView = Type.Object({
  orgId: Type.String(), orgPlanId: Type.String(), storageOverride: Limit,
  allocation: Type.Object({ mailboxBytes: Type.Integer(), dynamic: Type.Boolean(), publicFolderBytes: Type.Integer() }),
  usage: Type.Object({
    mailboxes: Type.Integer(), mailboxBytes: Type.Integer(), domains: Type.Integer(), groups: Type.Integer(), contacts: Type.Integer(),
    publicFolders: Type.Integer(), publicFolderBytes: Type.Integer(),
  }),
  createdAt: Timestamp, updatedAt: Timestamp,
  resettleRequestIds: Type.Optional(Type.Array(Type.String(), { description: 'after a plan change: the batch requests applying it to the mailboxes' })),
});
export const AvailablePlanView = Type.Object({ orgId: Type.String(), planId: Type.String(), name: Type.String(), displayName: Type.String() });

export type OrgPlanView = Static<typeof OrgPlanView>;
export type MailboxPlanView = Static<typeof MailboxPlanView>;
export type SubscriptionView = Static<typeof SubscriptionView>;

const isoReq = (ms: number): string => iso(ms)!;
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** Default features of a new organization plan: mail protocols on, add-ons off. */
export const DEFAULT_FEATURES: OrgFeatures = {
  publicFolders: false, mobility: false, unifiedMessaging: false, collaboration: false, protocols: [...PROTOCOLS] as Protocol[],
};
/** Default protocols of a new mailbox plan. */
export const DEFAULT_PROTOCOLS: Protocol[] = ['imap', 'pop3', 'submission', 'webmail', 'dav'];

/* eslint-disable @typescript-eslint/no-explicit-any */
export const toOrgPlan = (r: any): OrgPlanView => ({
  id: r.id, owner: r.owner_key, resellerId: r.reseller_id ?? null, name: r.name, displayName: r.display_name,
  maxMailboxes: numOrNull(r.max_mailboxes), maxDomains: numOrNull(r.max_domains), maxGroups: numOrNull(r.max_groups),
  maxContacts: numOrNull(r.max_contacts), maxPublicFolders: numOrNull(r.max_public_folders), storageBytes: numOrNull(r.storage_bytes),
  dynamicStorage: Number(r.dynamic_storage) === 1, maxMailboxBytes: numOrNull(r.max_mailbox_bytes), mailstoreKind: r.mailstore_kind,
  placement: r.placement, publicFolderBytes: Number(r.public_folder_bytes),
  maxMessagesPerHour: Number(r.max_messages_per_hour), maxRecipientsPerDay: Number(r.max_recipients_per_day), features: JSON.parse(r.features), version: Number(r.version),
  createdAt: isoReq(r.created_at), updatedAt: isoReq(r.updated_at),
});
export const toMailboxPlan = (r: any): MailboxPlanView => ({
  id: r.id, owner: r.owner_key, resellerId: r.reseller_id ?? null, name: r.name, displayName: r.display_name,
  issueWarningQuota: Number(r.issue_warning_quota), prohibitSendQuota: Number(r.prohibit_send_quota),
  prohibitSendReceiveQuota: Number(r.prohibit_send_receive_quota), maxSendSize: Number(r.max_send_size), maxReceiveSize: Number(r.max_receive_size),
  recipientLimit: Number(r.recipient_limit), maxMessagesPerHour: Number(r.max_messages_per_hour), maxRecipientsPerDay: Number(r.max_recipients_per_day),
  protocols: JSON.parse(r.protocols), hiddenFromAddressBook: Number(r.hidden_default) === 1,
  externalForwarding: Number(r.external_forwarding) === 1, version: Number(r.version), createdAt: isoReq(r.created_at), updatedAt: isoReq(r.updated_at),
});
export const toSubscription = (s: Subscription): SubscriptionView => {
  const a = allocationOf(s);
  const u = s.sub;
  return {
    orgId: u.org_id, orgPlanId: u.org_plan_id, storageOverride: numOrNull(u.storage_override),
    allocation: { mailboxBytes: a.mailboxBytes, dynamic: a.dynamic, publicFolderBytes: a.publicFolderBytes },
    usage: {
      mailboxes: Number(u.mailbox_count), mailboxBytes: Number(u.mailbox_bytes), domains: Number(u.domain_count), groups: Number(u.group_count),
      contacts: Number(u.contact_count), publicFolders: Number(u.public_folder_count), publicFolderBytes: Number(u.public_folder_bytes),
    },
    createdAt: isoReq(u.created_at), updatedAt: isoReq(u.updated_at),
  };
};
