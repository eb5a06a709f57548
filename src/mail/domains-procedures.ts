import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { normalizeDomain } from '../core/names.js';
import { conflictOn, insertDomain, liveOrg } from '../directory/procedures.js';
import { getDomain } from '../directory/repo.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { Id } from '../engine/http.js';
import { isForeignKeyViolation, type Db } from '../store/db.js';
import { charge, lockSubscription } from '../plans/limits.js';
import { AcceptDomainBody, SharedDomainBody, SharedSubdomainBody, toAcceptedDomain, toSharedDomain } from './domains-model.js';
import { getShared } from './domains-repo.js';

/** Persisted procedure ids of accepted and shared domains (never rename). */
export const DOMAIN_PROCS = {
  acceptDomain: 'mail.accept_domain',
  removeAcceptedDomain: 'mail.remove_accepted_domain',
  acceptSharedSubdomain: 'mail.accept_shared_subdomain',
  createSharedDomain: 'mail.create_shared_domain',
  deleteSharedDomain: 'mail.delete_shared_domain',
} as const;

const strict = { additionalProperties: false } as const;
const DomainRef = { orgId: Id('org'), domainId: Id('dom') };

/* eslint-disable @typescript-eslint/no-explicit-any */
const target = (r: any) => ({ type: 'accepted_domain', id: r.domain_id, resellerId: r.reseller_id, orgId: r.org_id });
const event = (ctx: ProcContext, r: any, e: 'created' | 'updated' | 'deleted', data?: unknown) =>
  ctx.event({ resellerId: r.reseller_id, orgId: r.org_id, objectType: 'accepted_domain', objectId: r.domain_id, event: e, data: { name: r.name, ...(data ?? {}) } });

/** Refuse while the domain holds addresses or other domains alias it (domain_in_use). */
async function assertUnused(tx: Db, domainId: string, name: string, doing: string): Promise<void> {
  const addr = await tx.selectFrom('addresses').select('address').where('domain_id', '=', domainId).limit(1).executeTakeFirst();
  if (addr) throw Errors.domainInUse(`${name} still has addresses (e.g. ${addr.address}); remove them before ${doing}`);
  const alias = await tx.selectFrom('accepted_domains').select('name').where('alias_of', '=', domainId).limit(1).executeTakeFirst();
  if (alias) throw Errors.domainInUse(`${alias.name} is an alias of ${name}; remove it before ${doing}`);
}

/** The shared domain `name` is, or is under, if any. Subdomains of a shared domain come only through its own procedure. */
async function sharedParentOf(tx: Db, name: string): Promise<any> {
  const labels = name.split('.');
  const suffixes = labels.map((_, i) => labels.slice(i).join('.'));
  return tx.selectFrom('shared_domains').selectAll().where('name', 'in', suffixes).executeTakeFirst();
}

/**
 * Mail-enable a domain of the organization, or change its type or alias. Counts toward the organization
 * plan's maxDomains. A domain becomes an alias only while it holds no addresses and nothing aliases it,
 * so mail to x@alias always has exactly one place to go (x@primary); an alias of an alias is refused.
 */
export const acceptDomain = defineProcedure({
  id: DOMAIN_PROCS.acceptDomain,
  input: Type.Object({ ...DomainRef, ...AcceptDomainBody.properties }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const d = await getDomain(ctx.tx, ctx.principal, org.id, input.domainId);
    // the subscription row serialises every domain change of the organization (and its domain count)
    const s = await lockSubscription(ctx, org.id);
    // FOR UPDATE: an address claim that reads this row FOR SHARE waits, so it never lands on a domain turning alias
    let q = ctx.tx.selectFrom('accepted_domains').selectAll().where('domain_id', '=', d.id);
    if (ctx.dialect === 'postgres') q = q.forUpdate();
    const before = await q.executeTakeFirst();
    if (!before) {
      const shared = await sharedParentOf(ctx.tx, d.name);
      if (shared) throw Errors.domainTaken(`${d.name} is under the shared domain ${shared.name}; use POST /organizations/{orgId}/accepted-domains/shared`);
    }
    const type = input.type ?? before?.type ?? 'authoritative';
    const aliasOf: string | null = input.aliasOf === undefined ? (before?.alias_of ?? null) : input.aliasOf;
    if (aliasOf !== null) {
      if (aliasOf === d.id) throw Errors.invalidRequest('a domain cannot be an alias of itself');
      const primary = await ctx.tx.selectFrom('accepted_domains').selectAll().where('domain_id', '=', aliasOf).executeTakeFirst();
      if (!primary || primary.org_id !== org.id) throw Errors.domainNotAccepted(`${aliasOf} is not an accepted domain of this organization`);
      if (primary.alias_of !== null) throw Errors.domainIsAlias(`${primary.name} is itself an alias; alias the domain it aliases (${primary.alias_of})`);
      if (before && before.alias_of === null) await assertUnused(ctx.tx, d.id, d.name, 'making it an alias');
    }
    const row = {
      domain_id: d.id, org_id: org.id, reseller_id: org.reseller_id, name: d.name, type, alias_of: aliasOf,
      shared_domain_id: before?.shared_domain_id ?? null, created_at: before?.created_at ?? ctx.now, updated_at: ctx.now,
    };
    if (before) {
      await ctx.tx.updateTable('accepted_domains').set({ type, alias_of: aliasOf, updated_at: ctx.now }).where('domain_id', '=', d.id).execute();
      if (before.type !== type || before.alias_of !== aliasOf) event(ctx, row, 'updated', { type, aliasOf });
    } else {
      await charge(ctx, s, { domains: 1 });
      await ctx.tx.insertInto('accepted_domains').values(row).execute()
        .catch((e) => conflictOn(e, { name: () => Errors.domainTaken(`${d.name} is already an accepted domain`) }));
      event(ctx, row, 'created', { type, aliasOf });
    }
    ctx.target(target(row));
    ctx.diff(before ? toAcceptedDomain(before) : null, toAcceptedDomain(row));
    return toAcceptedDomain(row);
  },
});

export const removeAcceptedDomain = defineProcedure({
  id: DOMAIN_PROCS.removeAcceptedDomain,
  input: Type.Object(DomainRef, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const s = await lockSubscription(ctx, org.id);
    const before = await ctx.tx.selectFrom('accepted_domains').selectAll().where('domain_id', '=', input.domainId).where('org_id', '=', org.id).executeTakeFirst();
    if (!before) throw Errors.notFound(`domain ${input.domainId} is not an accepted domain of this organization`);
    await assertUnused(ctx.tx, before.domain_id, before.name, 'removing it');
    // an address claimed by a concurrent request since the check above still holds the row (foreign key)
    await ctx.tx.deleteFrom('accepted_domains').where('domain_id', '=', before.domain_id).execute().catch((e) => {
      if (isForeignKeyViolation(e)) throw Errors.domainInUse(`${before.name} is in use`);
      throw e;
    });
    await charge(ctx, s, { domains: -1 });
    event(ctx, before, 'deleted');
    ctx.target(target(before));
    ctx.diff(toAcceptedDomain(before), null);
    return toAcceptedDomain(before);
  },
});

/**
 * Give the organization `label.<shared domain>`: a directory domain of its own (through the directory) made
 * an authoritative accepted domain, in one transaction. Counts toward maxDomains like any accepted domain.
 */
export const acceptSharedSubdomain = defineProcedure({
  id: DOMAIN_PROCS.acceptSharedSubdomain,
  input: Type.Object({ orgId: Id('org'), ...SharedSubdomainBody.properties }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const s = await lockSubscription(ctx, org.id);
    // any organization may take a subdomain of a provider's shared domain: not a scope check, only existence
    const shared = await ctx.tx.selectFrom('shared_domains').selectAll().where('id', '=', input.sharedDomainId).executeTakeFirst();
    if (!shared) throw Errors.notFound(`shared domain ${input.sharedDomainId} not found`);
    if (input.label.includes('.')) throw Errors.invalidDomain('label must be a single domain label (no dots)');
    const name = normalizeDomain(`${input.label}.${shared.name}`);
    if (name.split('.').length !== shared.name.split('.').length + 1) throw Errors.invalidDomain('label must be a single domain label');
    await charge(ctx, s, { domains: 1 });
    const d = await insertDomain(ctx, org, name);
    const row = {
      domain_id: d.id, org_id: org.id, reseller_id: org.reseller_id, name: d.name, type: 'authoritative', alias_of: null,
      shared_domain_id: shared.id, created_at: ctx.now, updated_at: ctx.now,
    };
    await ctx.tx.insertInto('accepted_domains').values(row).execute()
      .catch((e) => conflictOn(e, { name: () => Errors.domainTaken(`${name} is already an accepted domain`) }));
    event(ctx, row, 'created', { type: row.type, sharedDomainId: shared.id });
    ctx.target(target(row));
    ctx.diff(null, toAcceptedDomain(row));
    return toAcceptedDomain(row);
  },
});

export const createSharedDomain = defineProcedure({
  id: DOMAIN_PROCS.createSharedDomain,
  input: SharedDomainBody,
  minRole: 'provider_admin',
  async run(ctx, input) {
    const name = normalizeDomain(input.name);
    // an organization's own accepted domain (or one under it) cannot become the provider's shared domain
    const taken = await ctx.tx.selectFrom('accepted_domains').select('name')
      .where((eb) => eb.or([eb('name', '=', name), eb('name', 'like', `%.${name}`)])).limit(1).executeTakeFirst();
    if (taken) throw Errors.domainTaken(`${taken.name} is an accepted domain of an organization`);
    const parent = await sharedParentOf(ctx.tx, name);
    if (parent) throw Errors.domainTaken(`${name} is under the shared domain ${parent.name}`);
    const row = { id: newId('sharedDomain'), name, created_at: ctx.now };
    await ctx.tx.insertInto('shared_domains').values(row).execute()
      .catch((e) => conflictOn(e, { name: () => Errors.domainTaken(`${name} is already a shared domain`), shared_domains: () => Errors.domainTaken(`${name} is already a shared domain`) }));
    ctx.target({ type: 'shared_domain', id: row.id, resellerId: null, orgId: null });
    ctx.diff(null, toSharedDomain(row));
    return toSharedDomain(row);
  },
});

export const deleteSharedDomain = defineProcedure({
  id: DOMAIN_PROCS.deleteSharedDomain,
  input: Type.Object({ sharedDomainId: Id('sdm') }, strict),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const before = await getShared(ctx.tx, ctx.principal, input.sharedDomainId);
    const used = await ctx.tx.selectFrom('accepted_domains').select('name').where('shared_domain_id', '=', before.id).limit(1).executeTakeFirst();
    if (used) throw Errors.domainInUse(`${used.name} is an organization's subdomain of ${before.name}; remove it first`);
    await ctx.tx.deleteFrom('shared_domains').where('id', '=', before.id).execute().catch((e) => {
      if (isForeignKeyViolation(e)) throw Errors.domainInUse(`${before.name} is in use`);
      throw e;
    });
    ctx.target({ type: 'shared_domain', id: before.id, resellerId: null, orgId: null });
    ctx.diff(toSharedDomain(before), null);
    return toSharedDomain(before);
  },
});

export const domainProcedures = [acceptDomain, removeAcceptedDomain, acceptSharedSubdomain, createSharedDomain, deleteSharedDomain];
