import type { Migration } from '../store/migrate.js';
import { runDdl } from '../store/migrate.js';

/** The engine's tables: requests (the audit trail of every change), their items and jobs, audit and billing events. */
export const engineMigrations: Migration[] = [
  {
    id: '0001_engine',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        CREATE TABLE requests (
          id TEXT PRIMARY KEY,
          procedure TEXT NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('running','compensating','succeeded','failed')),
          actor TEXT NOT NULL,
          token_id TEXT,
          caller_role TEXT NOT NULL,
          principal TEXT NOT NULL,
          reseller_id TEXT,
          org_id TEXT,
          target_type TEXT,
          target_id TEXT,
          input TEXT NOT NULL,
          result TEXT,
          error TEXT,
          idempotency_key TEXT,
          input_hash TEXT,
          compensation TEXT,
          items_total INTEGER NOT NULL DEFAULT 0,
          items_done INTEGER NOT NULL DEFAULT 0,
          items_failed INTEGER NOT NULL DEFAULT 0,
          jobs_total INTEGER NOT NULL DEFAULT 0,
          jobs_done INTEGER NOT NULL DEFAULT 0,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          finished_at BIGINT
        );
        CREATE UNIQUE INDEX requests_idempotency ON requests (token_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
        CREATE INDEX requests_org ON requests (org_id, id);
        CREATE INDEX requests_reseller ON requests (reseller_id, id);
        CREATE INDEX requests_open ON requests (state) WHERE state IN ('running','compensating');
        CREATE TABLE request_items (
          request_id TEXT NOT NULL REFERENCES requests (id),
          seq INTEGER NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('pending','succeeded','failed')),
          input TEXT NOT NULL,
          secret TEXT,
          result TEXT,
          error TEXT,
          compensation TEXT,
          PRIMARY KEY (request_id, seq)
        );
        CREATE TABLE jobs (
          id {{serial}},
          request_id TEXT NOT NULL REFERENCES requests (id),
          phase TEXT NOT NULL CHECK (phase IN ('forward','compensation')),
          item_seq INTEGER,
          queue_key TEXT NOT NULL,
          kind TEXT NOT NULL,
          payload TEXT NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('queued','running','done','failed','cancelled')),
          attempts INTEGER NOT NULL DEFAULT 0,
          max_attempts INTEGER NOT NULL,
          run_at BIGINT NOT NULL,
          locked_by TEXT,
          locked_until BIGINT,
          last_error TEXT,
          created_at BIGINT NOT NULL,
          started_at BIGINT,
          finished_at BIGINT
        );
        CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE state = 'queued';
        CREATE INDEX jobs_open_by_key ON jobs (queue_key, id) WHERE state IN ('queued','running');
        CREATE INDEX jobs_lease ON jobs (locked_until) WHERE state = 'running';
        CREATE INDEX jobs_request ON jobs (request_id, id);
        CREATE TABLE audit_log (
          id TEXT PRIMARY KEY,
          request_id TEXT NOT NULL,
          at BIGINT NOT NULL,
          actor TEXT NOT NULL,
          token_id TEXT,
          caller_role TEXT NOT NULL,
          reseller_id TEXT,
          org_id TEXT,
          procedure TEXT NOT NULL,
          phase TEXT NOT NULL,
          outcome TEXT NOT NULL,
          target_type TEXT,
          target_id TEXT,
          input TEXT,
          before TEXT,
          after TEXT,
          error TEXT,
          duration_ms INTEGER NOT NULL
        );
        CREATE INDEX audit_org ON audit_log (org_id, id);
        CREATE INDEX audit_reseller ON audit_log (reseller_id, id);
        CREATE INDEX audit_request ON audit_log (request_id);
        CREATE TABLE billing_events (
          id TEXT PRIMARY KEY,
          at BIGINT NOT NULL,
          reseller_id TEXT,
          org_id TEXT,
          object_type TEXT NOT NULL,
          object_id TEXT NOT NULL,
          event TEXT NOT NULL,
          request_id TEXT NOT NULL,
          data TEXT
        );
        CREATE INDEX billing_events_org ON billing_events (org_id, id);
        CREATE INDEX billing_events_reseller ON billing_events (reseller_id, id)
      `);
      // Billing events and the audit log are append-only: the database refuses changes, not just our code.
      if (dialect === 'sqlite') {
        for (const t of ['billing_events', 'audit_log']) {
          await runDdl(db, dialect, `
            CREATE TRIGGER ${t}_no_update BEFORE UPDATE ON ${t} BEGIN SELECT RAISE(ABORT, '${t} is append-only'); END;
            CREATE TRIGGER ${t}_no_delete BEFORE DELETE ON ${t} BEGIN SELECT RAISE(ABORT, '${t} is append-only'); END
          `);
        }
      } else {
        await runDdl(db, dialect, `
          CREATE FUNCTION hmc_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
          CREATE TRIGGER billing_events_append_only BEFORE UPDATE OR DELETE ON billing_events FOR EACH ROW EXECUTE FUNCTION hmc_append_only();
          CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION hmc_append_only()
        `);
      }
    },
  },
];
