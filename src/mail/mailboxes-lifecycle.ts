import { Type } from '@sinclair/typebox';
import { Errors, isHmcError } from '../core/errors.js';
import { iso } from '../core/time.js';
import { liveOrg } from '../directory/procedures.js';
import { defineProcedure } from '../engine/procedure.js';
import { withSavepoint } from '../engine/tx-runner.js';
import { charge, lockSubscription } from '../plans/limits.js';
import { placeRecipient } from '../resources/placement.js';
import { PURGE_DATA_JOB, type PurgeDataPayload } from '../resources/purge.js';
import { claimAddress, releaseAddresses, type MailSettings } from './addresses.js';
import { placementOf, settleMailboxSettings } from './mailbox-settings.js';
import { deleteMailboxRows } from './directory-hooks.js';
import { MAILBOX_PROCS, mailboxEvent, MailboxRef, mailboxTarget } from './mailboxes-model.js';
import { lockMailbox, viewOf } from './mailboxes-repo.js';

/**
 * Deleting a mailbox disables first and purges later (DESIGN §3, Medusa's "destructive steps disable
 * first"): at once it stops counting and being charged, and its addresses go into quarantine, where no
 * other recipient can take them; its row and data stay for the retention period, restorable. A job of
 * request of procedure mail.purge_mailbox, scheduled by the delete for `purge_after`, removes it then.
 *
 * The purge is a request of its own (a one-item batch due at purge_after, `purgeRequestId` in the answer),
 * not a job of the delete request: the delete is done when the mailbox is disabled and released, and a
 * client following it must not wait for the retention period. The purge finds a restored mailbox (or one
 * deleted again, with a newer purge of its own) and does nothing.
 */

const strict = { additionalProperties: false } as const;


/**
 * The scheduled purge of one deleted mailbox (an item of the request the delete scheduled). It purges only
 * the deletion it was scheduled for: a mailbox restored since, or deleted again (with its own purge), is left.
 * Quarantine rows outlive the mailbox: its addresses stay unusable until they end.
 */
export const purgeMailbox = defineProcedure({
  id: MAILBOX_PROCS.purgeMailbox,
  input: Type.Object({ ...MailboxRef, purgeAfter: Type.Integer({ minimum: 0 }) }, strict),
  minRole: 'organization_admin',
  async run(ctx, input) {
    let q = ctx.tx.selectFrom('mailboxes').selectAll().where('id', '=', input.mailboxId).where('org_id', '=', input.orgId);
    if (ctx.dialect === 'postgres') q = q.forUpdate(); // a restore waits, or finds the row gone
    const m = await q.executeTakeFirst();
    if (!m || m.state !== 'deleted' || Number(m.purge_after) !== input.purgeAfter) return { purged: false };
    // its data goes too, wherever it may be (its store, and the one an unfinished move was copying from)
    for (const storeId of new Set([m.store_id, m.moving_from].filter((x): x is string => !!x))) {
      const payload: PurgeDataPayload = { orgId: m.org_id, mailboxId: m.id, storeId };
      ctx.enqueue({ kind: PURGE_DATA_JOB, payload, queueKey: m.org_id });
    }
    await deleteMailboxRows(ctx.tx, m.id);
    ctx.target(mailboxTarget(m));
    ctx.diff({ id: m.id, state: 'deleted', primaryAddress: m.primary_address }, null);
    return { purged: true };
  },
});

export function mailboxLifecycleProcedures(settings: MailSettings) {
  const deleteMailbox = defineProcedure({
    id: MAILBOX_PROCS.deleteMailbox,
    input: Type.Object(MailboxRef, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const org = await liveOrg(ctx, input.orgId);
      const before = await lockMailbox(ctx, org.id, input.mailboxId);
      const s = await lockSubscription(ctx, org.id);
      const was = await viewOf(ctx.tx, before);
      const released = await releaseAddresses(ctx, before.id, settings.addressQuarantineMs);
      // it leaves its store's counts and charges but stays there (its data does) until the purge
      await placeRecipient(ctx, s, 'mailbox', placementOf(before), null);
      await charge(ctx, s, { mailboxes: -1, mailboxBytes: -Number(before.charged_bytes) });
      const purgeAfter = ctx.now + settings.mailboxRetentionMs;
      const set = { state: 'deleted', deleted_at: ctx.now, purge_after: purgeAfter, charged_bytes: 0, updated_at: ctx.now };
      await ctx.tx.updateTable('mailboxes').set(set).where('id', '=', before.id).execute();
      const purgeRequestId = ctx.spawnBatch({
        procedure: MAILBOX_PROCS.purgeMailbox, items: [{ orgId: org.id, mailboxId: before.id, purgeAfter }], target: mailboxTarget(before), runAt: purgeAfter,
      });
      // the view keeps the addresses it had, so the answer says what was released
      const is = { ...was, state: 'deleted', chargedBytes: 0, deletedAt: iso(ctx.now), purgeAfter: iso(purgeAfter), updatedAt: iso(ctx.now)!, purgeRequestId };
      ctx.target(mailboxTarget(before));
      ctx.diff(was, { ...is, released });
      mailboxEvent(ctx, before, 'deleted', { released: released.length, purgeAfter });
      return is;
    },
  });

  /**
   * Bring a deleted mailbox back before it is purged: it counts and is charged again (under the current
   * plan's settings, which may refuse with PLAN_LIMIT or STORAGE_LIMIT) and takes its quarantined addresses
   * back. The primary address must be free for it (address_taken otherwise: once someone else holds an
   * address it never goes back to the old recipient); an alias someone else took meanwhile stays theirs.
   */
  const restoreMailbox = defineProcedure({
    id: MAILBOX_PROCS.restoreMailbox,
    input: Type.Object(MailboxRef, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const org = await liveOrg(ctx, input.orgId);
      const before = await lockMailbox(ctx, org.id, input.mailboxId, 'deleted');
      if (before.user_id) {
        const u = await ctx.tx.selectFrom('users').select(['state']).where('id', '=', before.user_id).executeTakeFirst();
        if (u?.state !== 'active') throw Errors.stateConflict(`the mailbox's user ${before.user_id} is being deleted`);
      }
      const s = await lockSubscription(ctx, org.id);
      const plan = await ctx.tx.selectFrom('mailbox_plans').selectAll().where('id', '=', before.mailbox_plan_id).executeTakeFirstOrThrow();
      const cols = await settleMailboxSettings(ctx, s, plan, JSON.parse(before.overrides), { was: placementOf(before), row: before, active: true });
      const claim = (address: string, isPrimary: boolean) =>
        claimAddress(ctx, { orgId: org.id, resellerId: org.reseller_id, address, recipientId: before.id, recipientKind: 'mailbox', isPrimary });
      await claim(before.primary_address, true);
      const held = await ctx.tx.selectFrom('address_quarantine').select('address').where('former_recipient_id', '=', before.id).orderBy('address').execute();
      const lost: string[] = [];
      for (const { address } of held) {
        // a savepoint per alias: on PostgreSQL a failed INSERT would otherwise abort the whole transaction
        try {
          await withSavepoint(ctx.tx, () => claim(address, false));
        } catch (e) {
          if (!isHmcError(e)) throw e; // address_taken, address_quarantined, domain_not_accepted: that alias is gone
          lost.push(address);
        }
      }
      const set = { ...cols, state: 'active', deleted_at: null, purge_after: null, updated_at: ctx.now };
      await ctx.tx.updateTable('mailboxes').set(set).where('id', '=', before.id).execute();
      const after = { ...before, ...set };
      const is = await viewOf(ctx.tx, after);
      ctx.target(mailboxTarget(before));
      ctx.diff(await viewOf(ctx.tx, before), { ...is, lostAliases: lost });
      mailboxEvent(ctx, after, 'created', { restored: true, chargedBytes: cols.charged_bytes, lostAliases: lost });
      return is;
    },
  });

  return [deleteMailbox, restoreMailbox, purgeMailbox];
}
