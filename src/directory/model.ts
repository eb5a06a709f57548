import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { displayDomain, DISPLAY_NAME_PATTERN, SLUG_PATTERN } from '../core/names.js';
import { ROLES } from '../core/tenancy.js';
import { iso } from '../core/time.js';
import { Id, Nullable } from '../engine/http.js';

export { Id, iso };

/**
 * The directory's types: input schemas (shared by procedures and routes, so validation, types and
 * OpenAPI come from one place) and the views the API returns. Rows are snake_case; views camelCase.
 */

const strict = { additionalProperties: false } as const;
export const Slug = Type.String({ pattern: SLUG_PATTERN, minLength: 1, maxLength: 64 });
export const DisplayName = Type.String({ minLength: 1, maxLength: 256, pattern: DISPLAY_NAME_PATTERN });
export const OptionalText = (max: number) => Type.String({ maxLength: max, pattern: DISPLAY_NAME_PATTERN });
export const DomainName = Type.String({ minLength: 1, maxLength: 253, description: 'domain name; IDN accepted, stored in A-label form' });
export const Address = Type.String({ minLength: 3, maxLength: 254, description: 'e-mail address on one of the organization\'s domains' });
export const Password = Type.String({ minLength: 1, maxLength: 1024, description: 'plain password; stored only as a {BLF-CRYPT} hash' });
export const PasswordHash = Type.String({ minLength: 1, maxLength: 1024, description: 'existing hash in a Dovecot scheme, e.g. {BLF-CRYPT}$2y$..., {SHA512-CRYPT}$6$...' });
export const UserRole = Type.Union([Type.Literal('user'), Type.Literal('organization_helpdesk'), Type.Literal('organization_admin')]);
export const AnyRole = Type.Union(ROLES.map((r) => Type.Literal(r)));
export const Timestamp = Type.String({ format: 'date-time' });

// ---- inputs ----
export const ResellerRef = Type.Object({ resellerId: Id('rsl') }, strict);
export const OrgRef = Type.Object({ orgId: Id('org') }, strict);

export const CreateResellerBody = Type.Object({ name: Slug, displayName: Type.Optional(DisplayName) }, strict);
export const UpdateResellerBody = Type.Object({ displayName: DisplayName }, strict);
export const CreateOrganizationBody = Type.Object({ resellerId: Id('rsl'), name: Slug, displayName: Type.Optional(DisplayName) }, strict);
export const UpdateOrganizationBody = Type.Object({ displayName: DisplayName }, strict);
export const MoveOrganizationBody = Type.Object({ resellerId: Id('rsl') }, strict);
export const AddDomainBody = Type.Object({ name: DomainName }, strict);

export const CreateUserBody = Type.Object(
  {
    login: Address,
    displayName: Type.Optional(DisplayName),
    givenName: Type.Optional(OptionalText(128)),
    surname: Type.Optional(OptionalText(128)),
    password: Type.Optional(Password),
    passwordHash: Type.Optional(PasswordHash),
    enabled: Type.Optional(Type.Boolean()),
    role: Type.Optional(UserRole),
  },
  strict,
);
export const UpdateUserBody = Type.Object(
  {
    displayName: Type.Optional(DisplayName),
    givenName: Type.Optional(Nullable(OptionalText(128))),
    surname: Type.Optional(Nullable(OptionalText(128))),
    enabled: Type.Optional(Type.Boolean()),
    role: Type.Optional(UserRole),
  },
  { ...strict, minProperties: 1 },
);
export const SetPasswordBody = Type.Object({ password: Password }, strict);

export const CreateGroupBody = Type.Object(
  {
    name: Slug,
    displayName: Type.Optional(DisplayName),
    description: Type.Optional(OptionalText(1024)),
    members: Type.Optional(Type.Array(Id('usr'), { maxItems: 1000, uniqueItems: true })),
  },
  strict,
);
export const UpdateGroupBody = Type.Object(
  { displayName: Type.Optional(DisplayName), description: Type.Optional(Nullable(OptionalText(1024))) },
  { ...strict, minProperties: 1 },
);

export const CreateTokenBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128, pattern: DISPLAY_NAME_PATTERN }),
    role: AnyRole,
    resellerId: Type.Optional(Id('rsl')),
    orgId: Type.Optional(Id('org')),
    userId: Type.Optional(Id('usr')),
    expiresAt: Type.Optional(Timestamp),
  },
  strict,
);

// ---- views ----
export const ResellerView = Type.Object({
  id: Type.String(), name: Type.String(), displayName: Type.String(), state: Type.String(), createdAt: Timestamp, updatedAt: Timestamp,
});
export const OrganizationView = Type.Object({
  id: Type.String(), resellerId: Type.String(), name: Type.String(), displayName: Type.String(), state: Type.String(),
  createdAt: Timestamp, updatedAt: Timestamp,
});
export const DomainView = Type.Object({
  id: Type.String(), orgId: Type.String(), name: Type.String(), unicodeName: Type.String(), createdAt: Timestamp,
});
export const UserView = Type.Object({
  id: Type.String(), orgId: Type.String(), domainId: Type.String(), login: Type.String(), displayName: Type.String(),
  givenName: Nullable(Type.String()), surname: Nullable(Type.String()), enabled: Type.Boolean(), role: Type.String(),
  state: Type.String(), hasPassword: Type.Boolean(), createdAt: Timestamp, updatedAt: Timestamp,
});
export const GroupView = Type.Object({
  id: Type.String(), orgId: Type.String(), name: Type.String(), displayName: Type.String(), description: Nullable(Type.String()),
  createdAt: Timestamp, updatedAt: Timestamp,
});
export const MemberView = Type.Object({ userId: Type.String(), login: Type.String(), displayName: Type.String() });
export const TokenView = Type.Object({
  id: Type.String(), name: Type.String(), role: Type.String(), resellerId: Nullable(Type.String()), orgId: Nullable(Type.String()),
  userId: Nullable(Type.String()), createdBy: Nullable(Type.String()), createdAt: Timestamp, expiresAt: Nullable(Timestamp),
  revokedAt: Nullable(Timestamp),
});
export const CreatedTokenView = Type.Composite([TokenView, Type.Object({ token: Type.String({ description: 'shown once; store it now' }) })]);

export type ResellerView = Static<typeof ResellerView>;
export type OrganizationView = Static<typeof OrganizationView>;
export type DomainView = Static<typeof DomainView>;
export type UserView = Static<typeof UserView>;
export type GroupView = Static<typeof GroupView>;
export type TokenView = Static<typeof TokenView>;

const isoReq = (ms: number): string => iso(ms)!;

/* eslint-disable @typescript-eslint/no-explicit-any */
export const toReseller = (r: any): ResellerView => ({
  id: r.id, name: r.name, displayName: r.display_name, state: r.state, createdAt: isoReq(r.created_at), updatedAt: isoReq(r.updated_at),
});
export const toOrganization = (r: any): OrganizationView => ({
  id: r.id, resellerId: r.reseller_id, name: r.name, displayName: r.display_name, state: r.state,
  createdAt: isoReq(r.created_at), updatedAt: isoReq(r.updated_at),
});
export const toUser = (r: any): UserView => ({
  id: r.id, orgId: r.org_id, domainId: r.domain_id, login: r.login, displayName: r.display_name, givenName: r.given_name ?? null,
  surname: r.surname ?? null, enabled: Number(r.enabled) === 1, role: r.role, state: r.state, hasPassword: r.password_hash != null,
  createdAt: isoReq(r.created_at), updatedAt: isoReq(r.updated_at),
});
export const toGroup = (r: any): GroupView => ({
  id: r.id, orgId: r.org_id, name: r.name, displayName: r.display_name, description: r.description ?? null,
  createdAt: isoReq(r.created_at), updatedAt: isoReq(r.updated_at),
});
export const toToken = (r: any): TokenView => ({
  id: r.id, name: r.name, role: r.role, resellerId: r.reseller_id ?? null, orgId: r.org_id ?? null, userId: r.user_id ?? null,
  createdBy: r.created_by ?? null, createdAt: isoReq(r.created_at), expiresAt: iso(r.expires_at), revokedAt: iso(r.revoked_at),
});

/** Persisted job kinds of the directory (never rename). */
export const JOBS = {
  convergeHome: 'files.converge_home',
  purgeUser: 'directory.purge_user',
  purgeOrganization: 'directory.purge_organization',
} as const;
export const toDomain = (r: any): DomainView => ({
  id: r.id, orgId: r.org_id, name: r.name, unicodeName: displayDomain(r.name), createdAt: isoReq(r.created_at),
});
