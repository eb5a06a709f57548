import { Errors } from '../core/errors.js';
import { normalizeAddress } from '../core/names.js';
import type { ProcContext } from '../engine/procedure.js';
import { isUniqueViolation, type Db } from '../store/db.js';

/**
 * The platform-wide address namespace (DESIGN §3, the seed's RU5 "mail to unintended recipients").
 * An address belongs to at most one recipient: `addresses.address` is the primary key, so two concurrent
 * claims cannot both commit (the loser's INSERT fails inside its own transaction). A released address is
 * quarantined with the id of the recipient that held it; until the quarantine ends nobody else can claim
 * it, and only restoring that same recipient takes it back. Recipient ids are never reused, so an address
 * can never resolve to a former recipient once someone else holds it.
 */

/** Settings of the mail area (from configuration). */
export interface MailSettings {
  /** How long a released address stays quarantined. */
  addressQuarantineMs: number;
  /** How long a deleted mailbox is kept, disabled and restorable, before a job purges it. */
  mailboxRetentionMs: number;
  /**
   * This host manages data planes (HMC_DATAPLANE_ROOT): procedures whose change a data plane must carry out
   * (public folders) enqueue the job that does it; elsewhere there is nothing to converge.
   */
  managesDataplanes?: boolean;
}

export const DAY_MS = 86_400_000;

export type RecipientKind = 'mailbox' | 'group' | 'public_folder';

export interface ClaimSpec {
  orgId: string;
  resellerId: string;
  /** As given by the caller; normalised here. */
  address: string;
  recipientId: string;
  recipientKind: RecipientKind;
  isPrimary: boolean;
}

/** The organization's accepted domain an address may live on (not an alias domain), or a clear 4xx. */
export async function acceptedDomainFor(tx: Db, orgId: string, domain: string, dialect?: 'sqlite' | 'postgres'): Promise<{ domain_id: string; name: string; type: string }> {
  let q = tx.selectFrom('accepted_domains').select(['domain_id', 'org_id', 'name', 'type', 'alias_of']).where('name', '=', domain);
  // PostgreSQL: a domain cannot turn into an alias (FOR UPDATE there) while an address is being claimed on it
  if (dialect === 'postgres') q = q.forShare();
  const d = await q.executeTakeFirst();
  if (!d || d.org_id !== orgId) throw Errors.domainNotAccepted(`${domain} is not an accepted domain of this organization`);
  if (d.alias_of !== null) throw Errors.domainIsAlias(`${domain} is a domain alias; mail to it reaches the same local part on the domain it aliases, so addresses are made there`);
  return d;
}

/**
 * Claim an address for a recipient inside the caller's transaction. Refuses an address on a domain that
 * is not one of the organization's accepted (non-alias) domains, an address another recipient holds
 * (address_taken) and an address quarantined for another recipient (address_quarantined).
 * Returns the normalised address.
 */
export async function claimAddress(ctx: Pick<ProcContext, 'tx' | 'now' | 'dialect'>, spec: ClaimSpec): Promise<string> {
  const a = normalizeAddress(spec.address);
  const domain = await acceptedDomainFor(ctx.tx, spec.orgId, a.domain, ctx.dialect);
  const q = await ctx.tx.selectFrom('address_quarantine').select(['former_recipient_id', 'until']).where('address', '=', a.address).executeTakeFirst();
  if (q) {
    if (Number(q.until) > ctx.now && q.former_recipient_id !== spec.recipientId) {
      throw Errors.addressQuarantined(`${a.address} was released on deletion and is quarantined until ${new Date(Number(q.until)).toISOString()}`);
    }
    await ctx.tx.deleteFrom('address_quarantine').where('address', '=', a.address).execute();
  }
  try {
    await ctx.tx
      .insertInto('addresses')
      .values({
        address: a.address, org_id: spec.orgId, reseller_id: spec.resellerId, domain_id: domain.domain_id, recipient_id: spec.recipientId,
        recipient_kind: spec.recipientKind, is_primary: spec.isPrimary ? 1 : 0, created_at: ctx.now,
      })
      .execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw Errors.addressTaken(`${a.address} is already in use`);
    throw e;
  }
  return a.address;
}

/**
 * Release addresses of a recipient into quarantine (all of them, or the listed ones). The quarantine row
 * remembers the recipient so a restore can take them back, and no one else can until `until`.
 */
export async function releaseAddresses(ctx: Pick<ProcContext, 'tx' | 'now'>, recipientId: string, quarantineMs: number, only?: string[]): Promise<string[]> {
  let q = ctx.tx.selectFrom('addresses').select(['address', 'org_id']).where('recipient_id', '=', recipientId);
  if (only) {
    if (only.length === 0) return [];
    q = q.where('address', 'in', only);
  }
  const rows = await q.execute();
  if (rows.length === 0) return [];
  const list = rows.map((r) => r.address as string);
  await ctx.tx.deleteFrom('addresses').where('recipient_id', '=', recipientId).where('address', 'in', list).execute();
  if (quarantineMs > 0) {
    await ctx.tx.deleteFrom('address_quarantine').where('address', 'in', list).execute();
    await ctx.tx
      .insertInto('address_quarantine')
      .values(rows.map((r) => ({ address: r.address, org_id: r.org_id, former_recipient_id: recipientId, released_at: ctx.now, until: ctx.now + quarantineMs })))
      .execute();
  }
  return list;
}

/** Addresses a recipient holds, primary first. */
export async function addressesOf(db: Db, recipientId: string): Promise<{ address: string; isPrimary: boolean }[]> {
  const rows = await db.selectFrom('addresses').select(['address', 'is_primary']).where('recipient_id', '=', recipientId).orderBy('is_primary', 'desc').orderBy('address').execute();
  return rows.map((r) => ({ address: r.address as string, isPrimary: Number(r.is_primary) === 1 }));
}

/** Make `address` (already held by the recipient) its primary one. */
export async function setPrimaryAddress(tx: Db, recipientId: string, address: string): Promise<void> {
  await tx.updateTable('addresses').set({ is_primary: 0 }).where('recipient_id', '=', recipientId).where('is_primary', '=', 1).execute();
  await tx.updateTable('addresses').set({ is_primary: 1 }).where('recipient_id', '=', recipientId).where('address', '=', address).execute();
}

/** Which recipient an address resolves to now (null when nobody holds it). */
export async function resolveAddress(db: Db, address: string): Promise<{ recipientId: string; recipientKind: RecipientKind; orgId: string } | null> {
  const r = await db.selectFrom('addresses').select(['recipient_id', 'recipient_kind', 'org_id']).where('address', '=', address).executeTakeFirst();
  return r ? { recipientId: r.recipient_id, recipientKind: r.recipient_kind, orgId: r.org_id } : null;
}

/**
 * Remove what names a recipient that is going away: its places in groups' member lists and listed senders.
 * Those rows refer to recipients of several kinds by id, so no foreign key removes them.
 */
export async function dropRecipientReferences(tx: Db, recipientId: string): Promise<void> {
  await tx.deleteFrom('mail_group_members').where('member_id', '=', recipientId).execute();
  await tx.deleteFrom('group_senders').where('sender_id', '=', recipientId).execute();
}
