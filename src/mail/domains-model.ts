import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { displayDomain } from '../core/names.js';
import { iso } from '../core/time.js';
import { DomainName } from '../directory/model.js';
import { Id, Nullable } from '../engine/http.js';

/**
 * Accepted domains: a directory domain of an organization made a mail domain (authoritative: its
 * recipients are all here; internal relay: unknown recipients go to another server of the same customer;
 * external relay: mail is relayed to a server outside). A domain alias (`aliasOf`) has no recipients of its
 * own: mail to x@alias reaches x@primary. Shared domains are the provider's own domains under which an
 * organization can get a subdomain (`label.shared.example`) without owning a domain.
 */

const strict = { additionalProperties: false } as const;
const Timestamp = Type.String({ format: 'date-time' });

/** Accepted domain types (persisted names). */
export const ACCEPTED_TYPES = ['authoritative', 'internal_relay', 'external_relay'] as const;
export type AcceptedType = (typeof ACCEPTED_TYPES)[number];
export const AcceptedType = Type.Union(ACCEPTED_TYPES.map((t) => Type.Literal(t)));

export const AcceptDomainBody = Type.Object(
  {
    type: Type.Optional(AcceptedType),
    aliasOf: Type.Optional(Nullable(Id('dom'))),
  },
  { ...strict, description: 'absent fields keep their current value (defaults when the domain is newly accepted: authoritative, no alias)' },
);
export const SharedDomainBody = Type.Object({ name: DomainName }, strict);
export const SharedSubdomainBody = Type.Object(
  {
    sharedDomainId: Id('sdm'),
    label: Type.String({ minLength: 1, maxLength: 63, description: 'one domain label; the organization gets label.<shared domain>' }),
  },
  strict,
);

export const AcceptedDomainView = Type.Object({
  domainId: Type.String(), orgId: Type.String(), name: Type.String(), unicodeName: Type.String(), type: Type.String(),
  aliasOf: Nullable(Type.String()), sharedDomainId: Nullable(Type.String()), createdAt: Timestamp, updatedAt: Timestamp,
});
export type AcceptedDomainView = Static<typeof AcceptedDomainView>;
export const SharedDomainView = Type.Object({ id: Type.String(), name: Type.String(), unicodeName: Type.String(), createdAt: Timestamp });
export type SharedDomainView = Static<typeof SharedDomainView>;

/* eslint-disable @typescript-eslint/no-explicit-any */
export const toAcceptedDomain = (r: any): AcceptedDomainView => ({
  domainId: r.domain_id, orgId: r.org_id, name: r.name, unicodeName: displayDomain(r.name), type: r.type, aliasOf: r.alias_of ?? null,
  sharedDomainId: r.shared_domain_id ?? null, createdAt: iso(r.created_at)!, updatedAt: iso(r.updated_at)!,
});
export const toSharedDomain = (r: any): SharedDomainView => ({ id: r.id, name: r.name, unicodeName: displayDomain(r.name), createdAt: iso(r.created_at)! });
