import type { Migration } from '../store/migrate.js';
import { runDdl } from '../store/migrate.js';

/**
 * Resource Manager: mail servers (Dovecot back ends), the mailstores on them, and each organization's
 * allocation pieces per store. Sizes are BIGINT bytes (exact to 2^53), timestamps BIGINT ms.
 *
 * The invariants charged ≤ allocated ≤ capacity (DESIGN §3) live in CHECK constraints as well as in code, so
 * a bug in a procedure fails its transaction instead of over-committing a store. A dedicated store names
 * its owner; a shared one never does. `mailstores.allocated_bytes` / `mailbox_count` are the totals every
 * placement check reads and writes in the same transaction (the row is the lock); `hmc check` verifies them
 * against the sum of `store_allocations`.
 */
export const resourcesMigrations: Migration[] = [
  {
    id: '0007_resources',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        CREATE TABLE mail_servers (
          id TEXT PRIMARY KEY,
          name TEXT NOT NULL UNIQUE,
          lmtp_endpoint TEXT NOT NULL,
          imap_endpoint TEXT NOT NULL,
          pop_endpoint TEXT,
          mail_root TEXT NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('active','draining','offline')),
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL
        );
        CREATE TABLE mailstores (
          id TEXT PRIMARY KEY,
          server_id TEXT NOT NULL REFERENCES mail_servers (id),
          name TEXT NOT NULL,
          purpose TEXT NOT NULL CHECK (purpose IN ('mailbox','public_folder')),
          sharing TEXT NOT NULL CHECK (sharing IN ('shared','dedicated')),
          capacity_bytes BIGINT NOT NULL CHECK (capacity_bytes >= 0),
          max_mailboxes BIGINT CHECK (max_mailboxes IS NULL OR max_mailboxes >= 0),
          state TEXT NOT NULL CHECK (state IN ('active','draining','offline')),
          allocated_bytes BIGINT NOT NULL DEFAULT 0 CHECK (allocated_bytes >= 0),
          mailbox_count BIGINT NOT NULL DEFAULT 0 CHECK (mailbox_count >= 0),
          owner_org_id TEXT REFERENCES organizations (id),
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          UNIQUE (server_id, name),
          CHECK (allocated_bytes <= capacity_bytes),
          CHECK (owner_org_id IS NULL OR sharing = 'dedicated')
        );
        CREATE INDEX mailstores_server ON mailstores (server_id, id);
        CREATE INDEX mailstores_purpose_state ON mailstores (purpose, state, id);
        CREATE TABLE store_allocations (
          org_id TEXT NOT NULL REFERENCES organizations (id),
          store_id TEXT NOT NULL REFERENCES mailstores (id),
          reseller_id TEXT NOT NULL,
          bytes BIGINT NOT NULL CHECK (bytes >= 0),
          charged_bytes BIGINT NOT NULL DEFAULT 0 CHECK (charged_bytes >= 0),
          mailbox_count BIGINT NOT NULL DEFAULT 0 CHECK (mailbox_count >= 0),
          PRIMARY KEY (org_id, store_id),
          CHECK (charged_bytes <= bytes)
        );
        CREATE INDEX store_allocations_store ON store_allocations (store_id, org_id)
      `);
    },
  },
  {
    id: '0008_placement',
    async up(db, dialect) {
      // Where each mailbox and public folder lives. Kept while a deleted mailbox waits for its purge (its data
      // is still there), so a store cannot be deleted under it; NULL only for rows made before this migration,
      // which `hmc check` reports as unplaced and `--repair` places.
      await runDdl(db, dialect, `
        ALTER TABLE mailboxes ADD COLUMN store_id TEXT REFERENCES mailstores (id);
        ALTER TABLE public_folders ADD COLUMN store_id TEXT REFERENCES mailstores (id);
        CREATE INDEX mailboxes_store ON mailboxes (store_id, id);
        CREATE INDEX public_folders_store ON public_folders (store_id, id)
      `);
    },
  },
  {
    id: '0009_mailbox_moves',
    async up(db, dialect) {
      // A mailbox whose data is being copied to its (new) store_id: the store it comes from, NULL otherwise.
      await runDdl(db, dialect, `
        ALTER TABLE mailboxes ADD COLUMN moving_from TEXT REFERENCES mailstores (id)
      `);
    },
  },
  {
    id: '0011_mailstore_free_index',
    async up(db, dialect) {
      // growthCandidates: the active stores of a pool with at least N bytes free, least (or most) free first,
      // found by a range scan instead of reading and sorting the pool
      await runDdl(db, dialect, `
        CREATE INDEX mailstores_free ON mailstores (purpose, sharing, state, (capacity_bytes - allocated_bytes), id)
      `);
    },
  },
];
