import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { Db, Dialect, Store } from './db.js';

/** One numbered, forward-only migration. Never edit one that has landed: add the next number. */
export interface Migration {
  /** `NNNN_name`; applied in this order. */
  id: string;
  up(db: Db, dialect: Dialect): Promise<void>;
}

export interface MigrateResult {
  applied: string[];
  backup: string | null;
}

/** Run the raw DDL `text` (statements separated by `;` on their own line ends); `{{serial}}` becomes the dialect's auto-increment key. */
export async function runDdl(db: Db, dialect: Dialect, text: string): Promise<void> {
  const serial = dialect === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY';
  const statements = text
    .replaceAll('{{serial}}', serial)
    .split(/;\s*\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const s of statements) await sql.raw(s).execute(db);
}

/**
 * Apply pending migrations, each in its own transaction. Before touching an existing SQLite database
 * that has pending migrations, a consistent copy is written to `backupDir` (VACUUM INTO).
 * On PostgreSQL an advisory lock makes concurrent `hmc migrate` runs wait for each other.
 */
export async function migrate(store: Store, migrations: Migration[], opts: { backupDir?: string } = {}): Promise<MigrateResult> {
  const { db, dialect } = store;
  const ids = migrations.map((m) => m.id);
  if (new Set(ids).size !== ids.length || [...ids].sort().join() !== ids.join()) {
    throw new Error('migrations must have unique ids in ascending order');
  }
  await sql`CREATE TABLE IF NOT EXISTS hmc_migrations (id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`.execute(db);
  return db.connection().execute(async (conn) => {
    if (dialect === 'postgres') await sql`SELECT pg_advisory_lock(7465001)`.execute(conn);
    try {
      const done = new Set((await conn.selectFrom('hmc_migrations').select('id').execute()).map((r) => r.id as string));
      const pending = migrations.filter((m) => !done.has(m.id));
      let backup: string | null = null;
      if (pending.length > 0 && done.size > 0 && dialect === 'sqlite' && store.sqlitePath && existsSync(store.sqlitePath)) {
        const dir = opts.backupDir ?? join(store.sqlitePath, '..', 'backups');
        mkdirSync(dir, { recursive: true });
        const last = [...done].sort().at(-1);
        backup = join(dir, `hmc-${new Date().toISOString().replace(/[:.]/g, '-')}-at-${last}.db`);
        await sql`VACUUM INTO ${sql.lit(backup)}`.execute(conn);
      }
      for (const m of pending) {
        await conn.transaction().execute(async (trx) => {
          await m.up(trx, dialect);
          await trx.insertInto('hmc_migrations').values({ id: m.id, applied_at: Date.now() }).execute();
        });
      }
      return { applied: pending.map((m) => m.id), backup };
    } finally {
      if (dialect === 'postgres') await sql`SELECT pg_advisory_unlock(7465001)`.execute(conn);
    }
  });
}
