import type { Migration } from '../store/migrate.js';
import { runDdl } from '../store/migrate.js';

/**
 * Plan Manager: organization plans, mailbox plans, a reseller's own (ceiling) plan, organization
 * subscriptions with their usage counters, and the mailbox plans available to each organization.
 *
 * Sizes are BIGINT bytes (exact to 2^53); NULL limits mean "no limit". `owner_key` is 'provider' or the
 * owning reseller's id, so a plan name is unique per owner with a plain unique index on both dialects.
 * The counters in org_subscriptions are the figures every limit check reads and writes in the same
 * transaction (the row is the lock), and `hmc check` verifies them against the sums of their parts.
 */
export const plansMigrations: Migration[] = [
  {
    id: '0003_plans',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        CREATE TABLE org_plans (
          id TEXT PRIMARY KEY,
          owner_key TEXT NOT NULL,
          reseller_id TEXT REFERENCES resellers (id),
          name TEXT NOT NULL,
          display_name TEXT NOT NULL,
          max_mailboxes BIGINT,
          max_domains BIGINT,
          max_groups BIGINT,
          max_contacts BIGINT,
          max_public_folders BIGINT,
          storage_bytes BIGINT,
          dynamic_storage INTEGER NOT NULL CHECK (dynamic_storage IN (0,1)),
          max_mailbox_bytes BIGINT,
          mailstore_kind TEXT NOT NULL CHECK (mailstore_kind IN ('shared','dedicated')),
          placement TEXT NOT NULL CHECK (placement IN ('tightPack','level','minStoreCount')),
          public_folder_bytes BIGINT NOT NULL,
          features TEXT NOT NULL,
          version INTEGER NOT NULL,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          UNIQUE (owner_key, name),
          CHECK (dynamic_storage = 1 OR storage_bytes IS NOT NULL),
          CHECK (storage_bytes IS NULL OR storage_bytes >= 0),
          CHECK (public_folder_bytes >= 0)
        );
        CREATE INDEX org_plans_owner ON org_plans (owner_key, id);
        CREATE TABLE mailbox_plans (
          id TEXT PRIMARY KEY,
          owner_key TEXT NOT NULL,
          reseller_id TEXT REFERENCES resellers (id),
          name TEXT NOT NULL,
          display_name TEXT NOT NULL,
          issue_warning_quota BIGINT NOT NULL,
          prohibit_send_quota BIGINT NOT NULL,
          prohibit_send_receive_quota BIGINT NOT NULL,
          max_send_size BIGINT NOT NULL,
          max_receive_size BIGINT NOT NULL,
          recipient_limit INTEGER NOT NULL,
          protocols TEXT NOT NULL,
          hidden_default INTEGER NOT NULL CHECK (hidden_default IN (0,1)),
          external_forwarding INTEGER NOT NULL CHECK (external_forwarding IN (0,1)),
          version INTEGER NOT NULL,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          UNIQUE (owner_key, name),
          CHECK (0 <= issue_warning_quota AND issue_warning_quota <= prohibit_send_quota AND prohibit_send_quota <= prohibit_send_receive_quota)
        );
        CREATE INDEX mailbox_plans_owner ON mailbox_plans (owner_key, id);
        CREATE TABLE reseller_plans (
          reseller_id TEXT PRIMARY KEY REFERENCES resellers (id),
          org_plan_id TEXT NOT NULL REFERENCES org_plans (id),
          updated_at BIGINT NOT NULL
        );
        CREATE INDEX reseller_plans_plan ON reseller_plans (org_plan_id);
        CREATE TABLE org_subscriptions (
          org_id TEXT PRIMARY KEY REFERENCES organizations (id),
          reseller_id TEXT NOT NULL,
          org_plan_id TEXT NOT NULL REFERENCES org_plans (id),
          storage_override BIGINT,
          grown_bytes BIGINT NOT NULL DEFAULT 0,
          mailbox_count BIGINT NOT NULL DEFAULT 0,
          mailbox_bytes BIGINT NOT NULL DEFAULT 0,
          domain_count BIGINT NOT NULL DEFAULT 0,
          group_count BIGINT NOT NULL DEFAULT 0,
          contact_count BIGINT NOT NULL DEFAULT 0,
          public_folder_count BIGINT NOT NULL DEFAULT 0,
          public_folder_bytes BIGINT NOT NULL DEFAULT 0,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          CHECK (mailbox_count >= 0 AND mailbox_bytes >= 0 AND domain_count >= 0 AND group_count >= 0 AND contact_count >= 0
                 AND public_folder_count >= 0 AND public_folder_bytes >= 0 AND grown_bytes >= 0)
        );
        CREATE INDEX org_subscriptions_plan ON org_subscriptions (org_plan_id, org_id);
        CREATE INDEX org_subscriptions_reseller ON org_subscriptions (reseller_id, org_id);
        CREATE TABLE org_available_plans (
          org_id TEXT NOT NULL REFERENCES organizations (id),
          mailbox_plan_id TEXT NOT NULL REFERENCES mailbox_plans (id),
          reseller_id TEXT NOT NULL,
          PRIMARY KEY (org_id, mailbox_plan_id)
        );
        CREATE INDEX org_available_plans_plan ON org_available_plans (mailbox_plan_id)
      `);
    },
  },
];
