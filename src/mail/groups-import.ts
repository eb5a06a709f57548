import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { normalizeAddress } from '../core/names.js';
import { Address, CreateGroupBody, toGroup } from '../directory/model.js';
import { insertGroup, liveOrg } from '../directory/procedures.js';
import { Id } from '../engine/http.js';
import { defineProcedure } from '../engine/procedure.js';
import { lockSubscription } from '../plans/limits.js';
import type { Db } from '../store/db.js';
import { csvBool, csvList, GROUP_CSV_COLUMNS } from './csv.js';
import { SendPolicy, toGroupMail } from './groups-model.js';
import { insertGroupManager, insertMailGroup, insertMailMember } from './groups-procedures.js';

/**
 * Group import (issue 3 item 5): one CSV row = one whole distribution group. Each row is ONE item of the
 * procedure below, which in its one transaction creates the directory group, mail-enables it (address,
 * maxGroups charge), adds its mail members and managers — so a bad row (unknown member, another
 * organization's recipient, a name or address taken, a cycle, the plan full) leaves nothing behind, and the
 * batch goes on with the next row.
 *
 * Members and managers are resolved INSIDE the row's transaction, not by the route before the batch runs:
 * the batch runs its rows in file order, so a row may name a group created by an EARLIER row of the same
 * file (or one that exists already). A row naming a group that only a LATER row creates fails with
 * recipient_not_in_organization; put nested groups before the groups that contain them (or import the
 * failed rows again once the file is through).
 */

/** Persisted procedure id (never rename). */
export const GROUP_IMPORT_PROC = 'mail.import_group';

/**
 * Columns of a group import: exactly what the group export writes, so an export imports back. `members` and `managers`
 * are space-separated; members are mbx_/con_/grp_ ids, addresses of the organization's mailboxes and
 * groups, contacts' external addresses or groups' names; managers are user logins or usr_ ids.
 */
export const GROUP_IMPORT_COLUMNS = GROUP_CSV_COLUMNS;

const strict = { additionalProperties: false } as const;
/** A member or manager as a row names it: an id, an address, a login or a group name. */
const Ref = Type.String({ minLength: 1, maxLength: 254 });

export const ImportGroupInput = Type.Object(
  {
    orgId: Id('org'),
    name: CreateGroupBody.properties.name,
    displayName: CreateGroupBody.properties.displayName,
    description: CreateGroupBody.properties.description,
    primaryAddress: Type.Optional(Address),
    hiddenFromAddressBook: Type.Optional(Type.Boolean()),
    sendPolicy: Type.Optional(SendPolicy),
    members: Type.Optional(Type.Array(Ref, { maxItems: 1000, uniqueItems: true, description: 'mbx_/con_/grp_ ids, addresses or group names' })),
    managers: Type.Optional(Type.Array(Ref, { maxItems: 1000, uniqueItems: true, description: 'user logins or usr_ ids' })),
  },
  strict,
);

/** A CSV row as an import item (without orgId). Empty cells are left out; a bad value fails its row's validation. */
export function groupRowToItem(r: Record<string, string>): Record<string, unknown> {
  const item: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) {
    if (v === '') continue;
    if (k === 'address') item.primaryAddress = v;
    else if (k === 'hidden') item.hiddenFromAddressBook = csvBool(v);
    else if (k === 'members' || k === 'managers') item[k] = csvList(v);
    else item[k] = v;
  }
  return item;
}

const RECIPIENT_ID = /^(mbx|con|grp)_/;

/**
 * The recipient id a row names as a member, found the way the group-member import finds it: an id as it
 * is; an address held by a mailbox or group of the organization, else a contact's external address; a
 * word without `@` is a group name. Membership rules (same organization, mail-enabled, no cycle) are
 * checked afterwards by insertMailMember, on the id.
 */
async function memberId(tx: Db, orgId: string, ref: string): Promise<string> {
  if (RECIPIENT_ID.test(ref)) return ref;
  if (ref.includes('@')) {
    const address = normalizeAddress(ref).address;
    const held = await tx.selectFrom('addresses').select('recipient_id').where('address', '=', address).where('org_id', '=', orgId)
      .where('recipient_kind', 'in', ['mailbox', 'group']).executeTakeFirst();
    if (held) return held.recipient_id as string;
    const contact = await tx.selectFrom('contacts').select('id').where('org_id', '=', orgId).where('external_address', '=', address).executeTakeFirst();
    if (contact) return contact.id as string;
  } else {
    const group = await tx.selectFrom('groups').select('id').where('org_id', '=', orgId).where('name', '=', ref).executeTakeFirst();
    if (group) return group.id as string;
  }
  throw Errors.recipientNotInOrganization(`${ref} is not a recipient of this organization (a group must exist already or be created by an earlier row)`);
}

/** The user id a row names as a manager: a usr_ id as it is, else the user with that login in the organization. */
async function managerId(tx: Db, orgId: string, ref: string): Promise<string> {
  if (ref.startsWith('usr_')) return ref;
  const user = await tx.selectFrom('users').select('id').where('org_id', '=', orgId).where('login', '=', normalizeAddress(ref).address).executeTakeFirst();
  if (!user) throw Errors.recipientNotInOrganization(`${ref} is not a user of this organization`);
  return user.id as string;
}

export const importGroup = defineProcedure({
  id: GROUP_IMPORT_PROC,
  input: ImportGroupInput,
  minRole: 'organization_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const mailOnly = (['hiddenFromAddressBook', 'sendPolicy', 'members', 'managers'] as const).filter((k) => input[k] !== undefined);
    if (input.primaryAddress === undefined && mailOnly.length > 0) {
      throw Errors.invalidRequest(`${mailOnly.join(', ')} need an address: a group without one is not mail-enabled`);
    }
    // the subscription lock serialises the organization's group mail edits (see openGroup in groups-procedures.ts)
    const sub = input.primaryAddress !== undefined ? await lockSubscription(ctx, org.id) : null;
    const row = await insertGroup(ctx, org, { name: input.name, displayName: input.displayName, description: input.description });
    let mail = null;
    const members: { memberId: string; kind: string }[] = [];
    const managers: string[] = [];
    if (sub && input.primaryAddress !== undefined) {
      mail = toGroupMail(await insertMailGroup(ctx, org, sub, row.id, {
        primaryAddress: input.primaryAddress, hiddenFromAddressBook: input.hiddenFromAddressBook, sendPolicy: input.sendPolicy,
      }));
      // after the group exists, so a row naming itself is refused as the cycle it is
      for (const ref of input.members ?? []) {
        const m = await insertMailMember(ctx, org, row.id, await memberId(ctx.tx, org.id, ref));
        if (!members.some((x) => x.memberId === m.id)) members.push({ memberId: m.id, kind: m.kind });
      }
      for (const ref of input.managers ?? []) {
        const u = await insertGroupManager(ctx, org, row.id, await managerId(ctx.tx, org.id, ref));
        if (!managers.includes(u.id)) managers.push(u.id);
      }
    }
    const view = { ...toGroup(row), mail, members, managers };
    ctx.target({ type: 'group', id: row.id, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(null, view);
    return view;
  },
});
