import { isIPv4, isIPv6 } from 'node:net';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { SLUG_PATTERN } from '../core/names.js';
import { iso } from '../core/time.js';
import { Id, Nullable } from '../engine/http.js';
import { allocationOf, Bytes, Count, type Subscription } from '../plans/limits.js';

/**
 * Resource Manager types: mail servers and mailstores (input schemas shared by procedures and routes, API
 * views, row mappers) and the endpoint and path rules. Rows are snake_case, views camelCase, sizes bytes.
 *
 * Endpoint forms (stored in one canonical spelling, so equal endpoints compare equal):
 * - LMTP: `host:port`, `inet:host:port`, `unix:/absolute/path`, each optionally prefixed `lmtp:` (Postfix's
 *   transport syntax). Stored as `inet:host:port` or `unix:/path`; Postfix's transport_maps entry is
 *   `lmtp:` + the stored value.
 * - IMAP / POP3: `host:port` only (clients connect over TCP).
 * A host is a DNS name (one label allowed, e.g. `localhost`), an IPv4 address or an IPv6 address in
 * brackets (`[::1]:24`); loopback is allowed (development and test instances). Ports are 1-65535. Hosts are
 * stored lower-case.
 *
 * A mail root is an absolute path of segments of `A-Z a-z 0-9 . _ @ + = -` (no `.` or `..` segment, no
 * trailing `/`): it is written into Dovecot's mail_location (where `:` and spaces are separators) and
 * used by provider jobs as a directory.
 */

const strict = { additionalProperties: false } as const;
const Slug = Type.String({ pattern: SLUG_PATTERN, minLength: 1, maxLength: 64 });
const Timestamp = Type.String({ format: 'date-time' });
/** Printable ASCII without spaces; the form itself is checked by parseLmtpEndpoint / parseHostPort. */
const Endpoint = (description: string) => Type.String({ minLength: 3, maxLength: 300, pattern: '^[\\x21-\\x7e]+$', description });
const MailRoot = Type.String({ minLength: 2, maxLength: 1024, pattern: '^(/[A-Za-z0-9._@+=-]+)+$', description: 'absolute path under which the server keeps its mailstores' });

/** Persisted states of servers and stores (never renamed). */
export const RESOURCE_STATES = ['active', 'draining', 'offline'] as const;
export type ResourceState = (typeof RESOURCE_STATES)[number];
export const STORE_PURPOSES = ['mailbox', 'public_folder'] as const;
export const STORE_SHARING = ['shared', 'dedicated'] as const;

const State = Type.Union(RESOURCE_STATES.map((s) => Type.Literal(s)), { description: 'active: takes new placements; draining: keeps what it has, takes nothing new; offline: out of service' });
const Purpose = Type.Union(STORE_PURPOSES.map((s) => Type.Literal(s)));
const Sharing = Type.Union(STORE_SHARING.map((s) => Type.Literal(s)), { description: 'shared: many organizations; dedicated: one organization (ownerOrgId) at a time' });

const serverFields = {
  lmtpEndpoint: Endpoint('LMTP delivery endpoint: host:port, inet:host:port or unix:/path (optionally prefixed lmtp:)'),
  imapEndpoint: Endpoint('IMAP endpoint, host:port'),
  popEndpoint: Type.Optional(Nullable(Endpoint('POP3 endpoint, host:port; null = no POP3'))),
  mailRoot: MailRoot,
  state: Type.Optional(State),
};
export const CreateServerBody = Type.Object({ name: Slug, ...serverFields }, strict);
export const UpdateServerBody = Type.Object(
  {
    name: Type.Optional(Slug),
    lmtpEndpoint: Type.Optional(serverFields.lmtpEndpoint),
    imapEndpoint: Type.Optional(serverFields.imapEndpoint),
    popEndpoint: serverFields.popEndpoint,
    mailRoot: Type.Optional(MailRoot),
    state: Type.Optional(State),
  },
  { ...strict, minProperties: 1 },
);

const storeFields = {
  purpose: Type.Optional(Purpose),
  sharing: Type.Optional(Sharing),
  capacityBytes: Bytes('what the store may hold: allocations never exceed it'),
  maxMailboxes: Type.Optional(Nullable(Count('most mailboxes (or public folders) on the store; null = no limit'))),
  state: Type.Optional(State),
};
export const CreateStoreBody = Type.Object({ name: Slug, ...storeFields }, strict);
export const UpdateStoreBody = Type.Object(
  {
    name: Type.Optional(Slug),
    purpose: storeFields.purpose,
    sharing: storeFields.sharing,
    capacityBytes: Type.Optional(Bytes('may not drop below allocatedBytes')),
    maxMailboxes: storeFields.maxMailboxes,
    state: storeFields.state,
  },
  { ...strict, minProperties: 1 },
);
export const StoreListQuery = {
  purpose: Type.Optional(Purpose),
  state: Type.Optional(State),
  server: Type.Optional(Id('srv')),
};

// ---- views ----
export const ServerView = Type.Object({
  id: Type.String(), name: Type.String(), lmtpEndpoint: Type.String(), imapEndpoint: Type.String(), popEndpoint: Nullable(Type.String()),
  mailRoot: Type.String(), state: Type.String(), createdAt: Timestamp, updatedAt: Timestamp,
});
export const StoreView = Type.Object({
  id: Type.String(), serverId: Type.String(), name: Type.String(), purpose: Type.String(), sharing: Type.String(), state: Type.String(),
  capacityBytes: Type.Integer(), allocatedBytes: Type.Integer({ description: 'sum of the organizations\' allocations on the store' }),
  chargedBytes: Type.Integer({ description: 'sum of what the mailboxes (or public folders) placed on the store are charged (their prohibitSendReceiveQuota / prohibitPostQuota)' }),
  freeBytes: Type.Integer({ description: 'capacityBytes - allocatedBytes' }),
  maxMailboxes: Nullable(Type.Integer()), mailboxCount: Type.Integer(),
  ownerOrgId: Nullable(Type.String({ description: 'the organization holding a dedicated store; set by allocation, null when free' })),
  createdAt: Timestamp, updatedAt: Timestamp,
});
export type ServerView = Static<typeof ServerView>;
export type StoreView = Static<typeof StoreView>;

/* eslint-disable @typescript-eslint/no-explicit-any */
export const toServer = (r: any): ServerView => ({
  id: r.id, name: r.name, lmtpEndpoint: r.lmtp_endpoint, imapEndpoint: r.imap_endpoint, popEndpoint: r.pop_endpoint ?? null,
  mailRoot: r.mail_root, state: r.state, createdAt: iso(Number(r.created_at))!, updatedAt: iso(Number(r.updated_at))!,
});
export const toStore = (r: any): StoreView => ({
  id: r.id, serverId: r.server_id, name: r.name, purpose: r.purpose, sharing: r.sharing, state: r.state,
  capacityBytes: Number(r.capacity_bytes), allocatedBytes: Number(r.allocated_bytes), chargedBytes: Number(r.charged_bytes ?? 0),
  // both ≤ 2^53 and allocated ≤ capacity, so the difference is exact in a double
  freeBytes: Number(r.capacity_bytes) - Number(r.allocated_bytes),
  maxMailboxes: r.max_mailboxes === null || r.max_mailboxes === undefined ? null : Number(r.max_mailboxes), mailboxCount: Number(r.mailbox_count),
  ownerOrgId: r.owner_org_id ?? null, createdAt: iso(Number(r.created_at))!, updatedAt: iso(Number(r.updated_at))!,
});

// ---- endpoints and paths ----
const LABEL_RE = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

function validHost(host: string): boolean {
  if (host.startsWith('[') && host.endsWith(']')) return isIPv6(host.slice(1, -1));
  if (isIPv4(host)) return true;
  if (host.length > 253) return false;
  const labels = host.split('.');
  // a name whose last label is all digits would be a mistyped IPv4 address
  return labels.every((l) => LABEL_RE.test(l)) && !/^[0-9]+$/.test(labels[labels.length - 1]!);
}

/** `host:port` (IPv6 in brackets) in canonical form (host lower-case), or invalid_endpoint. */
export function parseHostPort(input: string, what: string): string {
  const m = /^(\[[^\]]+\]|[^:[\]]+):([0-9]{1,5})$/.exec(input);
  const host = m?.[1]?.toLowerCase();
  const port = m ? Number(m[2]) : 0;
  if (!m || !host || !validHost(host) || port < 1 || port > 65535) {
    throw Errors.invalidEndpoint(`${what} "${input.slice(0, 64)}" must be host:port (a DNS name, an IPv4 address or [IPv6], port 1-65535)`);
  }
  return `${host}:${port}`;
}

/** An LMTP endpoint in canonical form: `inet:host:port` or `unix:/path`, or invalid_endpoint. */
export function parseLmtpEndpoint(input: string): string {
  const s = input.startsWith('lmtp:') ? input.slice(5) : input;
  if (s.startsWith('unix:')) {
    const path = s.slice(5);
    if (!/^(\/[A-Za-z0-9._@+=-]+)+$/.test(path) || path.split('/').some((seg) => seg === '.' || seg === '..')) {
      throw Errors.invalidEndpoint(`LMTP socket "${input.slice(0, 64)}" must be unix:/absolute/path`);
    }
    return `unix:${path}`;
  }
  return `inet:${parseHostPort(s.startsWith('inet:') ? s.slice(5) : s, 'LMTP endpoint')}`;
}

/** A mail root: the schema's pattern, plus no `.` or `..` segment (which would leave or blur the root). */
export function checkMailRoot(path: string): string {
  if (!/^(\/[A-Za-z0-9._@+=-]+)+$/.test(path) || path.split('/').some((seg) => seg === '.' || seg === '..')) {
    throw Errors.invalidPath(`mail root "${path.slice(0, 64)}" must be an absolute path without "." or ".." segments`);
  }
  return path;
}

// ---- an organization's resources ----
export const AllocateBody = Type.Object({
  mailboxBytes: Bytes('the organization\'s new mailbox allocation in bytes (a total, not a delta)'),
  sources: Type.Optional(Type.Array(Type.Object({ storeId: Id('mst'), bytes: Bytes('bytes this store gains (growing) or gives up (shrinking)') }, strict), {
    minItems: 1, maxItems: 1000, description: 'explicit stores for the change; required to shrink an organization that spans several stores',
  })),
}, strict);

const Piece = Type.Object({
  storeId: Type.String(), serverId: Type.String(), storeName: Type.String(), purpose: Type.String(), sharing: Type.String(), state: Type.String(),
  bytes: Type.Integer({ description: 'the organization\'s allocation on this store' }), chargedBytes: Type.Integer(), mailboxCount: Type.Integer(),
});
export const ResourcesView = Type.Object({
  orgId: Type.String(),
  mailboxBytes: Type.Integer({ description: 'the organization\'s mailbox allocation: the sum of its pieces on mailbox stores' }),
  publicFolderBytes: Type.Integer({ description: 'its public-folder allocation: the sum of its pieces on public-folder stores' }),
  dynamic: Type.Boolean(),
  stores: Type.Array(Piece),
});
export type ResourcesView = Static<typeof ResourcesView>;

export const toResources = (s: Subscription, pieces: any[]): ResourcesView => ({
  orgId: s.sub.org_id, mailboxBytes: allocationOf(s).mailboxBytes, publicFolderBytes: allocationOf(s).publicFolderBytes, dynamic: allocationOf(s).dynamic,
  stores: pieces.map((p) => ({
    storeId: p.store_id, serverId: p.server_id, storeName: p.name, purpose: p.purpose, sharing: p.sharing, state: p.state,
    bytes: Number(p.bytes), chargedBytes: Number(p.charged_bytes), mailboxCount: Number(p.mailbox_count),
  })),
});

export const ConsumerView = Type.Object({ orgId: Type.String(), resellerId: Type.String(), bytes: Type.Integer(), chargedBytes: Type.Integer(), mailboxCount: Type.Integer() });
export const toConsumer = (r: any) => ({ orgId: r.org_id, resellerId: r.reseller_id, bytes: Number(r.bytes), chargedBytes: Number(r.charged_bytes), mailboxCount: Number(r.mailbox_count) });
export const RecipientView = Type.Object({
  id: Type.String(), orgId: Type.String(), name: Type.String({ description: 'primary address of a mailbox, path of a public folder' }),
  chargedBytes: Type.Integer(), state: Type.String(),
});
export const toRecipient = (r: any) => ({ id: r.id, orgId: r.org_id, name: r.name, chargedBytes: Number(r.charged_bytes), state: r.state });
