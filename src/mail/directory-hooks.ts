import { Errors } from '../core/errors.js';
import type { DirectoryHooks } from '../directory/hooks.js';
import type { ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';
import { releaseOrganization, unchargeOrganizationMailboxes } from '../resources/placement.js';
import { dropRecipientReferences, type MailSettings } from './addresses.js';

let quarantineMs = 30 * 86_400_000;

/**
 * The mail area's (and plans') part in the directory's lifecycles, registered by src/app.ts:
 * - moving an organization re-points these tables' reseller_id, so the new reseller sees the mail objects and
 *   the old one no longer does;
 * - a user with a live mailbox cannot be deleted (delete the mailbox first: it has its own retention);
 * - deleting an organization deletes its mailboxes at once and quarantines its addresses (deleteOrganizationMail);
 * - purging a user or an organization first removes the mail rows that refer to it.
 */
export const MAIL_TENANT_TABLES = ['accepted_domains', 'mailboxes', 'contacts', 'mail_groups', 'public_folders', 'addresses', 'org_subscriptions', 'org_available_plans', 'store_allocations'];

/** Delete a mailbox row and every mail row that refers to it (its retention is over or its owner is gone). */
export async function deleteMailboxRows(tx: Db, mailboxId: string): Promise<void> {
  await tx.deleteFrom('auto_replies').where('mailbox_id', '=', mailboxId).execute();
  await tx.deleteFrom('auto_reply_log').where('mailbox_id', '=', mailboxId).execute();
  await tx.deleteFrom('send_grants').where('object_id', '=', mailboxId).execute();
  await tx.deleteFrom('mailbox_access').where('mailbox_id', '=', mailboxId).execute();
  await dropRecipientReferences(tx, mailboxId);
  await tx.deleteFrom('addresses').where('recipient_id', '=', mailboxId).execute();
  await tx.deleteFrom('mailboxes').where('id', '=', mailboxId).execute();
}

async function refuseUserWithMailbox(tx: Db, userId: string): Promise<void> {
  const m = await tx.selectFrom('mailboxes').select(['id']).where('user_id', '=', userId).where('state', '=', 'active').executeTakeFirst();
  if (m) throw Errors.userHasMailbox(`the user has mailbox ${m.id}; delete the mailbox first`);
}

/**
 * Deleting an organization: refused while it has mailboxes unless forced (like users); when it goes, its
 * mailboxes are deleted at once (billed, uncharged) and every address it holds goes into quarantine, so no
 * mail reaches the organization from the moment the delete commits. The rows go with the purge job.
 */
async function deleteOrganizationMail(ctx: ProcContext, orgId: string, force: boolean): Promise<void> {
  const boxes = await ctx.tx.selectFrom('mailboxes').select(['id', 'reseller_id', 'org_id', 'charged_bytes']).where('org_id', '=', orgId).where('state', '=', 'active').execute();
  if (boxes.length > 0 && !force) throw Errors.organizationHasMailboxes(`the organization still has ${boxes.length} mailbox(es); delete them or pass force=true`);
  const addrs = await ctx.tx.selectFrom('addresses').select(['address', 'recipient_id']).where('org_id', '=', orgId).execute();
  for (let i = 0; i < addrs.length; i += 500) {
    const chunk = addrs.slice(i, i + 500);
    await ctx.tx.deleteFrom('address_quarantine').where('address', 'in', chunk.map((a) => a.address)).execute();
    await ctx.tx.insertInto('address_quarantine')
      .values(chunk.map((a) => ({ address: a.address, org_id: orgId, former_recipient_id: a.recipient_id, released_at: ctx.now, until: ctx.now + quarantineMs }))).execute();
  }
  await ctx.tx.deleteFrom('addresses').where('org_id', '=', orgId).execute();
  if (boxes.length === 0) return;
  await ctx.tx.updateTable('mailboxes').set({ state: 'deleted', deleted_at: ctx.now, purge_after: ctx.now, charged_bytes: 0, updated_at: ctx.now })
    .where('org_id', '=', orgId).where('state', '=', 'active').execute();
  await ctx.tx.updateTable('org_subscriptions').set({ mailbox_count: 0, mailbox_bytes: 0, updated_at: ctx.now }).where('org_id', '=', orgId).execute();
  await unchargeOrganizationMailboxes(ctx.tx, orgId, ctx.now);
  for (const b of boxes) ctx.event({ resellerId: b.reseller_id, orgId, objectType: 'mailbox', objectId: b.id, event: 'deleted', data: { organizationDeleted: true } });
}

async function purgeUserMailRows(tx: Db, userId: string): Promise<void> {
  await tx.deleteFrom('group_managers').where('user_id', '=', userId).execute();
  await tx.deleteFrom('send_grants').where('trustee_user_id', '=', userId).execute();
  await tx.deleteFrom('mailbox_access').where('trustee_user_id', '=', userId).execute();
  await tx.deleteFrom('public_folder_permissions').where('principal_id', '=', userId).execute();
  // a mailbox still in its retention period ends with its user (it was uncharged when it was deleted)
  for (const m of await tx.selectFrom('mailboxes').select('id').where('user_id', '=', userId).execute()) await deleteMailboxRows(tx, m.id);
}

/** The organization's rows of the mail area (its addresses were quarantined when the delete committed). */
async function purgeOrganizationMailRows(tx: Db, orgId: string, now: number): Promise<void> {
  await tx.deleteFrom('auto_reply_log').where('mailbox_id', 'in', tx.selectFrom('mailboxes').select('id').where('org_id', '=', orgId)).execute();
  for (const t of ['auto_replies', 'send_grants', 'mailbox_access', 'public_folder_permissions', 'group_senders', 'group_managers', 'mail_group_members', 'mail_groups', 'addresses', 'contacts', 'mailboxes']) {
    await tx.deleteFrom(t).where('org_id', '=', orgId).execute();
  }
  // folders and domain aliases refer to rows of their own table: children first
  for (;;) {
    const leaves = await tx.selectFrom('public_folders as f').select('f.id').where('f.org_id', '=', orgId)
      .where((eb) => eb.not(eb.exists(eb.selectFrom('public_folders as c').select('c.id').whereRef('c.parent_id', '=', 'f.id')))).execute();
    if (leaves.length === 0) break;
    await tx.deleteFrom('public_folders').where('id', 'in', leaves.map((l) => l.id)).execute();
  }
  await tx.deleteFrom('accepted_domains').where('org_id', '=', orgId).where('alias_of', 'is not', null).execute();
  await tx.deleteFrom('accepted_domains').where('org_id', '=', orgId).execute();
  await tx.deleteFrom('org_available_plans').where('org_id', '=', orgId).execute();
  // the organization's allocation goes back to the stores (dedicated ones become free) with its subscription
  await releaseOrganization(tx, orgId, now);
  await tx.deleteFrom('org_subscriptions').where('org_id', '=', orgId).execute();
}

/** Register the mail area's hooks (idempotent: the same functions are added once). */
export function registerMailDirectoryHooks(h: DirectoryHooks, settings: MailSettings): void {
  quarantineMs = settings.addressQuarantineMs;
  for (const t of MAIL_TENANT_TABLES) h.tenantTables.add(t);
  h.beforeDeleteOrganization.add(deleteOrganizationMail);
  h.beforeDeleteUser.add(refuseUserWithMailbox);
  h.purgeUser.add(purgeUserMailRows);
  h.purgeOrganization.add(purgeOrganizationMailRows);
}
