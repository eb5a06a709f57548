import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { normalizeAddress } from '../core/names.js';
import { liveOrg } from '../directory/procedures.js';
import { getGroup } from '../directory/repo.js';
import { Id } from '../engine/http.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { charge, lockSubscription, type Subscription } from '../plans/limits.js';
import { claimAddress, releaseAddresses, type MailSettings } from './addresses.js';
import {
  activeOrgUser, EnableGroupMailBody, groupReaches, mailGroupIn, orgRecipient, RecipientId, SetSendersBody, toGroupMail, type MemberKind,
} from './groups-model.js';

/**
 * Distribution groups: mail-enabling a directory group (an address in the platform namespace, counted
 * against the plan's maxGroups), its mail members (mailboxes, contacts, mail-enabled groups of the same
 * organization; nesting without cycles), managers and listed senders.
 *
 * Deleting a directory group requires DELETE …/mail first: the directory's delete-group procedure refuses a
 * group that is still mail-enabled (state_conflict), so an address is never left pointing at a deleted
 * group and the plan's counter never drifts. Disabling mail removes everything mail-related that names the
 * group: its members, managers and senders, its memberships in other groups, its place on sender lists,
 * send-as/send-on-behalf grants on it and public-folder permissions it holds.
 */

/** Persisted procedure ids (never rename). */
export const GROUP_MAIL_PROCS = {
  enableGroupMail: 'mail.enable_group_mail',
  disableGroupMail: 'mail.disable_group_mail',
  addGroupMailMember: 'mail.add_group_mail_member',
  removeGroupMailMember: 'mail.remove_group_mail_member',
  addGroupManager: 'mail.add_group_manager',
  removeGroupManager: 'mail.remove_group_manager',
  setGroupSenders: 'mail.set_group_senders',
} as const;

const strict = { additionalProperties: false } as const;
const GROUP_REF = { orgId: Id('org'), groupId: Id('grp') };
const groupTarget = (org: any, groupId: string) => ({ type: 'group', id: groupId, resellerId: org.reseller_id, orgId: org.id });

/**
 * The organization (live, in scope), its subscription row locked FOR UPDATE and the group (in scope).
 * Every group mail edit takes the subscription lock: it serialises the edits of one organization, so the
 * cycle check of two concurrent nestings (A into B, B into A) cannot both pass on PostgreSQL.
 */
async function openGroup(ctx: ProcContext, orgId: string, groupId: string) {
  const org = await liveOrg(ctx, orgId);
  const sub = await lockSubscription(ctx, org.id);
  const group = await getGroup(ctx.tx, ctx.principal, org.id, groupId);
  return { org, sub, group };
}

/** What mail-enabling a group sets (the body of PUT …/groups/{groupId}/mail). */
export type GroupMailSpec = Static<typeof EnableGroupMailBody>;

/**
 * Mail-enable a group that is not mail-enabled yet, inside the caller's transaction (organization live,
 * subscription locked): counts it against maxGroups, claims its address and writes its mail_groups row
 * and billing event. Shared by PUT …/mail and the group import. Returns the new row.
 */
export async function insertMailGroup(ctx: ProcContext, org: any, sub: Subscription, groupId: string, spec: GroupMailSpec): Promise<any> {
  const address = normalizeAddress(spec.primaryAddress).address;
  await charge(ctx, sub, { groups: 1 });
  await claimAddress(ctx, { orgId: org.id, resellerId: org.reseller_id, address, recipientId: groupId, recipientKind: 'group', isPrimary: true });
  const row = {
    group_id: groupId, org_id: org.id, reseller_id: org.reseller_id, primary_address: address, hidden: spec.hiddenFromAddressBook ? 1 : 0,
    send_policy: spec.sendPolicy ?? 'organization', created_at: ctx.now, updated_at: ctx.now,
  };
  await ctx.tx.insertInto('mail_groups').values(row).execute();
  ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'distribution_group', objectId: groupId, event: 'created' });
  return row;
}

/**
 * Add a mail member to a mail-enabled group of `org` inside the caller's transaction (subscription locked,
 * see openGroup): a recipient of the same organization only, never closing a cycle. Adding a member twice
 * is a no-op. Shared by POST …/mail-members and the group import.
 */
export async function insertMailMember(ctx: ProcContext, org: any, groupId: string, memberId: string): Promise<{ id: string; kind: MemberKind }> {
  await mailGroupIn(ctx.tx, org.id, groupId);
  const member = await orgRecipient(ctx.tx, org.id, memberId);
  if (member.kind === 'group' && (await groupReaches(ctx.tx, org.id, member.id, groupId))) {
    throw Errors.groupCycle(`adding ${member.id} to ${groupId} would make a group contain itself`);
  }
  const exists = await ctx.tx.selectFrom('mail_group_members').select('member_id').where('group_id', '=', groupId).where('member_id', '=', member.id).executeTakeFirst();
  if (!exists) await ctx.tx.insertInto('mail_group_members').values({ group_id: groupId, org_id: org.id, member_id: member.id, member_kind: member.kind }).execute();
  return member;
}

/** Make an active user of `org` a manager of one of its mail-enabled groups (no-op when it is one). Shared with the group import. */
export async function insertGroupManager(ctx: ProcContext, org: any, groupId: string, userId: string): Promise<{ id: string }> {
  await mailGroupIn(ctx.tx, org.id, groupId);
  const user = await activeOrgUser(ctx.tx, org.id, userId);
  const exists = await ctx.tx.selectFrom('group_managers').select('user_id').where('group_id', '=', groupId).where('user_id', '=', user.id).executeTakeFirst();
  if (!exists) await ctx.tx.insertInto('group_managers').values({ group_id: groupId, org_id: org.id, user_id: user.id }).execute();
  return user;
}

export function groupMailProcedures(settings: MailSettings) {
  const enableGroupMail = defineProcedure({
    id: GROUP_MAIL_PROCS.enableGroupMail,
    input: Type.Object({ ...GROUP_REF, ...EnableGroupMailBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, sub, group } = await openGroup(ctx, input.orgId, input.groupId);
      const before = await ctx.tx.selectFrom('mail_groups').selectAll().where('group_id', '=', group.id).executeTakeFirst();
      let after: any;
      if (!before) {
        after = await insertMailGroup(ctx, org, sub, group.id, input);
      } else {
        const address = normalizeAddress(input.primaryAddress).address;
        const spec = { orgId: org.id, resellerId: org.reseller_id, address, recipientId: group.id, recipientKind: 'group' as const, isPrimary: true };
        if (address !== before.primary_address) {
          // the new address first (it may be refused), then the old one goes to quarantine
          await claimAddress(ctx, spec);
          await releaseAddresses(ctx, group.id, settings.addressQuarantineMs, [before.primary_address]);
        }
        const set = {
          primary_address: address,
          hidden: input.hiddenFromAddressBook === undefined ? before.hidden : input.hiddenFromAddressBook ? 1 : 0,
          send_policy: input.sendPolicy ?? before.send_policy,
          updated_at: ctx.now,
        };
        await ctx.tx.updateTable('mail_groups').set(set).where('group_id', '=', group.id).execute();
        after = { ...before, ...set };
      }
      ctx.target(groupTarget(org, group.id));
      ctx.diff(before ? toGroupMail(before) : null, toGroupMail(after));
      return toGroupMail(after);
    },
  });

  const disableGroupMail = defineProcedure({
    id: GROUP_MAIL_PROCS.disableGroupMail,
    input: Type.Object(GROUP_REF, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, sub, group } = await openGroup(ctx, input.orgId, input.groupId);
      const before = await ctx.tx.selectFrom('mail_groups').selectAll().where('group_id', '=', group.id).executeTakeFirst();
      if (!before) throw Errors.notFound(`group ${group.id} is not mail-enabled`);
      const released = await releaseAddresses(ctx, group.id, settings.addressQuarantineMs);
      const tx = ctx.tx;
      await tx.deleteFrom('mail_group_members').where((eb) => eb.or([eb('group_id', '=', group.id), eb('member_id', '=', group.id)])).execute();
      await tx.deleteFrom('group_senders').where((eb) => eb.or([eb('group_id', '=', group.id), eb('sender_id', '=', group.id)])).execute();
      await tx.deleteFrom('group_managers').where('group_id', '=', group.id).execute();
      await tx.deleteFrom('send_grants').where('object_id', '=', group.id).execute();
      await tx.deleteFrom('public_folder_permissions').where('principal_id', '=', group.id).execute();
      await tx.deleteFrom('mail_groups').where('group_id', '=', group.id).execute();
      await charge(ctx, sub, { groups: -1 });
      ctx.target(groupTarget(org, group.id));
      ctx.diff({ ...toGroupMail(before), addresses: released }, null);
      ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'distribution_group', objectId: group.id, event: 'deleted' });
      return toGroupMail(before);
    },
  });

  const addGroupMailMember = defineProcedure({
    id: GROUP_MAIL_PROCS.addGroupMailMember,
    input: Type.Object({ ...GROUP_REF, memberId: RecipientId }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, group } = await openGroup(ctx, input.orgId, input.groupId);
      const member = await insertMailMember(ctx, org, group.id, input.memberId);
      ctx.target(groupTarget(org, group.id));
      ctx.diff(null, { member: member.id, kind: member.kind });
      return { groupId: group.id, memberId: member.id, kind: member.kind };
    },
  });

  const removeGroupMailMember = defineProcedure({
    id: GROUP_MAIL_PROCS.removeGroupMailMember,
    input: Type.Object({ ...GROUP_REF, memberId: RecipientId }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, group } = await openGroup(ctx, input.orgId, input.groupId);
      const row = await ctx.tx.selectFrom('mail_group_members').select(['member_id', 'member_kind']).where('group_id', '=', group.id).where('member_id', '=', input.memberId).executeTakeFirst();
      if (!row) throw Errors.notFound(`${input.memberId} is not a mail member of this group`);
      await ctx.tx.deleteFrom('mail_group_members').where('group_id', '=', group.id).where('member_id', '=', input.memberId).execute();
      ctx.target(groupTarget(org, group.id));
      ctx.diff({ member: row.member_id, kind: row.member_kind }, null);
      return { groupId: group.id, memberId: row.member_id, kind: row.member_kind };
    },
  });

  const addGroupManager = defineProcedure({
    id: GROUP_MAIL_PROCS.addGroupManager,
    input: Type.Object({ ...GROUP_REF, userId: Id('usr') }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, group } = await openGroup(ctx, input.orgId, input.groupId);
      const user = await insertGroupManager(ctx, org, group.id, input.userId);
      ctx.target(groupTarget(org, group.id));
      ctx.diff(null, { manager: user.id });
      return { groupId: group.id, userId: user.id };
    },
  });

  const removeGroupManager = defineProcedure({
    id: GROUP_MAIL_PROCS.removeGroupManager,
    input: Type.Object({ ...GROUP_REF, userId: Id('usr') }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, group } = await openGroup(ctx, input.orgId, input.groupId);
      const r = await ctx.tx.deleteFrom('group_managers').where('group_id', '=', group.id).where('user_id', '=', input.userId).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) throw Errors.notFound(`user ${input.userId} is not a manager of this group`);
      ctx.target(groupTarget(org, group.id));
      ctx.diff({ manager: input.userId }, null);
      return { groupId: group.id, userId: input.userId };
    },
  });

  const setGroupSenders = defineProcedure({
    id: GROUP_MAIL_PROCS.setGroupSenders,
    input: Type.Object({ ...GROUP_REF, ...SetSendersBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, group } = await openGroup(ctx, input.orgId, input.groupId);
      await mailGroupIn(ctx.tx, org.id, group.id);
      const senders = [];
      for (const id of input.senders) senders.push(await orgRecipient(ctx.tx, org.id, id));
      const before = await ctx.tx.selectFrom('group_senders').select('sender_id').where('group_id', '=', group.id).orderBy('sender_id').execute();
      await ctx.tx.deleteFrom('group_senders').where('group_id', '=', group.id).execute();
      for (let i = 0; i < senders.length; i += 200) {
        await ctx.tx.insertInto('group_senders')
          .values(senders.slice(i, i + 200).map((s) => ({ group_id: group.id, org_id: org.id, sender_id: s.id, sender_kind: s.kind })))
          .execute();
      }
      const after = senders.map((s) => s.id).sort();
      ctx.target(groupTarget(org, group.id));
      ctx.diff({ senders: before.map((r) => r.sender_id) }, { senders: after });
      return { groupId: group.id, senders: after };
    },
  });

  return [enableGroupMail, disableGroupMail, addGroupMailMember, removeGroupMailMember, addGroupManager, removeGroupManager, setGroupSenders];
}
