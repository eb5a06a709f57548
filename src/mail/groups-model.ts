import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { iso } from '../core/time.js';
import { Address } from '../directory/model.js';
import { Id } from '../engine/http.js';
import type { Db } from '../store/db.js';

/**
 * Distribution groups: the directory's groups made mail-enabled (tables mail_groups, mail_group_members,
 * group_managers, group_senders). Input schemas, views and the recipient rules shared by the group,
 * grant and public-folder procedures. Mail members, listed senders and permission holders are recipients
 * of the SAME organization only; a group takes part in mail only while it is mail-enabled.
 */

const strict = { additionalProperties: false } as const;
const Timestamp = Type.String({ format: 'date-time' });

/** Who may send to a distribution group (persisted names). */
export const SEND_POLICIES = ['organization', 'anyone', 'listed'] as const;
export type SendPolicy = (typeof SEND_POLICIES)[number];
export const SendPolicy = Type.Union(SEND_POLICIES.map((p) => Type.Literal(p)), {
  description: 'organization (default): members of the organization only; anyone; listed: only the group\'s listed senders',
});

/** A recipient of the organization by id: a mailbox, a contact or a (mail-enabled) group. */
export const RecipientId = Type.Union([Id('mbx'), Id('con'), Id('grp')], { description: 'mbx_, con_ or grp_ id of a recipient of the same organization' });

export const EnableGroupMailBody = Type.Object(
  {
    primaryAddress: Address,
    hiddenFromAddressBook: Type.Optional(Type.Boolean({ description: 'default false; absent keeps the current value' })),
    sendPolicy: Type.Optional(SendPolicy),
  },
  strict,
);
export const AddMailMemberBody = Type.Object({ memberId: RecipientId }, strict);
export const SetSendersBody = Type.Object(
  { senders: Type.Array(RecipientId, { maxItems: 1000, uniqueItems: true, description: 'the complete list; replaces the current one' }) },
  strict,
);

export const GroupMailView = Type.Object({
  groupId: Type.String(), orgId: Type.String(), primaryAddress: Type.String(), hiddenFromAddressBook: Type.Boolean(), sendPolicy: Type.String(),
  createdAt: Timestamp, updatedAt: Timestamp,
});
export type GroupMailView = Static<typeof GroupMailView>;
export const RecipientView = Type.Object({
  memberId: Type.String(), kind: Type.String(), displayName: Type.String(), address: Type.Union([Type.String(), Type.Null()]),
});
export const ManagerView = Type.Object({ userId: Type.String(), login: Type.String(), displayName: Type.String() });
export const MailMembershipView = Type.Object({ groupId: Type.String(), memberId: Type.String(), kind: Type.String() });
export const ManagerChangeView = Type.Object({ groupId: Type.String(), userId: Type.String() });
export const SendersView = Type.Object({ groupId: Type.String(), senders: Type.Array(Type.String()) });

/* eslint-disable @typescript-eslint/no-explicit-any */
export const toGroupMail = (r: any): GroupMailView => ({
  groupId: r.group_id, orgId: r.org_id, primaryAddress: r.primary_address, hiddenFromAddressBook: Number(r.hidden) === 1, sendPolicy: r.send_policy,
  createdAt: iso(r.created_at)!, updatedAt: iso(r.updated_at)!,
});

export type MemberKind = 'mailbox' | 'contact' | 'group';
/** The kind of a recipient id, by its prefix (the schema admits only these three). */
export const recipientKindOf = (id: string): MemberKind => (id.startsWith('mbx_') ? 'mailbox' : id.startsWith('con_') ? 'contact' : 'group');

/**
 * A recipient that may be a member or a listed sender of a group in `orgId`: an active mailbox, a contact
 * or a mail-enabled group of that organization. Anything else, including another organization's recipient
 * and an id that exists nowhere, is recipient_not_in_organization (no hint whether it exists elsewhere).
 */
export async function orgRecipient(tx: Db, orgId: string, id: string): Promise<{ id: string; kind: MemberKind }> {
  const kind = recipientKindOf(id);
  const notHere = () => Errors.recipientNotInOrganization(`${id} is not a recipient of this organization`);
  if (kind === 'mailbox') {
    const m = await tx.selectFrom('mailboxes').select(['org_id', 'state']).where('id', '=', id).executeTakeFirst();
    if (!m || m.org_id !== orgId) throw notHere();
    if (m.state !== 'active') throw Errors.stateConflict(`mailbox ${id} is deleted`);
  } else if (kind === 'contact') {
    const c = await tx.selectFrom('contacts').select(['org_id']).where('id', '=', id).executeTakeFirst();
    if (!c || c.org_id !== orgId) throw notHere();
  } else {
    await mailGroupIn(tx, orgId, id, notHere);
  }
  return { id, kind };
}

/** The mail_groups row of a group of `orgId`; state_conflict when the group exists but is not mail-enabled. */
export async function mailGroupIn(tx: Db, orgId: string, groupId: string, missing: () => Error = () => Errors.notFound(`group ${groupId} not found`)): Promise<any> {
  const g = await tx.selectFrom('groups').select(['id', 'org_id']).where('id', '=', groupId).executeTakeFirst();
  if (!g || g.org_id !== orgId) throw missing();
  const mg = await tx.selectFrom('mail_groups').selectAll().where('group_id', '=', groupId).executeTakeFirst();
  if (!mg) throw Errors.groupNotMailEnabled(`group ${groupId} is not mail-enabled; enable mail on it first (PUT …/groups/${groupId}/mail)`);
  return mg;
}

/** An active user of `orgId` (grant trustees, managers, folder permissions); else recipient_not_in_organization. */
export async function activeOrgUser(tx: Db, orgId: string, userId: string): Promise<any> {
  const u = await tx.selectFrom('users').select(['id', 'org_id', 'state', 'login', 'display_name']).where('id', '=', userId).executeTakeFirst();
  if (!u || u.org_id !== orgId) throw Errors.recipientNotInOrganization(`${userId} is not a user of this organization`);
  if (u.state !== 'active') throw Errors.stateConflict(`user ${userId} is being deleted`);
  return u;
}

/**
 * A recipient list (members or senders) with display names and addresses, one page keyed by recipient id.
 * Rows carry `id` (the recipient id) for the pager.
 */
export function recipientListQuery(db: Db, table: 'mail_group_members' | 'group_senders', groupId: string): any {
  const idCol = table === 'mail_group_members' ? 'r.member_id' : 'r.sender_id';
  const kindCol = table === 'mail_group_members' ? 'r.member_kind' : 'r.sender_kind';
  return db
    .selectFrom(`${table} as r`)
    .leftJoin('mailboxes as mb', 'mb.id', idCol)
    .leftJoin('contacts as c', 'c.id', idCol)
    .leftJoin('groups as g', 'g.id', idCol)
    .leftJoin('mail_groups as mg', 'mg.group_id', idCol)
    .select([
      `${idCol} as id`, `${kindCol} as kind`,
      'mb.display_name as mb_name', 'mb.primary_address as mb_address', 'c.display_name as c_name', 'c.external_address as c_address',
      'g.display_name as g_name', 'mg.primary_address as g_address',
    ])
    .where('r.group_id', '=', groupId);
}

export const toRecipient = (r: any) => ({
  memberId: r.id,
  kind: r.kind,
  displayName: r.mb_name ?? r.c_name ?? r.g_name ?? r.id,
  address: r.mb_address ?? r.c_address ?? r.g_address ?? null,
});

/**
 * True when `target` can be reached from group `from` over group-kind memberships (BFS, one query per
 * level). Adding group M to group G closes a cycle exactly when G is reachable from M.
 */
export async function groupReaches(tx: Db, orgId: string, from: string, target: string): Promise<boolean> {
  if (from === target) return true;
  const seen = new Set([from]);
  let frontier = [from];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (let i = 0; i < frontier.length; i += 500) {
      const rows = await tx.selectFrom('mail_group_members').select('member_id').where('org_id', '=', orgId).where('member_kind', '=', 'group')
        .where('group_id', 'in', frontier.slice(i, i + 500)).execute();
      for (const r of rows) {
        if (r.member_id === target) return true;
        if (!seen.has(r.member_id)) {
          seen.add(r.member_id);
          next.push(r.member_id);
        }
      }
    }
    frontier = next;
  }
  return false;
}
