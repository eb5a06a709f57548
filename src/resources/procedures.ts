import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { Id } from '../engine/http.js';
import { isForeignKeyViolation } from '../store/db.js';
import { SYSTEM } from '../core/tenancy.js';
import { storesQuery } from './repo.js';
import { conflictOn, liveOrg } from '../directory/procedures.js';
import { lockSubscription } from '../plans/limits.js';
import { syncAllocation } from './placement.js';
import { AllocateBody, toResources } from './model.js';
import { orgResources } from './repo.js';
import {
  checkMailRoot, CreateServerBody, CreateStoreBody, parseHostPort, parseLmtpEndpoint, toServer, toStore, UpdateServerBody, UpdateStoreBody,
} from './model.js';

/** Persisted procedure ids (never rename). */
export const RP = {
  createServer: 'resources.create_mail_server',
  updateServer: 'resources.update_mail_server',
  deleteServer: 'resources.delete_mail_server',
  createStore: 'resources.create_mailstore',
  updateStore: 'resources.update_mailstore',
  deleteStore: 'resources.delete_mailstore',
  allocateOrganization: 'resources.allocate_organization',
} as const;

const strict = { additionalProperties: false } as const;
const SERVER = { serverId: Id('srv') };
const STORE = { serverId: Id('srv'), storeId: Id('mst') };
const serverTarget = (id: string) => ({ type: 'mail_server', id, resellerId: null, orgId: null });
const storeTarget = (id: string) => ({ type: 'mailstore', id, resellerId: null, orgId: null });

/**
 * The row of a server or store, locked for the rest of the transaction on PostgreSQL (SQLite runs one
 * writer at a time). Every check below reads it after the lock, so a concurrent allocation cannot slip
 * between the check and the write.
 */
async function locked(ctx: ProcContext, table: 'mail_servers' | 'mailstores', id: string, serverId?: string): Promise<any> {
  let q = table === 'mailstores' ? storesQuery(ctx.tx, SYSTEM).where('id', '=', id) : ctx.tx.selectFrom(table).selectAll().where('id', '=', id);
  if (serverId !== undefined) q = q.where('server_id', '=', serverId);
  if (ctx.dialect === 'postgres') q = q.forUpdate();
  const r = await q.executeTakeFirst();
  if (!r) throw Errors.notFound(`${table === 'mail_servers' ? 'mail server' : 'mailstore'} ${id} not found`);
  return r;
}

const serverNameTaken = (e: unknown, name: string): never => conflictOn(e, { name: () => Errors.nameTaken(`a mail server named ${name} exists`) });
const storeNameTaken = (e: unknown, name: string): never => conflictOn(e, { name: () => Errors.nameTaken(`this server has a mailstore named ${name}`) });

// ---------------- mail servers ----------------

export const createServer = defineProcedure({
  id: RP.createServer,
  input: CreateServerBody,
  minRole: 'provider_admin',
  async run(ctx, input) {
    const row = {
      id: newId('mailServer'), name: input.name, lmtp_endpoint: parseLmtpEndpoint(input.lmtpEndpoint), imap_endpoint: parseHostPort(input.imapEndpoint, 'IMAP endpoint'),
      pop_endpoint: input.popEndpoint == null ? null : parseHostPort(input.popEndpoint, 'POP3 endpoint'), mail_root: checkMailRoot(input.mailRoot),
      state: input.state ?? 'active', created_at: ctx.now, updated_at: ctx.now,
    };
    await ctx.tx.insertInto('mail_servers').values(row).execute().catch((e) => serverNameTaken(e, row.name));
    ctx.target(serverTarget(row.id));
    ctx.diff(null, toServer(row));
    return toServer(row);
  },
});

export const updateServer = defineProcedure({
  id: RP.updateServer,
  input: Type.Object({ ...SERVER, ...UpdateServerBody.properties }, { ...strict, minProperties: 2 }),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const before = await locked(ctx, 'mail_servers', input.serverId);
    const set: Record<string, unknown> = { updated_at: ctx.now };
    if (input.name !== undefined) set.name = input.name;
    if (input.lmtpEndpoint !== undefined) set.lmtp_endpoint = parseLmtpEndpoint(input.lmtpEndpoint);
    if (input.imapEndpoint !== undefined) set.imap_endpoint = parseHostPort(input.imapEndpoint, 'IMAP endpoint');
    if (input.popEndpoint !== undefined) set.pop_endpoint = input.popEndpoint === null ? null : parseHostPort(input.popEndpoint, 'POP3 endpoint');
    if (input.mailRoot !== undefined && input.mailRoot !== before.mail_root) {
      // mailboxes live under the root: moving it is a data move, not an edit
      const used = await ctx.tx.selectFrom('mailstores').select('id').where('server_id', '=', before.id)
        .where((eb) => eb.or([eb('allocated_bytes', '>', 0), eb('mailbox_count', '>', 0)])).limit(1).executeTakeFirst();
      if (used) throw Errors.storeInUse(`mailstore ${used.id} on this server holds allocations; the mail root cannot change under it`);
      set.mail_root = checkMailRoot(input.mailRoot);
    }
    if (input.state !== undefined) set.state = input.state;
    await ctx.tx.updateTable('mail_servers').set(set).where('id', '=', before.id).execute().catch((e) => serverNameTaken(e, String(set.name)));
    const after = { ...before, ...set };
    ctx.target(serverTarget(before.id));
    ctx.diff(toServer(before), toServer(after));
    return toServer(after);
  },
});

export const deleteServer = defineProcedure({
  id: RP.deleteServer,
  input: Type.Object(SERVER, strict),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const before = await locked(ctx, 'mail_servers', input.serverId);
    const store = await ctx.tx.selectFrom('mailstores').select('id').where('server_id', '=', before.id).limit(1).executeTakeFirst();
    if (store) throw Errors.serverHasStores(`mail server ${before.name} has mailstores (e.g. ${store.id}); delete them first`);
    await ctx.tx.deleteFrom('mail_servers').where('id', '=', before.id).execute().catch((e) => {
      // a store created concurrently (PostgreSQL, committed after our check)
      if (isForeignKeyViolation(e)) throw Errors.serverHasStores(`mail server ${before.name} has mailstores`);
      throw e;
    });
    ctx.target(serverTarget(before.id));
    ctx.diff(toServer(before), null);
    return toServer(before);
  },
});

// ---------------- mailstores ----------------

export const createStore = defineProcedure({
  id: RP.createStore,
  input: Type.Object({ ...SERVER, ...CreateStoreBody.properties }, strict),
  minRole: 'provider_admin',
  async run(ctx, input) {
    // lock the server so a concurrent delete of it waits for this store (and then refuses)
    const server = await locked(ctx, 'mail_servers', input.serverId);
    const row = {
      id: newId('mailstore'), server_id: server.id, name: input.name, purpose: input.purpose ?? 'mailbox', sharing: input.sharing ?? 'shared',
      capacity_bytes: input.capacityBytes, max_mailboxes: input.maxMailboxes ?? null, state: input.state ?? 'active',
      allocated_bytes: 0, mailbox_count: 0, owner_org_id: null, created_at: ctx.now, updated_at: ctx.now,
    };
    await ctx.tx.insertInto('mailstores').values(row).execute().catch((e) => storeNameTaken(e, row.name));
    ctx.target(storeTarget(row.id));
    ctx.diff(null, toStore(row));
    return toStore(row);
  },
});

export const updateStore = defineProcedure({
  id: RP.updateStore,
  input: Type.Object({ ...STORE, ...UpdateStoreBody.properties }, { ...strict, minProperties: 3 }),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const before = await locked(ctx, 'mailstores', input.storeId, input.serverId);
    const set: Record<string, unknown> = { updated_at: ctx.now };
    if (input.name !== undefined) set.name = input.name;
    if (input.state !== undefined) set.state = input.state;
    if (input.capacityBytes !== undefined) {
      // BigInt: near 2^53 a double comparison is still exact, but keep the one rule of limits.ts
      if (BigInt(input.capacityBytes) < BigInt(before.allocated_bytes)) {
        throw Errors.capacityBelowAllocated(`mailstore ${before.name} has ${before.allocated_bytes} bytes allocated; capacity ${input.capacityBytes} would be below it`);
      }
      set.capacity_bytes = input.capacityBytes;
    }
    if (input.maxMailboxes !== undefined) {
      if (input.maxMailboxes !== null && input.maxMailboxes < Number(before.mailbox_count)) {
        throw Errors.capacityBelowAllocated(`mailstore ${before.name} holds ${before.mailbox_count} mailboxes; maxMailboxes ${input.maxMailboxes} would be below it`);
      }
      set.max_mailboxes = input.maxMailboxes;
    }
    const reshape = (input.purpose !== undefined && input.purpose !== before.purpose) || (input.sharing !== undefined && input.sharing !== before.sharing);
    if (reshape) {
      // what a store is for, and whether one or many organizations share it, is decided before anyone uses it
      const used = await ctx.tx.selectFrom('store_allocations').select('org_id').where('store_id', '=', before.id).limit(1).executeTakeFirst();
      if (used || Number(before.allocated_bytes) > 0 || Number(before.mailbox_count) > 0 || before.owner_org_id) {
        throw Errors.storeInUse(`mailstore ${before.name} holds allocations; its purpose and sharing cannot change`);
      }
      if (input.purpose !== undefined) set.purpose = input.purpose;
      if (input.sharing !== undefined) set.sharing = input.sharing;
    }
    await ctx.tx.updateTable('mailstores').set(set).where('id', '=', before.id).execute().catch((e) => storeNameTaken(e, String(set.name)));
    const after = { ...before, ...set };
    ctx.target(storeTarget(before.id));
    ctx.diff(toStore(before), toStore(after));
    return toStore(after);
  },
});

export const deleteStore = defineProcedure({
  id: RP.deleteStore,
  input: Type.Object(STORE, strict),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const before = await locked(ctx, 'mailstores', input.storeId, input.serverId);
    const used = await ctx.tx.selectFrom('store_allocations').select('org_id').where('store_id', '=', before.id).limit(1).executeTakeFirst();
    if (used || Number(before.allocated_bytes) > 0 || Number(before.mailbox_count) > 0 || before.owner_org_id) {
      throw Errors.storeInUse(`mailstore ${before.name} holds allocations${used ? ` (organization ${used.org_id})` : ''}; release them first`);
    }
    await ctx.tx.deleteFrom('mailstores').where('id', '=', before.id).execute().catch((e) => {
      // anything else that refers to the store (placed mailboxes, in later steps)
      if (isForeignKeyViolation(e)) throw Errors.storeInUse(`mailstore ${before.name} is in use`);
      throw e;
    });
    ctx.target(storeTarget(before.id));
    ctx.diff(toStore(before), null);
    return toStore(before);
  },
});

// ---------------- organization allocation ----------------

/**
 * The provider sizes an organization's mailbox allocation (HMC's AllocateOrganization /
 * ReallocateOrganizationMailNoMove): `mailboxBytes` is the new total, held from now on as the subscription's
 * storage override (what dynamic growth added is folded into it). Growing uses the plan's algorithm unless
 * `sources` say which stores take how many bytes; shrinking an organization that spans several stores needs
 * `sources` (shrink_needs_sources). It may not drop below what the organization is charged (STORAGE_LIMIT).
 */
export const allocateOrganization = defineProcedure({
  id: RP.allocateOrganization,
  input: Type.Object({ orgId: Id('org'), ...AllocateBody.properties }, strict),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const s = await lockSubscription(ctx, org.id);
    const was = toResources(s, await orgResources(ctx.tx, org.id));
    if (BigInt(s.sub.mailbox_bytes) > BigInt(input.mailboxBytes)) {
      throw Errors.storageLimit(`the organization's mailboxes are charged ${s.sub.mailbox_bytes} bytes; an allocation of ${input.mailboxBytes} would not hold them`);
    }
    const set = { storage_override: input.mailboxBytes, grown_bytes: 0, updated_at: ctx.now };
    await ctx.tx.updateTable('org_subscriptions').set(set).where('org_id', '=', org.id).execute();
    Object.assign(s.sub, set);
    await syncAllocation(ctx, s, 'mailbox', input.sources);
    const is = toResources(s, await orgResources(ctx.tx, org.id));
    ctx.target({ type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(was, is);
    ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'organization', objectId: org.id, event: 'updated', data: { allocation: true, mailboxBytes: input.mailboxBytes } });
    return is;
  },
});

export const resourceProcedures = [createServer, updateServer, deleteServer, createStore, updateStore, deleteStore, allocateOrganization];
