import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { normalizeAddress } from '../core/names.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import { iso } from '../core/time.js';
import { Address, DisplayName } from '../directory/model.js';
import { conflictOn, liveOrg } from '../directory/procedures.js';
import { inScope } from '../directory/repo.js';
import { Id } from '../engine/http.js';
import { dropRecipientReferences } from './addresses.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';
import { page, type Page, type PageParams } from '../store/page.js';
import { charge, lockSubscription } from '../plans/limits.js';
import { prefix } from './mailboxes-repo.js';

/**
 * Mail contacts: external addresses that appear in the organization's address book (and can be members
 * of its distribution groups). A contact is not a recipient of the platform's namespace: its address is
 * somewhere else, so it must not be on one of the organization's own accepted domains, and it is unique
 * per organization only. Counted against the organization plan's maxContacts.
 */

const strict = { additionalProperties: false } as const;
const Timestamp = Type.String({ format: 'date-time' });

/** Persisted procedure ids of contacts (never rename). */
export const CONTACT_PROCS = {
  createContact: 'mail.create_contact',
  updateContact: 'mail.update_contact',
  deleteContact: 'mail.delete_contact',
} as const;

export const CreateContactBody = Type.Object(
  { displayName: DisplayName, externalAddress: Address, hiddenFromAddressBook: Type.Optional(Type.Boolean()) },
  strict,
);
export const UpdateContactBody = Type.Object(
  { displayName: Type.Optional(DisplayName), externalAddress: Type.Optional(Address), hiddenFromAddressBook: Type.Optional(Type.Boolean()) },
  { ...strict, minProperties: 1 },
);
export const ContactView = Type.Object({
  id: Type.String(), orgId: Type.String(), displayName: Type.String(), externalAddress: Type.String(), hiddenFromAddressBook: Type.Boolean(),
  createdAt: Timestamp, updatedAt: Timestamp,
});
export type ContactView = Static<typeof ContactView>;

/* eslint-disable @typescript-eslint/no-explicit-any */
export const toContact = (r: any): ContactView => ({
  id: r.id, orgId: r.org_id, displayName: r.display_name, externalAddress: r.external_address, hiddenFromAddressBook: Number(r.hidden) === 1,
  createdAt: iso(r.created_at)!, updatedAt: iso(r.updated_at)!,
});

// ---- queries (a user role sees no contacts through the API; the address book is another issue's) ----
export function contactsQuery(db: Db, p: Principal) {
  const q = inScope(db.selectFrom('contacts').selectAll(), p);
  return roleLevel(p.role) === 'user' ? q.where('id', '=', '') : q;
}

export async function getContact(db: Db, p: Principal, orgId: string, id: string): Promise<any> {
  const r = await contactsQuery(db, p).where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`contact ${id} not found`);
  return r;
}

export function listContacts(db: Db, p: Principal, orgId: string, f: PageParams & { q?: string }): Promise<Page<any>> {
  let q = contactsQuery(db, p).where('org_id', '=', orgId);
  if (f.q) q = prefix(db, q, 'external_address', f.q.toLowerCase());
  return page(q, 'id', f);
}

// ---- procedures ----
const target = (r: any) => ({ type: 'contact', id: r.id, resellerId: r.reseller_id, orgId: r.org_id });
const taken = (a: string) => () => Errors.addressTaken(`the organization already has a contact for ${a}`);

/** The normalised external address, refused when it is on one of the organization's own accepted domains. */
async function externalAddress(tx: Db, orgId: string, input: string): Promise<string> {
  const a = normalizeAddress(input);
  const own = await tx.selectFrom('accepted_domains').select('name').where('name', '=', a.domain).where('org_id', '=', orgId).executeTakeFirst();
  if (own) throw Errors.invalidAddress(`${a.address} is on ${a.domain}, an accepted domain of this organization; a contact is for an address elsewhere`);
  return a.address;
}

export const createContact = defineProcedure({
  id: CONTACT_PROCS.createContact,
  input: Type.Object({ orgId: Id('org'), ...CreateContactBody.properties }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const address = await externalAddress(ctx.tx, org.id, input.externalAddress);
    const s = await lockSubscription(ctx, org.id);
    await charge(ctx, s, { contacts: 1 });
    const row = {
      id: newId('contact'), org_id: org.id, reseller_id: org.reseller_id, display_name: input.displayName, external_address: address,
      hidden: input.hiddenFromAddressBook ? 1 : 0, created_at: ctx.now, updated_at: ctx.now,
    };
    await ctx.tx.insertInto('contacts').values(row).execute().catch((e) => conflictOn(e, { external_address: taken(address), contacts_org: taken(address), contacts: taken(address) }));
    ctx.target(target(row));
    ctx.diff(null, toContact(row));
    contactEvent(ctx, row, 'created');
    return toContact(row);
  },
});

export const updateContact = defineProcedure({
  id: CONTACT_PROCS.updateContact,
  input: Type.Object({ orgId: Id('org'), contactId: Id('con'), ...UpdateContactBody.properties }, { ...strict, minProperties: 3 }),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const before = await getContact(ctx.tx, ctx.principal, org.id, input.contactId);
    const set: Record<string, unknown> = { updated_at: ctx.now };
    if (input.displayName !== undefined) set.display_name = input.displayName;
    if (input.hiddenFromAddressBook !== undefined) set.hidden = input.hiddenFromAddressBook ? 1 : 0;
    if (input.externalAddress !== undefined) set.external_address = await externalAddress(ctx.tx, org.id, input.externalAddress);
    await ctx.tx.updateTable('contacts').set(set).where('id', '=', before.id).execute()
      .catch((e) => conflictOn(e, { external_address: taken(String(set.external_address)), contacts_org: taken(String(set.external_address)), contacts: taken(String(set.external_address)) }));
    const after = { ...before, ...set };
    ctx.target(target(before));
    ctx.diff(toContact(before), toContact(after));
    return toContact(after);
  },
});

export const deleteContact = defineProcedure({
  id: CONTACT_PROCS.deleteContact,
  input: Type.Object({ orgId: Id('org'), contactId: Id('con') }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const before = await getContact(ctx.tx, ctx.principal, org.id, input.contactId);
    const s = await lockSubscription(ctx, org.id);
    // group memberships and listed senders name recipients by id without a foreign key: they go with it
    await dropRecipientReferences(ctx.tx, before.id);
    await ctx.tx.deleteFrom('contacts').where('id', '=', before.id).execute();
    await charge(ctx, s, { contacts: -1 });
    ctx.target(target(before));
    ctx.diff(toContact(before), null);
    contactEvent(ctx, before, 'deleted');
    return toContact(before);
  },
});

const contactEvent = (ctx: ProcContext, r: any, event: 'created' | 'deleted') =>
  ctx.event({ resellerId: r.reseller_id, orgId: r.org_id, objectType: 'contact', objectId: r.id, event, data: { externalAddress: r.external_address } });

export const contactProcedures = [createContact, updateContact, deleteContact];
