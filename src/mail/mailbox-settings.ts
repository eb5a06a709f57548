import { Errors } from '../core/errors.js';
import { normalizeAddress } from '../core/names.js';
import type { ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';
import { placeRecipient, type Placement } from '../resources/placement.js';
import { requestDataMove } from '../resources/moves.js';
import { charge, checkCounts, effectiveMailboxSettings, mailboxCharge, parseFeatures, PROTOCOLS, type MailboxOverrides, type Protocol, type Subscription } from '../plans/limits.js';

/**
 * A mailbox's effective settings and what the organization is charged for it, computed in one place for
 * create, update, plan change, restore and plan re-apply, so every path applies the same rules:
 *   - quotas = plan values with the mailbox's overrides on top, in Exchange order (QUOTA_ORDER);
 *   - prohibitSendReceiveQuota ≤ the organization plan's maxMailboxBytes, when it has one (PLAN_LIMIT);
 *   - protocols = the mailbox's protocols ∩ those the organization plan allows;
 *   - the organization is charged prohibitSendReceiveQuota while the mailbox is active (0 once deleted),
 *     on the mailstore the Resource Manager places it on (resources/placement.ts), and `charge` moves its
 *     counters by the difference from what was charged before.
 */

/** Columns of `mailboxes` the settings decide. */
export interface SettingsColumns {
  mailbox_plan_id: string;
  plan_version: number;
  overrides: string;
  issue_warning_quota: number;
  prohibit_send_quota: number;
  prohibit_send_receive_quota: number;
  max_send_size: number;
  max_receive_size: number;
  recipient_limit: number;
  max_messages_per_hour: number;
  max_recipients_per_day: number;
  protocols: string;
  external_forwarding: number;
  charged_bytes: number;
  /** The mailstore it is on (where its data is; kept while deleted). */
  store_id: string | null;
  /** Set when the settings moved the mailbox to another store: where its data is copied from. */
  moving_from?: string | null;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/**
 * Compute the settings of a mailbox on `plan` with `overrides`, check them against the organization plan,
 * place it and charge the organization. `was` is where and how it is charged now (a new mailbox: nowhere,
 * not counted); `active` false means it stops being charged (it keeps its store). The count is checked first
 * (PLAN_LIMIT), then the Resource Manager places the charge on a store in the allocation (staying where it
 * is when it fits, growing a dynamic allocation; STORAGE_LIMIT), then the organization's counters move by
 * the difference. Throws before anything is written when a check fails (the transaction rolls back).
 */
export async function settleMailboxSettings(
  ctx: Pick<ProcContext, 'tx' | 'now' | 'dialect' | 'enqueue'>,
  s: Subscription,
  plan: any,
  overrides: MailboxOverrides,
  opts: { was: Placement; active: boolean; storeId?: string; row?: { id: string; org_id: string; moving_from?: string | null } },
): Promise<SettingsColumns> {
  const eff = effectiveMailboxSettings(plan, overrides);
  const max = s.plan.max_mailbox_bytes;
  if (max !== null && max !== undefined && eff.prohibitSendReceiveQuota > Number(max)) {
    throw Errors.planLimit(`the organization's plan allows mailboxes of at most ${max} bytes; prohibitSendReceiveQuota is ${eff.prohibitSendReceiveQuota}`);
  }
  const allowed: readonly Protocol[] = parseFeatures(s.plan).protocols ?? PROTOCOLS;
  const protocols = eff.protocols.filter((p) => allowed.includes(p));
  const charged = opts.active ? mailboxCharge(eff) : 0;
  const countDelta = opts.active === opts.was.counted ? 0 : opts.active ? 1 : -1;
  checkCounts(s, { mailboxes: countDelta }); // a count over the plan refuses before anything is placed
  const storeId = opts.active || opts.was.counted ? await placeRecipient(ctx, s, 'mailbox', opts.was, opts.active ? charged : null, opts.storeId) : opts.was.storeId;
  await charge(ctx, s, { mailboxes: countDelta, mailboxBytes: charged - opts.was.charged });
  // a new quota that did not fit where the mailbox was (or a restore that found no room there) moved it: its data follows
  const moved = opts.was.storeId !== null && storeId !== opts.was.storeId ? requestDataMove(ctx, opts.row, opts.was.storeId, storeId!) : {};
  return {
    mailbox_plan_id: plan.id,
    plan_version: Number(plan.version),
    overrides: JSON.stringify(overrides),
    issue_warning_quota: eff.issueWarningQuota,
    prohibit_send_quota: eff.prohibitSendQuota,
    prohibit_send_receive_quota: eff.prohibitSendReceiveQuota,
    max_send_size: eff.maxSendSize,
    max_receive_size: eff.maxReceiveSize,
    recipient_limit: eff.recipientLimit,
    max_messages_per_hour: eff.maxMessagesPerHour,
    max_recipients_per_day: eff.maxRecipientsPerDay,
    protocols: JSON.stringify(protocols),
    external_forwarding: eff.externalForwarding ? 1 : 0,
    charged_bytes: charged,
    store_id: storeId,
    ...moved,
  };
}

/** Where a mailbox row is charged now (for settleMailboxSettings' `was`). */
export const placementOf = (row: any): Placement => ({ storeId: row.store_id ?? null, charged: Number(row.charged_bytes), counted: row.state === 'active' });

/**
 * Whether forwarding to `address` leaves the organization: its domain is not one of the organization's accepted
 * domains. Another tenant on the same platform is as external as the internet (the data plane forwards outside the
 * organization only for plans with externalForwarding, dp_virtual_aliases).
 */
export async function isExternal(tx: Db, address: string, orgId: string): Promise<boolean> {
  const domain = address.slice(address.lastIndexOf('@') + 1);
  return !(await tx.selectFrom('accepted_domains').select('domain_id').where('name', '=', domain).where('org_id', '=', orgId).executeTakeFirst());
}

/**
 * An address of the organization written on one of its domain aliases, in its target domain's spelling
 * (user@alias.example → user@example.com): the data plane resolves forwarding by the target's own address, as
 * it is stored; any other address unchanged.
 */
async function canonicalAddress(tx: Db, address: string, orgId: string): Promise<string> {
  const at = address.lastIndexOf('@');
  const target = await tx.selectFrom('accepted_domains as a').innerJoin('accepted_domains as t', 't.domain_id', 'a.alias_of')
    .select('t.name').where('a.name', '=', address.slice(at + 1)).where('a.org_id', '=', orgId).where('t.org_id', '=', orgId).executeTakeFirst();
  return target ? `${address.slice(0, at)}@${String(target.name)}` : address;
}

/**
 * The forwarding columns for `fwd` (null: none). A target outside the organization's accepted domains (another
 * tenant's included) is external and allowed only when the mailbox plan has externalForwarding; a mailbox may
 * not forward to one of its own addresses (a loop).
 */
export async function forwardingColumns(
  tx: Db,
  fwd: { to: string; mode: string } | null | undefined,
  opts: { externalAllowed: boolean; own: string[]; orgId: string },
): Promise<{ forward_to: string | null; forward_mode: string | null }> {
  if (!fwd) return { forward_to: null, forward_mode: null };
  const to = await canonicalAddress(tx, normalizeAddress(fwd.to).address, opts.orgId);
  if (opts.own.includes(to)) throw Errors.invalidRequest(`${to} is an address of this mailbox; it cannot forward to itself`);
  if (!opts.externalAllowed && (await isExternal(tx, to, opts.orgId))) {
    throw Errors.externalForwardingNotAllowed(`${to} is outside the organization and the mailbox plan does not allow external forwarding`);
  }
  return { forward_to: to, forward_mode: fwd.mode };
}

/** Refuse settings that would leave an existing external forwarding in place on a plan that does not allow it. */
export async function checkKeptForwarding(tx: Db, row: any, externalAllowed: boolean): Promise<void> {
  if (!row.forward_to || externalAllowed) return;
  if (await isExternal(tx, row.forward_to, row.org_id)) {
    throw Errors.externalForwardingNotAllowed(`the mailbox forwards to ${row.forward_to}, outside the organization, which the new plan does not allow; remove the forwarding first`);
  }
}
