/**
 * Roles and scopes. The hierarchy is provider > reseller > organization > user. A principal holds one
 * role at one node of the hierarchy; everything it may see lies at or below that node.
 */
export const ROLES = [
  'provider_admin',
  'provider_helpdesk',
  'reseller_admin',
  'reseller_helpdesk',
  'organization_admin',
  'organization_helpdesk',
  'user',
] as const;
export type Role = (typeof ROLES)[number];

export type Level = 'provider' | 'reseller' | 'organization' | 'user';
export type Kind = 'admin' | 'helpdesk' | 'user';

const LEVEL_RANK: Record<Level, number> = { provider: 3, reseller: 2, organization: 1, user: 0 };
const KIND_RANK: Record<Kind, number> = { admin: 2, helpdesk: 1, user: 0 };

export const ROLE_INFO: Record<Role, { level: Level; kind: Kind }> = {
  provider_admin: { level: 'provider', kind: 'admin' },
  provider_helpdesk: { level: 'provider', kind: 'helpdesk' },
  reseller_admin: { level: 'reseller', kind: 'admin' },
  reseller_helpdesk: { level: 'reseller', kind: 'helpdesk' },
  organization_admin: { level: 'organization', kind: 'admin' },
  organization_helpdesk: { level: 'organization', kind: 'helpdesk' },
  user: { level: 'user', kind: 'user' },
};

/** Who is calling: a role at a node. `userId` is set for the `user` role (self-service). */
export interface Principal {
  /** Token the call came with; null for the system itself (workers, compensation, init). */
  tokenId: string | null;
  role: Role;
  resellerId: string | null;
  orgId: string | null;
  userId: string | null;
  /** For audit: token name or "system". */
  actor: string;
}

/** The system principal used by workers and `hmc init`; never reachable through the API. */
export const SYSTEM: Principal = {
  tokenId: null,
  role: 'provider_admin',
  resellerId: null,
  orgId: null,
  userId: null,
  actor: 'system',
};

/**
 * True when role `a` covers role `b`: at least as high in the hierarchy and at least as strong
 * (admin > helpdesk > user). This is both "may call a procedure whose minimum role is b" and
 * "may grant b" (grant only what you hold).
 */
export function roleCovers(a: Role, b: Role): boolean {
  const ia = ROLE_INFO[a];
  const ib = ROLE_INFO[b];
  return LEVEL_RANK[ia.level] >= LEVEL_RANK[ib.level] && KIND_RANK[ia.kind] >= KIND_RANK[ib.kind];
}

/** A node of the hierarchy, as stored on tenant rows. */
export interface Node {
  resellerId: string | null;
  orgId: string | null;
  userId?: string | null;
}

/** True when `node` lies at or below the principal's node. */
export function nodeInScope(p: Principal, node: Node): boolean {
  const level = ROLE_INFO[p.role].level;
  if (level === 'provider') return true;
  if (level === 'reseller') return node.resellerId !== null && node.resellerId === p.resellerId;
  if (level === 'organization') return node.orgId !== null && node.orgId === p.orgId;
  return node.orgId !== null && node.orgId === p.orgId && node.userId != null && node.userId === p.userId;
}

/** The level of the node a role is bound to. */
export function roleLevel(r: Role): Level {
  return ROLE_INFO[r].level;
}

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}
