import type { Migration } from '../store/migrate.js';
import { runDdl } from '../store/migrate.js';

/** Channel the domain cache LISTENs on (PostgreSQL). Persisted in the triggers below: never rename. */
export const DOMAIN_CACHE_CHANNEL = 'hmc_domain_cache';
/** Rows of transport_domain_changes kept (SQLite); a reader further behind than this rebuilds in full. */
export const DOMAIN_CHANGES_KEPT = 10_000;

/**
 * The transport agent's domain cache (transport/domain-cache.ts) learns of every change that can alter
 * "domain → organization, live?" from the database itself, whichever code path made it: an accepted domain
 * inserted, changed or deleted, an organization's state or reseller changed, a reseller's state changed.
 * Triggers, not the engine's outbox: billing_events miss changes made by jobs (the organization purge deletes
 * accepted_domains rows and records no event), and a future procedure that forgot its event would leave every
 * agent stale until the safety-net refresh; a trigger cannot be forgotten.
 *
 * Each change names a scope to reload: `o:<org id>` (that organization's domains) or `r:<reseller id>`
 * (every organization of the reseller). Organization inserts and deletes need no trigger: a new organization has
 * no accepted domain, and one can only be deleted after its accepted domains (foreign key), which fired.
 *
 * - PostgreSQL: `pg_notify('hmc_domain_cache', scope)`. Delivered only when the transaction commits, so a
 *   listener that reloads on the notification sees the change; identical payloads of one transaction are
 *   delivered once (a purge of 1,000 domains of one organization is one notification). No table: a change log
 *   read by "id > cursor" would skip rows whose sequence value was taken by a transaction that commits later.
 *   Transactions that NOTIFY commit one at a time (the notification queue's lock): only domain and tenant-state
 *   changes do, and they are rare next to mailbox and user changes, which notify nothing.
 * - SQLite: one writer, so an AUTOINCREMENT log read by "seq > cursor" is in commit order; the cache polls it
 *   (primary-key range, nothing to read in the usual case). Each insert trims the log to its last
 *   DOMAIN_CHANGES_KEPT rows, so it never grows; a reader whose cursor fell off the end rebuilds in full.
 */
export const transportMigrations: Migration[] = [
  {
    id: '0017_transport_domain_cache',
    async up(db, dialect) {
      if (dialect === 'postgres') {
        // plpgsql bodies on one line: runDdl splits statements at a semicolon that ends a line
        await runDdl(db, dialect, `
          CREATE FUNCTION hmc_domain_cache_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF TG_TABLE_NAME = 'resellers' THEN PERFORM pg_notify('${DOMAIN_CACHE_CHANNEL}', 'r:' || NEW.id); ELSIF TG_TABLE_NAME = 'organizations' THEN PERFORM pg_notify('${DOMAIN_CACHE_CHANNEL}', 'o:' || NEW.id); ELSIF TG_OP = 'DELETE' THEN PERFORM pg_notify('${DOMAIN_CACHE_CHANNEL}', 'o:' || OLD.org_id); ELSE PERFORM pg_notify('${DOMAIN_CACHE_CHANNEL}', 'o:' || NEW.org_id); END IF; RETURN NULL; END $$;
          CREATE TRIGGER accepted_domains_domain_cache AFTER INSERT OR UPDATE OR DELETE ON accepted_domains FOR EACH ROW EXECUTE FUNCTION hmc_domain_cache_notify();
          CREATE TRIGGER organizations_domain_cache AFTER UPDATE OF state, reseller_id ON organizations FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.reseller_id IS DISTINCT FROM NEW.reseller_id) EXECUTE FUNCTION hmc_domain_cache_notify();
          CREATE TRIGGER resellers_domain_cache AFTER UPDATE OF state ON resellers FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION hmc_domain_cache_notify()
        `);
        return;
      }
      // inside a trigger, last_insert_rowid() is the row the trigger just inserted
      const log = (scope: string, id: string) =>
        `INSERT INTO transport_domain_changes (scope, id) VALUES ('${scope}', ${id}); DELETE FROM transport_domain_changes WHERE seq <= last_insert_rowid() - ${DOMAIN_CHANGES_KEPT};`;
      await runDdl(db, dialect, `
        CREATE TABLE transport_domain_changes (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          scope TEXT NOT NULL CHECK (scope IN ('o','r')),
          id TEXT NOT NULL
        );
        CREATE TRIGGER accepted_domains_domain_cache_insert AFTER INSERT ON accepted_domains BEGIN ${log('o', 'NEW.org_id')} END;
        CREATE TRIGGER accepted_domains_domain_cache_update AFTER UPDATE ON accepted_domains BEGIN ${log('o', 'NEW.org_id')} END;
        CREATE TRIGGER accepted_domains_domain_cache_delete AFTER DELETE ON accepted_domains BEGIN ${log('o', 'OLD.org_id')} END;
        CREATE TRIGGER organizations_domain_cache AFTER UPDATE OF state, reseller_id ON organizations WHEN OLD.state IS NOT NEW.state OR OLD.reseller_id IS NOT NEW.reseller_id BEGIN ${log('o', 'NEW.id')} END;
        CREATE TRIGGER resellers_domain_cache AFTER UPDATE OF state ON resellers WHEN OLD.state IS NOT NEW.state BEGIN ${log('r', 'NEW.id')} END
      `);
    },
  },
  /**
   * Sending limits against hijacked accounts (issue 6 item 4; transport/sending-limits.ts) and the events they
   * raise. One migration for three areas' columns because it is one feature and one assigned id:
   *
   * - mailbox_plans / mailboxes: max_messages_per_hour (default 500) and max_recipients_per_day (default 2,000),
   *   materialised on the mailbox like recipient_limit (plan value, or the mailbox's override); existing plans and
   *   mailboxes get the defaults, which is what a plan created today gets too.
   * - org_plans: the same two limits for the whole organization (defaults 10,000 and 50,000). NOT NULL: a hijacked
   *   account of an organization without a limit would be a spam cannon, so "unlimited" is a large number someone chose.
   * - sending_counters: per sender (mailbox id) and per organization (org id), how many messages and recipients
   *   were accepted in a minute bucket (span 'minute') and in an hour bucket (span 'hour'). The policy service of
   *   every Postfix node upserts them at END-OF-MESSAGE and reads them at a message's first RCPT, so nodes sharing the
   *   database share the counts. The primary key serves the read (two subjects × two spans, one range each);
   *   expires_at serves the pruning. No foreign keys: a counter outlives nothing by more than a day.
   * - mail_events: what the mail path did that an organization's admins should know about (now: a sending limit
   *   reached), read through GET /api/v1/organizations/{orgId}/mail-events within scope. dedupe_key is unique so
   *   every node records one row per limit per window, however often a hijacked client retries. Not append-only
   *   like billing_events: the organization's purge removes them with it.
   */
  {
    id: '0019_transport_sending_limits',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        ALTER TABLE mailbox_plans ADD COLUMN max_messages_per_hour INTEGER NOT NULL DEFAULT 500 CHECK (max_messages_per_hour > 0);
        ALTER TABLE mailbox_plans ADD COLUMN max_recipients_per_day INTEGER NOT NULL DEFAULT 2000 CHECK (max_recipients_per_day > 0);
        ALTER TABLE mailboxes ADD COLUMN max_messages_per_hour INTEGER NOT NULL DEFAULT 500 CHECK (max_messages_per_hour > 0);
        ALTER TABLE mailboxes ADD COLUMN max_recipients_per_day INTEGER NOT NULL DEFAULT 2000 CHECK (max_recipients_per_day > 0);
        ALTER TABLE org_plans ADD COLUMN max_messages_per_hour BIGINT NOT NULL DEFAULT 10000 CHECK (max_messages_per_hour > 0);
        ALTER TABLE org_plans ADD COLUMN max_recipients_per_day BIGINT NOT NULL DEFAULT 50000 CHECK (max_recipients_per_day > 0);
        CREATE TABLE sending_counters (
          subject_id TEXT NOT NULL,
          span TEXT NOT NULL CHECK (span IN ('minute','hour')),
          bucket BIGINT NOT NULL,
          messages BIGINT NOT NULL,
          recipients BIGINT NOT NULL,
          expires_at BIGINT NOT NULL,
          PRIMARY KEY (subject_id, span, bucket)
        );
        CREATE INDEX sending_counters_expiry ON sending_counters (expires_at);
        CREATE TABLE mail_events (
          id TEXT PRIMARY KEY,
          org_id TEXT NOT NULL,
          reseller_id TEXT NOT NULL,
          at BIGINT NOT NULL,
          event TEXT NOT NULL,
          mailbox_id TEXT,
          login TEXT,
          data TEXT NOT NULL,
          dedupe_key TEXT NOT NULL UNIQUE
        );
        CREATE INDEX mail_events_org ON mail_events (org_id, id);
        CREATE INDEX mail_events_reseller ON mail_events (reseller_id, id)
      `);
    },
  },
  {
    // whom each mailbox's auto-reply answered and when (transport/auto-replies.ts): one row per mailbox and
    // sender, claimed atomically per reply, cleared when the settings are saved, pruned after the period
    id: '0020_transport_auto_reply_log',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        CREATE TABLE auto_reply_log (
          mailbox_id TEXT NOT NULL,
          sender TEXT NOT NULL,
          sent_at BIGINT NOT NULL,
          PRIMARY KEY (mailbox_id, sender)
        );
        CREATE INDEX auto_reply_log_sent ON auto_reply_log (sent_at)
      `);
    },
  },
];
