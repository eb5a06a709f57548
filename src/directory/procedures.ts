import { createHash, randomBytes } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { assertSlug, normalizeAddress, normalizeDomain } from '../core/names.js';
import { isRole, nodeInScope, roleCovers, roleLevel, type Principal, type Role } from '../core/tenancy.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { isForeignKeyViolation, isUniqueViolation, violatedConstraint, type Db } from '../store/db.js';
import { insertRow, runSql } from '../store/compiled.js';
import {
  AddDomainBody, CreateGroupBody, CreateOrganizationBody, CreateResellerBody, CreateTokenBody, CreateUserBody, Id, JOBS,
  MoveOrganizationBody, SetPasswordBody, toDomain, toGroup, toOrganization, toReseller, toToken, toUser,
  UpdateGroupBody, UpdateOrganizationBody, UpdateResellerBody, UpdateUserBody,
} from './model.js';
import { checkImportedHash, checkPasswordPolicy } from './passwords.js';
import { directoryHooks } from './hooks.js';
import { getDomain, getGroup, getOrganization, getReseller, getToken, getUser } from './repo.js';

/** Persisted procedure ids (never rename). */
export const P = {
  createReseller: 'directory.create_reseller',
  updateReseller: 'directory.update_reseller',
  suspendReseller: 'directory.suspend_reseller',
  resumeReseller: 'directory.resume_reseller',
  deleteReseller: 'directory.delete_reseller',
  createOrganization: 'directory.create_organization',
  updateOrganization: 'directory.update_organization',
  suspendOrganization: 'directory.suspend_organization',
  resumeOrganization: 'directory.resume_organization',
  moveOrganization: 'directory.move_organization',
  deleteOrganization: 'directory.delete_organization',
  addDomain: 'directory.add_domain',
  removeDomain: 'directory.remove_domain',
  createUser: 'directory.create_user',
  updateUser: 'directory.update_user',
  setPassword: 'directory.set_password',
  deleteUser: 'directory.delete_user',
  createGroup: 'directory.create_group',
  updateGroup: 'directory.update_group',
  deleteGroup: 'directory.delete_group',
  addGroupMember: 'directory.add_group_member',
  removeGroupMember: 'directory.remove_group_member',
  createToken: 'directory.create_token',
  revokeToken: 'directory.revoke_token',
} as const;

const strict = { additionalProperties: false } as const;
/** A procedure input: the ids from the path plus the body's fields (the route checks the body on its own). */
const withRef = <T extends Record<string, any>>(ref: Record<string, any>, body: T) => Type.Object({ ...ref, ...(body as any).properties }, strict);

const ORG_BY_ID = 'SELECT * FROM organizations WHERE id = ?';

/**
 * Lock a parent row for the rest of the transaction. PostgreSQL: FOR SHARE when adding children
 * (many may add at once, but a concurrent delete or move waits), FOR UPDATE when changing the parent.
 * SQLite has one writer, so the plain read is already serialised.
 */
export async function lockOrg(ctx: ProcContext, orgId: string, mode: 'share' | 'update'): Promise<any> {
  // fixed SQL text: every change inside an organization runs this first (store/compiled.ts)
  const text = ctx.dialect === 'sqlite' ? ORG_BY_ID : mode === 'share' ? `${ORG_BY_ID} FOR SHARE` : `${ORG_BY_ID} FOR UPDATE`;
  const org = (await runSql(ctx.tx, text, [orgId])).rows[0];
  if (!org || !nodeInScope(ctx.principal, { resellerId: org.reseller_id, orgId: org.id })) throw Errors.notFound(`organization ${orgId} not found`);
  if (roleLevel(ctx.principal.role) === 'user') throw Errors.notFound(`organization ${orgId} not found`);
  return org;
}

export async function liveOrg(ctx: ProcContext, orgId: string, mode: 'share' | 'update' = 'share'): Promise<any> {
  const org = await lockOrg(ctx, orgId, mode);
  if (org.state === 'deleting') throw Errors.stateConflict(`organization ${orgId} is being deleted`);
  return org;
}

const orgTarget = (org: any) => ({ type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id });

export function conflictOn(e: unknown, map: Record<string, () => Error>): never {
  if (isUniqueViolation(e)) {
    const c = violatedConstraint(e);
    for (const [k, f] of Object.entries(map)) if (c.includes(k)) throw f();
  }
  throw e;
}

// ---------------- resellers ----------------

export const createReseller = defineProcedure({
  id: P.createReseller,
  input: CreateResellerBody,
  minRole: 'provider_admin',
  async run(ctx, input) {
    const row = { id: newId('reseller'), name: assertSlug(input.name, 'reseller name'), display_name: input.displayName ?? input.name, state: 'active', created_at: ctx.now, updated_at: ctx.now };
    await ctx.tx.insertInto('resellers').values(row).execute().catch((e) => conflictOn(e, { name: () => Errors.nameTaken(`a reseller named ${input.name} exists`) }));
    ctx.target({ type: 'reseller', id: row.id, resellerId: row.id, orgId: null });
    ctx.diff(null, toReseller(row));
    ctx.event({ resellerId: row.id, orgId: null, objectType: 'reseller', objectId: row.id, event: 'created' });
    return toReseller(row);
  },
});

export const updateReseller = defineProcedure({
  id: P.updateReseller,
  input: withRef({ resellerId: Id('rsl') }, UpdateResellerBody),
  minRole: 'provider_admin',
  async run(ctx, input: { resellerId: string; displayName: string }) {
    const before = await getReseller(ctx.tx, ctx.principal, input.resellerId);
    const after = { ...before, display_name: input.displayName, updated_at: ctx.now };
    await ctx.tx.updateTable('resellers').set({ display_name: after.display_name, updated_at: ctx.now }).where('id', '=', before.id).execute();
    ctx.target({ type: 'reseller', id: before.id, resellerId: before.id, orgId: null });
    ctx.diff(toReseller(before), toReseller(after));
    return toReseller(after);
  },
});

function resellerStateChange(id: string, from: string, to: string, event: 'suspended' | 'resumed') {
  return defineProcedure({
    id,
    input: Type.Object({ resellerId: Id('rsl') }, strict),
    minRole: 'provider_admin',
    async run(ctx, input) {
      const before = await getReseller(ctx.tx, ctx.principal, input.resellerId);
      if (before.state !== from) throw Errors.stateConflict(`reseller is ${before.state}, not ${from}`);
      await ctx.tx.updateTable('resellers').set({ state: to, updated_at: ctx.now }).where('id', '=', before.id).execute();
      const after = { ...before, state: to, updated_at: ctx.now };
      ctx.target({ type: 'reseller', id: before.id, resellerId: before.id, orgId: null });
      ctx.diff(toReseller(before), toReseller(after));
      ctx.event({ resellerId: before.id, orgId: null, objectType: 'reseller', objectId: before.id, event });
      return toReseller(after);
    },
  });
}
export const suspendReseller = resellerStateChange(P.suspendReseller, 'active', 'suspended', 'suspended');
export const resumeReseller = resellerStateChange(P.resumeReseller, 'suspended', 'active', 'resumed');

export const deleteReseller = defineProcedure({
  id: P.deleteReseller,
  input: Type.Object({ resellerId: Id('rsl') }, strict),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const before = await getReseller(ctx.tx, ctx.principal, input.resellerId);
    const orgs = await ctx.tx.selectFrom('organizations').select('id').where('reseller_id', '=', before.id).limit(1).execute();
    if (orgs.length > 0) throw Errors.resellerHasOrganizations('the reseller still has organizations; move or delete them first');
    await ctx.tx.updateTable('tokens').set({ revoked_at: ctx.now }).where('reseller_id', '=', before.id).where('revoked_at', 'is', null).execute();
    await ctx.tx.deleteFrom('resellers').where('id', '=', before.id).execute();
    ctx.target({ type: 'reseller', id: before.id, resellerId: before.id, orgId: null });
    ctx.diff(toReseller(before), null);
    ctx.event({ resellerId: before.id, orgId: null, objectType: 'reseller', objectId: before.id, event: 'deleted' });
    return toReseller(before);
  },
});

// ---------------- organizations ----------------

export const createOrganization = defineProcedure({
  id: P.createOrganization,
  input: CreateOrganizationBody,
  minRole: 'reseller_admin',
  async run(ctx, input) {
    const reseller = await getReseller(ctx.tx, ctx.principal, input.resellerId);
    if (reseller.state !== 'active') throw Errors.stateConflict('the reseller is suspended');
    const row = {
      id: newId('organization'), reseller_id: reseller.id, name: assertSlug(input.name, 'organization name'),
      display_name: input.displayName ?? input.name, state: 'active', created_at: ctx.now, updated_at: ctx.now,
    };
    await ctx.tx.insertInto('organizations').values(row).execute().catch((e) => conflictOn(e, { name: () => Errors.nameTaken(`an organization named ${input.name} exists`) }));
    ctx.target(orgTarget(row));
    ctx.diff(null, toOrganization(row));
    ctx.event({ resellerId: row.reseller_id, orgId: row.id, objectType: 'organization', objectId: row.id, event: 'created' });
    return toOrganization(row);
  },
});

export const updateOrganization = defineProcedure({
  id: P.updateOrganization,
  input: withRef({ orgId: Id('org') }, UpdateOrganizationBody),
  minRole: 'organization_admin',
  async run(ctx, input: { orgId: string; displayName: string }) {
    const before = await liveOrg(ctx, input.orgId, 'update');
    const after = { ...before, display_name: input.displayName, updated_at: ctx.now };
    await ctx.tx.updateTable('organizations').set({ display_name: input.displayName, updated_at: ctx.now }).where('id', '=', before.id).execute();
    ctx.target(orgTarget(before));
    ctx.diff(toOrganization(before), toOrganization(after));
    return toOrganization(after);
  },
});

function orgStateChange(id: string, from: string, to: string, event: 'suspended' | 'resumed') {
  return defineProcedure({
    id,
    input: Type.Object({ orgId: Id('org') }, strict),
    minRole: 'reseller_admin',
    async run(ctx, input) {
      const before = await liveOrg(ctx, input.orgId, 'update');
      if (before.state !== from) throw Errors.stateConflict(`organization is ${before.state}, not ${from}`);
      await ctx.tx.updateTable('organizations').set({ state: to, updated_at: ctx.now }).where('id', '=', before.id).execute();
      const after = { ...before, state: to, updated_at: ctx.now };
      ctx.target(orgTarget(before));
      ctx.diff(toOrganization(before), toOrganization(after));
      ctx.event({ resellerId: before.reseller_id, orgId: before.id, objectType: 'organization', objectId: before.id, event });
      return toOrganization(after);
    },
  });
}
export const suspendOrganization = orgStateChange(P.suspendOrganization, 'active', 'suspended', 'suspended');
export const resumeOrganization = orgStateChange(P.resumeOrganization, 'suspended', 'active', 'resumed');

export const moveOrganization = defineProcedure({
  id: P.moveOrganization,
  input: withRef({ orgId: Id('org') }, MoveOrganizationBody),
  minRole: 'provider_admin',
  async run(ctx, input: { orgId: string; resellerId: string }) {
    const before = await liveOrg(ctx, input.orgId, 'update');
    const target = await getReseller(ctx.tx, ctx.principal, input.resellerId);
    if (target.id === before.reseller_id) throw Errors.stateConflict('the organization already belongs to this reseller');
    // reseller_id is denormalised onto tenant rows so scoped queries need no join: move them all
    for (const t of ['organizations', 'domains', 'users', 'groups', 'tokens', ...directoryHooks.tenantTables]) {
      const q = ctx.tx.updateTable(t).set({ reseller_id: target.id });
      await (t === 'organizations' ? q.where('id', '=', before.id) : q.where('org_id', '=', before.id)).execute();
    }
    const after = { ...before, reseller_id: target.id, updated_at: ctx.now };
    await ctx.tx.updateTable('organizations').set({ updated_at: ctx.now }).where('id', '=', before.id).execute();
    ctx.target(orgTarget(after));
    ctx.diff(toOrganization(before), toOrganization(after));
    ctx.event({ resellerId: target.id, orgId: before.id, objectType: 'organization', objectId: before.id, event: 'moved', data: { from: before.reseller_id, to: target.id } });
    return toOrganization(after);
  },
});

/**
 * Delete an organization. Refused while it has users unless `force`; a forced delete disables first
 * (organization and users go to `deleting`), then jobs remove every home directory and finally purge
 * the rows. If a removal fails for good, the compensation brings organization and users back.
 */
export const deleteOrganization = defineProcedure({
  id: P.deleteOrganization,
  input: Type.Object({ orgId: Id('org'), force: Type.Optional(Type.Boolean()) }, strict),
  minRole: 'reseller_admin',
  async run(ctx, input) {
    const before = await liveOrg(ctx, input.orgId, 'update');
    const users = await ctx.tx.selectFrom('users').select(['id', 'state']).where('org_id', '=', before.id).execute();
    if (users.length > 0 && !input.force) {
      throw Errors.organizationHasUsers(`the organization still has ${users.length} user(s); delete them or pass force=true`);
    }
    for (const h of directoryHooks.beforeDeleteOrganization) await h(ctx, before.id, input.force === true);
    await ctx.tx.updateTable('organizations').set({ state: 'deleting', updated_at: ctx.now }).where('id', '=', before.id).execute();
    const active = users.filter((u) => u.state === 'active').map((u) => u.id as string);
    if (active.length > 0) await ctx.tx.updateTable('users').set({ state: 'deleting', updated_at: ctx.now }).where('org_id', '=', before.id).where('state', '=', 'active').execute();
    await ctx.tx.updateTable('tokens').set({ revoked_at: ctx.now }).where('org_id', '=', before.id).where('revoked_at', 'is', null).execute();
    for (const u of users) ctx.enqueue({ kind: JOBS.convergeHome, payload: { orgId: before.id, userId: u.id }, queueKey: before.id });
    ctx.enqueue({ kind: JOBS.purgeOrganization, payload: { orgId: before.id }, queueKey: before.id });
    ctx.target(orgTarget(before));
    ctx.diff(toOrganization(before), null);
    for (const id of active) ctx.event({ resellerId: before.reseller_id, orgId: before.id, objectType: 'user', objectId: id, event: 'deleted' });
    ctx.event({ resellerId: before.reseller_id, orgId: before.id, objectType: 'organization', objectId: before.id, event: 'deleted' });
    ctx.compensation({ orgId: before.id, state: before.state, users: active });
    return { ...toOrganization(before), state: 'deleting' };
  },
  async compensate(ctx, data: { orgId: string; state: string; users: string[] }) {
    const org = await ctx.tx.selectFrom('organizations').selectAll().where('id', '=', data.orgId).executeTakeFirst();
    if (!org || org.state !== 'deleting') return; // already purged or restored: nothing to undo
    await ctx.tx.updateTable('organizations').set({ state: data.state, updated_at: ctx.now }).where('id', '=', org.id).execute();
    for (let i = 0; i < data.users.length; i += 500) {
      await ctx.tx.updateTable('users').set({ state: 'active', updated_at: ctx.now }).where('id', 'in', data.users.slice(i, i + 500)).where('state', '=', 'deleting').execute();
    }
    for (const id of data.users) ctx.enqueue({ kind: JOBS.convergeHome, payload: { orgId: org.id, userId: id }, queueKey: org.id });
    ctx.target(orgTarget(org));
    ctx.diff({ state: 'deleting' }, { state: data.state, restoredUsers: data.users.length });
    for (const id of data.users) ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'user', objectId: id, event: 'created', data: { compensation: true } });
    ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'organization', objectId: org.id, event: 'created', data: { compensation: true } });
  },
});

// ---------------- domains ----------------

/**
 * Add a domain to an organization (already locked by `liveOrg`) inside the caller's transaction: the row
 * and its billing event. Shared with the mail area, which gives organizations subdomains of a shared domain.
 */
export async function insertDomain(ctx: ProcContext, org: { id: string; reseller_id: string }, name: string): Promise<any> {
  const row = { id: newId('domain'), org_id: org.id, reseller_id: org.reseller_id, name: normalizeDomain(name), created_at: ctx.now };
  await ctx.tx.insertInto('domains').values(row).execute().catch((e) => conflictOn(e, { name: () => Errors.domainTaken(`${row.name} already belongs to an organization`) }));
  ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'domain', objectId: row.id, event: 'created', data: { name: row.name } });
  return row;
}

export const addDomain = defineProcedure({
  id: P.addDomain,
  input: withRef({ orgId: Id('org') }, AddDomainBody),
  minRole: 'organization_admin',
  async run(ctx, input: { orgId: string; name: string }) {
    const org = await liveOrg(ctx, input.orgId);
    const row = await insertDomain(ctx, org, input.name);
    ctx.target({ type: 'domain', id: row.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(null, toDomain(row));
    return toDomain(row);
  },
});

export const removeDomain = defineProcedure({
  id: P.removeDomain,
  input: Type.Object({ orgId: Id('org'), domainId: Id('dom') }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const d = await getDomain(ctx.tx, ctx.principal, org.id, input.domainId);
    const used = await ctx.tx.selectFrom('users').select('id').where('domain_id', '=', d.id).limit(1).execute();
    if (used.length > 0) throw Errors.domainInUse(`${d.name} still has users; delete or rename them first`);
    // other areas' rows may refer to the domain (mail: an accepted domain); the database knows, the directory need not
    await ctx.tx.deleteFrom('domains').where('id', '=', d.id).execute().catch((e) => {
      if (isForeignKeyViolation(e)) throw Errors.domainInUse(`${d.name} is still in use (e.g. an accepted mail domain); remove that first`);
      throw e;
    });
    ctx.target({ type: 'domain', id: d.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(toDomain(d), null);
    ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'domain', objectId: d.id, event: 'deleted', data: { name: d.name } });
    return toDomain(d);
  },
});

// ---------------- users ----------------

function checkGrant(p: Principal, role: Role): void {
  if (!roleCovers(p.role, role)) throw Errors.roleNotGrantable(`you may grant only roles you hold; ${p.role} does not cover ${role}`);
}

const CreateUserInput = withRef({ orgId: Id('org') }, CreateUserBody);

export const createUser = defineProcedure({
  id: P.createUser,
  input: CreateUserInput,
  minRole: 'organization_admin',
  secrets: ['password', 'passwordHash'],
  async prepare(input: any, deps) {
    if (input.password !== undefined && input.passwordHash !== undefined) throw Errors.invalidRequest('give password or passwordHash, not both');
    let hash: string | null = null;
    if (input.password !== undefined) {
      checkPasswordPolicy(input.password);
      hash = await deps.hashPassword(input.password);
    } else if (input.passwordHash !== undefined) hash = checkImportedHash(input.passwordHash);
    const { password: _p, passwordHash: _h, ...rest } = input;
    return { ...rest, hash, address: normalizeAddress(input.login) };
  },
  async run(ctx, input: any) {
    const org = await liveOrg(ctx, input.orgId);
    const role: Role = input.role ?? 'user';
    checkGrant(ctx.principal, role);
    // fixed SQL text for the hottest procedure: Kysely's builder costs as much as the statements (store/compiled.ts)
    const domain = (await runSql<{ id: string }>(ctx.tx, 'SELECT id FROM domains WHERE org_id = ? AND name = ?', [org.id, input.address.domain])).rows[0];
    if (!domain) throw Errors.domainNotInOrganization(`${input.address.domain} is not a domain of this organization`);
    const row = {
      id: newId('user'), org_id: org.id, reseller_id: org.reseller_id, domain_id: domain.id, login: input.address.address,
      display_name: input.displayName ?? input.address.local, given_name: input.givenName ?? null, surname: input.surname ?? null,
      password_hash: input.hash, enabled: input.enabled === false ? 0 : 1, role, state: 'active', created_at: ctx.now, updated_at: ctx.now,
    };
    await insertRow(ctx.tx, 'users', row).catch((e) => conflictOn(e, { login: () => Errors.addressTaken(`${row.login} is already in use`) }));
    ctx.enqueue({ kind: JOBS.convergeHome, payload: { orgId: org.id, userId: row.id }, queueKey: org.id });
    ctx.target({ type: 'user', id: row.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(null, toUser(row));
    ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'user', objectId: row.id, event: 'created' });
    ctx.compensation({ orgId: org.id, userId: row.id });
    return toUser(row);
  },
  async compensate(ctx, data: { orgId: string; userId: string }) {
    await undoUser(ctx, data);
  },
});

/** Compensation of a user creation: the user must not exist; disable now, purge after the home is gone. */
async function undoUser(ctx: ProcContext, data: { orgId: string; userId: string }): Promise<void> {
  const u = await ctx.tx.selectFrom('users').selectAll().where('id', '=', data.userId).executeTakeFirst();
  if (!u) return;
  await ctx.tx.updateTable('users').set({ state: 'deleting', updated_at: ctx.now }).where('id', '=', u.id).execute();
  ctx.enqueue({ kind: JOBS.convergeHome, payload: { orgId: u.org_id, userId: u.id }, queueKey: u.org_id });
  ctx.enqueue({ kind: JOBS.purgeUser, payload: { userId: u.id }, queueKey: u.org_id });
  ctx.target({ type: 'user', id: u.id, resellerId: u.reseller_id, orgId: u.org_id });
  ctx.diff(toUser(u), null);
  if (u.state === 'active') ctx.event({ resellerId: u.reseller_id, orgId: u.org_id, objectType: 'user', objectId: u.id, event: 'deleted', data: { compensation: true } });
}

export const updateUser = defineProcedure({
  id: P.updateUser,
  input: withRef({ orgId: Id('org'), userId: Id('usr') }, UpdateUserBody),
  minRole: 'organization_admin',
  async run(ctx, input: any) {
    const org = await liveOrg(ctx, input.orgId);
    const before = await getUser(ctx.tx, ctx.principal, org.id, input.userId);
    if (before.state !== 'active') throw Errors.stateConflict('the user is being deleted');
    if (input.role !== undefined) {
      checkGrant(ctx.principal, input.role);
      checkGrant(ctx.principal, before.role); // nor take away a role stronger than yours
    }
    const set: Record<string, unknown> = { updated_at: ctx.now };
    if (input.displayName !== undefined) set.display_name = input.displayName;
    if (input.givenName !== undefined) set.given_name = input.givenName;
    if (input.surname !== undefined) set.surname = input.surname;
    if (input.enabled !== undefined) set.enabled = input.enabled ? 1 : 0;
    if (input.role !== undefined) set.role = input.role;
    await ctx.tx.updateTable('users').set(set).where('id', '=', before.id).execute();
    const after = { ...before, ...set };
    ctx.target({ type: 'user', id: before.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(toUser(before), toUser(after));
    return toUser(after);
  },
});

export const setPassword = defineProcedure({
  id: P.setPassword,
  input: withRef({ orgId: Id('org'), userId: Id('usr') }, SetPasswordBody),
  // helpdesk roles reset passwords; a user may set their own (the scope check limits a user to itself)
  minRole: 'user',
  secrets: ['password'],
  async prepare(input: any, deps) {
    checkPasswordPolicy(input.password);
    return { orgId: input.orgId, userId: input.userId, hash: await deps.hashPassword(input.password) };
  },
  async run(ctx, input: { orgId: string; userId: string; hash: string }) {
    const u = await getUser(ctx.tx, ctx.principal, input.orgId, input.userId);
    if (u.state !== 'active') throw Errors.stateConflict('the user is being deleted');
    if (ctx.principal.role !== 'user') checkGrant(ctx.principal, u.role); // helpdesk may not reset an admin's password
    await ctx.tx.updateTable('users').set({ password_hash: input.hash, updated_at: ctx.now }).where('id', '=', u.id).execute();
    ctx.target({ type: 'user', id: u.id, resellerId: u.reseller_id, orgId: u.org_id });
    ctx.diff({ password: 'old' }, { password: 'new' });
    return toUser({ ...u, password_hash: input.hash, updated_at: ctx.now });
  },
});

export const deleteUser = defineProcedure({
  id: P.deleteUser,
  input: Type.Object({ orgId: Id('org'), userId: Id('usr') }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const u = await getUser(ctx.tx, ctx.principal, org.id, input.userId);
    if (u.state !== 'active') throw Errors.stateConflict('the user is already being deleted');
    checkGrant(ctx.principal, u.role);
    for (const check of directoryHooks.beforeDeleteUser) await check(ctx.tx, u.id);
    await ctx.tx.updateTable('users').set({ state: 'deleting', updated_at: ctx.now }).where('id', '=', u.id).execute();
    await ctx.tx.updateTable('tokens').set({ revoked_at: ctx.now }).where('user_id', '=', u.id).where('revoked_at', 'is', null).execute();
    ctx.enqueue({ kind: JOBS.convergeHome, payload: { orgId: org.id, userId: u.id }, queueKey: org.id });
    ctx.enqueue({ kind: JOBS.purgeUser, payload: { userId: u.id }, queueKey: org.id });
    ctx.target({ type: 'user', id: u.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(toUser(u), null);
    ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'user', objectId: u.id, event: 'deleted' });
    ctx.compensation({ orgId: org.id, userId: u.id });
    return { ...toUser(u), state: 'deleting' };
  },
  async compensate(ctx, data: { orgId: string; userId: string }) {
    const u = await ctx.tx.selectFrom('users').selectAll().where('id', '=', data.userId).executeTakeFirst();
    if (!u || u.state !== 'deleting') return;
    await ctx.tx.updateTable('users').set({ state: 'active', updated_at: ctx.now }).where('id', '=', u.id).execute();
    ctx.enqueue({ kind: JOBS.convergeHome, payload: { orgId: u.org_id, userId: u.id }, queueKey: u.org_id });
    ctx.target({ type: 'user', id: u.id, resellerId: u.reseller_id, orgId: u.org_id });
    ctx.diff({ state: 'deleting' }, { state: 'active' });
    ctx.event({ resellerId: u.reseller_id, orgId: u.org_id, objectType: 'user', objectId: u.id, event: 'created', data: { compensation: true } });
  },
});

// ---------------- groups ----------------

async function checkMembers(tx: Db, orgId: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const found = await tx.selectFrom('users').select('id').where('org_id', '=', orgId).where('state', '=', 'active').where('id', 'in', ids).execute();
  if (found.length !== ids.length) {
    const ok = new Set(found.map((r) => r.id));
    throw Errors.memberNotInOrganization(`not users of this organization: ${ids.filter((i) => !ok.has(i)).slice(0, 5).join(', ')}`);
  }
}

/** What a new group is made of (the body of POST …/groups): directory members are user ids of the organization. */
export interface NewGroup {
  name: string;
  displayName?: string;
  description?: string;
  members?: string[];
}

/**
 * Add a group to an organization (already locked by `liveOrg`) inside the caller's transaction: the row and
 * its directory members. Shared with the mail area, whose group import makes a whole distribution group in
 * one transaction. Returns the row.
 */
export async function insertGroup(ctx: ProcContext, org: { id: string; reseller_id: string }, input: NewGroup): Promise<any> {
  const members = input.members ?? [];
  await checkMembers(ctx.tx, org.id, members);
  const row = {
    id: newId('group'), org_id: org.id, reseller_id: org.reseller_id, name: assertSlug(input.name, 'group name'),
    display_name: input.displayName ?? input.name, description: input.description ?? null, created_at: ctx.now, updated_at: ctx.now,
  };
  await ctx.tx.insertInto('groups').values(row).execute().catch((e) => conflictOn(e, { name: () => Errors.nameTaken(`a group named ${input.name} exists`), groups: () => Errors.nameTaken(`a group named ${input.name} exists`) }));
  if (members.length > 0) await ctx.tx.insertInto('group_members').values(members.map((u) => ({ group_id: row.id, user_id: u, org_id: org.id }))).execute();
  return row;
}

export const createGroup = defineProcedure({
  id: P.createGroup,
  input: withRef({ orgId: Id('org') }, CreateGroupBody),
  minRole: 'organization_admin',
  async run(ctx, input: any) {
    const org = await liveOrg(ctx, input.orgId);
    const members: string[] = input.members ?? [];
    const row = await insertGroup(ctx, org, input);
    ctx.target({ type: 'group', id: row.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(null, { ...toGroup(row), members });
    return toGroup(row);
  },
});

export const updateGroup = defineProcedure({
  id: P.updateGroup,
  input: withRef({ orgId: Id('org'), groupId: Id('grp') }, UpdateGroupBody),
  minRole: 'organization_admin',
  async run(ctx, input: any) {
    const org = await liveOrg(ctx, input.orgId);
    const before = await getGroup(ctx.tx, ctx.principal, org.id, input.groupId);
    const set: Record<string, unknown> = { updated_at: ctx.now };
    if (input.displayName !== undefined) set.display_name = input.displayName;
    if (input.description !== undefined) set.description = input.description;
    await ctx.tx.updateTable('groups').set(set).where('id', '=', before.id).execute();
    const after = { ...before, ...set };
    ctx.target({ type: 'group', id: before.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(toGroup(before), toGroup(after));
    return toGroup(after);
  },
});

export const deleteGroup = defineProcedure({
  id: P.deleteGroup,
  input: Type.Object({ orgId: Id('org'), groupId: Id('grp') }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const g = await getGroup(ctx.tx, ctx.principal, org.id, input.groupId);
    // a distribution group holds an address and a plan count: its mail is disabled first (DELETE …/mail),
    // which releases both; the directory does not reach into the mail area to do it
    const mail = await ctx.tx.selectFrom('mail_groups').select('group_id').where('group_id', '=', g.id).executeTakeFirst();
    if (mail) throw Errors.stateConflict('the group is mail-enabled; disable its mail first (DELETE …/groups/{groupId}/mail)');
    await ctx.tx.deleteFrom('group_members').where('group_id', '=', g.id).execute();
    await ctx.tx.deleteFrom('groups').where('id', '=', g.id).execute();
    ctx.target({ type: 'group', id: g.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(toGroup(g), null);
    return toGroup(g);
  },
});

export const addGroupMember = defineProcedure({
  id: P.addGroupMember,
  input: Type.Object({ orgId: Id('org'), groupId: Id('grp'), userId: Id('usr') }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const g = await getGroup(ctx.tx, ctx.principal, org.id, input.groupId);
    await checkMembers(ctx.tx, org.id, [input.userId]);
    const exists = await ctx.tx.selectFrom('group_members').select('user_id').where('group_id', '=', g.id).where('user_id', '=', input.userId).executeTakeFirst();
    if (!exists) await ctx.tx.insertInto('group_members').values({ group_id: g.id, user_id: input.userId, org_id: org.id }).execute();
    ctx.target({ type: 'group', id: g.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(null, { member: input.userId });
    return { groupId: g.id, userId: input.userId };
  },
});

export const removeGroupMember = defineProcedure({
  id: P.removeGroupMember,
  input: Type.Object({ orgId: Id('org'), groupId: Id('grp'), userId: Id('usr') }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const g = await getGroup(ctx.tx, ctx.principal, org.id, input.groupId);
    const r = await ctx.tx.deleteFrom('group_members').where('group_id', '=', g.id).where('user_id', '=', input.userId).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw Errors.notFound(`user ${input.userId} is not a member of this group`);
    ctx.target({ type: 'group', id: g.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff({ member: input.userId }, null);
    return { groupId: g.id, userId: input.userId };
  },
});

// ---------------- tokens ----------------

/** Token strings are random 256-bit values; only their SHA-256 is stored (a slow hash adds nothing for random secrets). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export const createToken = defineProcedure({
  id: P.createToken,
  input: CreateTokenBody,
  minRole: 'user',
  secrets: ['token'],
  async prepare(input) {
    const token = `hmc_${randomBytes(32).toString('base64url')}`;
    return { ...input, token };
  },
  async run(ctx, input: any) {
    const role: Role = input.role;
    if (!isRole(role)) throw Errors.invalidRequest(`unknown role ${role}`);
    // grant-only-what-you-hold depends on the caller alone, so it is answered first (403), before looking up the node
    checkGrant(ctx.principal, role);
    const level = roleLevel(role);
    const need = { reseller: level === 'reseller', org: level === 'organization' || level === 'user', user: level === 'user' };
    const extra = (input.resellerId && !need.reseller) || (input.orgId && !need.org) || (input.userId && !need.user);
    const missing = (need.reseller && !input.resellerId) || (need.org && !input.orgId) || (need.user && !input.userId);
    if (extra || missing) throw Errors.invalidRequest(`a ${role} token needs exactly: ${['resellerId', 'orgId', 'userId'].filter((_, i) => [need.reseller, need.org, need.user][i]).join(', ') || 'no node'}`);
    let node = { resellerId: null as string | null, orgId: null as string | null, userId: null as string | null };
    if (need.reseller) node.resellerId = (await getReseller(ctx.tx, ctx.principal, input.resellerId)).id;
    if (need.org) {
      const org = await getOrganization(ctx.tx, ctx.principal, input.orgId);
      if (org.state === 'deleting') throw Errors.stateConflict('the organization is being deleted');
      node = { resellerId: org.reseller_id, orgId: org.id, userId: null };
    }
    if (need.user) {
      const u = await getUser(ctx.tx, ctx.principal, input.orgId, input.userId);
      if (u.state !== 'active') throw Errors.stateConflict('the user is being deleted');
      node.userId = u.id;
    }
    if (!nodeInScope(ctx.principal, node)) throw Errors.notFound('the node of this token is outside your scope');
    const expiresAt = input.expiresAt ? Date.parse(input.expiresAt) : null;
    if (expiresAt !== null && (!Number.isFinite(expiresAt) || expiresAt <= ctx.now)) throw Errors.invalidRequest('expiresAt must be a future date-time');
    const row = {
      id: newId('token'), name: input.name, token_hash: hashToken(input.token), role, reseller_id: node.resellerId, org_id: node.orgId,
      user_id: node.userId, created_by: ctx.principal.tokenId, created_at: ctx.now, expires_at: expiresAt, revoked_at: null,
    };
    await ctx.tx.insertInto('tokens').values(row).execute();
    ctx.target({ type: 'token', id: row.id, resellerId: node.resellerId, orgId: node.orgId });
    ctx.diff(null, toToken(row));
    return { ...toToken(row), token: input.token as string };
  },
});

export const revokeToken = defineProcedure({
  id: P.revokeToken,
  input: Type.Object({ tokenId: Id('tok') }, strict),
  minRole: 'user',
  async run(ctx, input) {
    const t = await getToken(ctx.tx, ctx.principal, input.tokenId);
    checkGrant(ctx.principal, t.role);
    if (t.revoked_at !== null) return toToken(t);
    await ctx.tx.updateTable('tokens').set({ revoked_at: ctx.now }).where('id', '=', t.id).execute();
    const after = { ...t, revoked_at: ctx.now };
    ctx.target({ type: 'token', id: t.id, resellerId: t.reseller_id, orgId: t.org_id });
    ctx.diff(toToken(t), toToken(after));
    return toToken(after);
  },
});

export const directoryProcedures = [
  createReseller, updateReseller, suspendReseller, resumeReseller, deleteReseller,
  createOrganization, updateOrganization, suspendOrganization, resumeOrganization, moveOrganization, deleteOrganization,
  addDomain, removeDomain, createUser, updateUser, setPassword, deleteUser,
  createGroup, updateGroup, deleteGroup, addGroupMember, removeGroupMember, createToken, revokeToken,
];
