import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { normalizeAddress } from '../core/names.js';
import { liveOrg } from '../directory/procedures.js';
import { defineProcedure } from '../engine/procedure.js';
import { addressesOf, claimAddress, releaseAddresses, setPrimaryAddress, type MailSettings } from './addresses.js';
import { AliasBody, MAILBOX_PROCS, MailboxRef, mailboxTarget, RenameBody } from './mailboxes-model.js';
import { lockMailbox, viewOf } from './mailboxes-repo.js';

/**
 * A mailbox's addresses: aliases added and removed, the primary address renamed. Every address goes
 * through the platform-wide namespace (claimAddress): uniqueness is the database's primary key, checked
 * in the claiming transaction, so of many concurrent claims of one address exactly one commits. A removed
 * address is quarantined: nobody else can claim it until the quarantine ends, the same mailbox can.
 */

const strict = { additionalProperties: false } as const;

export function mailboxAddressProcedures(settings: MailSettings) {
  const addMailboxAlias = defineProcedure({
    id: MAILBOX_PROCS.addMailboxAlias,
    input: Type.Object({ ...MailboxRef, ...AliasBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const org = await liveOrg(ctx, input.orgId);
      const mbx = await lockMailbox(ctx, org.id, input.mailboxId);
      const was = await viewOf(ctx.tx, mbx);
      if (mbx.forward_to === normalizeAddress(input.address).address) throw Errors.invalidRequest(`the mailbox forwards to ${mbx.forward_to}; it cannot also be its address`);
      const address = await claimAddress(ctx, { orgId: org.id, resellerId: org.reseller_id, address: input.address, recipientId: mbx.id, recipientKind: 'mailbox', isPrimary: false });
      await ctx.tx.updateTable('mailboxes').set({ updated_at: ctx.now }).where('id', '=', mbx.id).execute();
      const is = await viewOf(ctx.tx, { ...mbx, updated_at: ctx.now });
      ctx.target(mailboxTarget(mbx));
      ctx.diff({ aliases: was.aliases }, { aliases: is.aliases, added: address });
      return is;
    },
  });

  const removeMailboxAlias = defineProcedure({
    id: MAILBOX_PROCS.removeMailboxAlias,
    input: Type.Object({ ...MailboxRef, ...AliasBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const org = await liveOrg(ctx, input.orgId);
      const mbx = await lockMailbox(ctx, org.id, input.mailboxId);
      const address = normalizeAddress(input.address).address;
      if (address === mbx.primary_address) throw Errors.invalidRequest(`${address} is the primary address; rename the primary address instead`);
      const was = await viewOf(ctx.tx, mbx);
      if (!was.aliases.includes(address)) throw Errors.notFound(`${address} is not an alias of this mailbox`);
      await releaseAddresses(ctx, mbx.id, settings.addressQuarantineMs, [address]);
      await ctx.tx.updateTable('mailboxes').set({ updated_at: ctx.now }).where('id', '=', mbx.id).execute();
      const is = await viewOf(ctx.tx, { ...mbx, updated_at: ctx.now });
      ctx.target(mailboxTarget(mbx));
      ctx.diff({ aliases: was.aliases }, { aliases: is.aliases, removed: address });
      return is;
    },
  });

  /**
   * Give the mailbox a new primary address, keeping its data (mail is stored by mailbox id, not address).
   * The old primary address stays as an alias by default, so mail to it keeps arriving (what a renamed
   * person expects); with keepOldAsAlias=false it is released into quarantine like a removed alias.
   */
  const renameMailboxAddress = defineProcedure({
    id: MAILBOX_PROCS.renameMailboxAddress,
    input: Type.Object({ ...MailboxRef, ...RenameBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const org = await liveOrg(ctx, input.orgId);
      const mbx = await lockMailbox(ctx, org.id, input.mailboxId);
      const address = normalizeAddress(input.address).address;
      const was = await viewOf(ctx.tx, mbx);
      if (address === mbx.primary_address) return was;
      if (mbx.forward_to === address) throw Errors.invalidRequest(`the mailbox forwards to ${address}; change the forwarding first`);
      const held = (await addressesOf(ctx.tx, mbx.id)).map((a) => a.address);
      if (!held.includes(address)) {
        await claimAddress(ctx, { orgId: org.id, resellerId: org.reseller_id, address, recipientId: mbx.id, recipientKind: 'mailbox', isPrimary: false });
      }
      await setPrimaryAddress(ctx.tx, mbx.id, address);
      if (input.keepOldAsAlias === false) await releaseAddresses(ctx, mbx.id, settings.addressQuarantineMs, [mbx.primary_address]);
      await ctx.tx.updateTable('mailboxes').set({ primary_address: address, updated_at: ctx.now }).where('id', '=', mbx.id).execute();
      const is = await viewOf(ctx.tx, { ...mbx, primary_address: address, updated_at: ctx.now });
      ctx.target(mailboxTarget(mbx));
      ctx.diff(was, is);
      ctx.event({ resellerId: mbx.reseller_id, orgId: mbx.org_id, objectType: 'mailbox', objectId: mbx.id, event: 'updated', data: { primaryAddress: address, from: mbx.primary_address } });
      return is;
    },
  });

  return [addMailboxAlias, removeMailboxAlias, renameMailboxAddress];
}
