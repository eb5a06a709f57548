import type { ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';

/**
 * Other areas' parts in the directory's lifecycles. The directory may not import the areas built on it
 * (mail, plans, …), yet moving an organization must re-point their tenant rows and purging a user or an
 * organization must remove their rows first. The composition root (src/app.ts) registers them here.
 */
export interface DirectoryHooks {
  /** Tables with `org_id` and `reseller_id` columns; an organization's rows follow it to its new reseller. */
  tenantTables: Set<string>;
  /**
   * Inside the transaction that deletes an organization, before it is marked deleting: refuse (throw) when
   * the area still holds objects and `force` is not set, else take them out of service and bill it.
   */
  beforeDeleteOrganization: Set<(ctx: ProcContext, orgId: string, force: boolean) => Promise<void>>;
  /** Checks before a user is deleted (throw an HmcError to refuse), inside the deleting transaction. */
  beforeDeleteUser: Set<(tx: Db, userId: string) => Promise<void>>;
  /** Run in the purge transaction before the user's own rows are deleted. */
  purgeUser: Set<(tx: Db, userId: string, now: number) => Promise<void>>;
  /** Run in the purge transaction before the organization's own rows are deleted. */
  purgeOrganization: Set<(tx: Db, orgId: string, now: number) => Promise<void>>;
}

export const directoryHooks: DirectoryHooks = {
  tenantTables: new Set(), beforeDeleteOrganization: new Set(), beforeDeleteUser: new Set(), purgeUser: new Set(), purgeOrganization: new Set(),
};
