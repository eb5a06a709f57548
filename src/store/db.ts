import { mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import type pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { splitSqliteDialect, type Statements } from './sqlite-driver.js';

export type Dialect = 'sqlite' | 'postgres';
// Areas describe their own tables; the store is typed loosely and each repo narrows it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Db = Kysely<any>;

/** An open database: Kysely plus what the engine needs to know about the dialect. */
export interface Store {
  db: Db;
  dialect: Dialect;
  /** SQLite file path (embedded mode). */
  sqlitePath?: string;
  /**
   * SQLite: make every commit so far durable (fdatasync of the WAL, on libuv's thread pool). The engine's
   * group commit awaits it before anyone is told "done" (engine/tx-runner.ts); see openStore.
   */
  syncCommits?: () => Promise<void>;
  close(): Promise<void>;
}

let pgModule: typeof pg | null = null;

/**
 * The PostgreSQL client library, loaded on first use: the embedded default (SQLite) never needs it, and
 * loading it costs a process ~1.5 MB of heap it would keep (bench/README.md, server memory).
 */
export function loadPg(): typeof pg {
  if (!pgModule) {
    pgModule = createRequire(import.meta.url)('pg') as typeof pg;
    // BIGINT columns hold epoch milliseconds and counters well below 2^53: read them as numbers.
    pgModule.types.setTypeParser(20, (v) => Number(v));
  }
  return pgModule;
}

/**
 * A SQLite connection with the platform's write settings (also used by the benchmark's raw baseline, so
 * both run with the same durability).
 */
export function openSqliteWriter(path: string, opts: { syncOnCommit?: boolean } = {}): SQLite.Database {
  const writer = new SQLite(path);
  // Durability: WAL, and every COMMIT synced before it is acknowledged, so an acknowledged request survives a
  // power cut (DESIGN §3): synchronous=FULL syncs inside COMMIT; the store instead syncs the WAL itself, off the
  // event loop (openStore), with synchronous=NORMAL (the WAL is still synced before every checkpoint)
  writer.pragma('journal_mode = WAL');
  writer.pragma(opts.syncOnCommit === false ? 'synchronous = NORMAL' : 'synchronous = FULL');
  writer.pragma('foreign_keys = ON');
  writer.pragma('busy_timeout = 5000');
  // Statement and savepoint journals (every unit of a group commit runs in a SAVEPOINT) in memory rather
  // than temporary files: halves the cost of each INSERT (25-50 us -> 12-25 us in the bench). Only
  // rollback-within-a-transaction data lives there; what makes a commit durable is the WAL, unchanged.
  writer.pragma('temp_store = MEMORY');
  return writer;
}

/** Open SQLite (a file path) or PostgreSQL (a `postgres://` URL). */
export function openStore(target: { sqlitePath: string } | { url: string }, opts: { poolSize?: number } = {}): Store {
  if ('url' in target) {
    const pool = new (loadPg().Pool)({ connectionString: target.url, max: opts.poolSize ?? 10 });
    // an idle client losing its connection must not crash the process
    pool.on('error', () => {});
    const db: Db = new Kysely({ dialect: new PostgresDialect({ pool }) });
    return { db, dialect: 'postgres', close: () => db.destroy() };
  }
  mkdirSync(dirname(target.sqlitePath), { recursive: true });
  // synchronous=FULL made each COMMIT wait for its fsync on the event loop: 35 % of the server's time in the
  // HTTP bench, every request stalled behind it. NORMAL commits without the sync; syncCommits then runs it on
  // the thread pool and the group commit acknowledges only after it (writes outside the group commit, the job
  // queue's claims and outcomes, are made durable by the next sync: a job whose outcome a power cut loses runs
  // again, as after a crash). A commit is visible to readers before its sync returns.
  const writer = openSqliteWriter(target.sqlitePath, { syncOnCommit: false });
  // reads outside a transaction (see sqlite-driver.ts), opened after the writer made the file WAL
  const reader = new SQLite(target.sqlitePath);
  reader.pragma('foreign_keys = ON');
  reader.pragma('busy_timeout = 5000');
  const db: Db = new Kysely({ dialect: splitSqliteDialect(cachingStatements(writer), cachingStatements(reader)) });
  const sync = walSync(target.sqlitePath);
  return {
    db, dialect: 'sqlite', sqlitePath: target.sqlitePath, syncCommits: sync.sync,
    close: async () => {
      try {
        await sync.sync();
      } finally {
        await sync.close();
        await db.destroy();
      }
    },
  };
}

/**
 * fdatasync of `<db>-wal` through a handle of its own (Linux syncs a file's data whatever descriptor asks).
 * The WAL file lives as long as a connection is open (a checkpoint rewinds or truncates it, never replaces it);
 * the first sync also syncs the directory, so a newly made WAL's name is durable too. Each call syncs anew:
 * one already running may have started before the caller's commit.
 */
function walSync(dbPath: string): { sync: () => Promise<void>; close: () => Promise<void> } {
  let handle: Promise<FileHandle> | null = null;
  const opened = async () => {
    const fh = await open(`${dbPath}-wal`, 'r');
    const dir = await open(dirname(dbPath), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return fh;
  };
  return {
    async sync() {
      handle ??= opened();
      let fh: FileHandle;
      try {
        fh = await handle;
      } catch (e) {
        handle = null; // no WAL yet (nothing was written): try again next time
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      await fh.datasync();
    },
    async close() {
      const h = handle;
      handle = null;
      if (h) await (await h.catch(() => null))?.close();
    },
  };
}

/**
 * Kysely prepares every query it runs, and better-sqlite3 compiles SQL on every prepare(): 10-20 % of
 * the server's CPU in the bench. Statements are kept by SQL text. Sharing is safe: a connection runs
 * one statement at a time (the driver's mutex for the writer; the reader only runs single statements,
 * synchronously), and nothing here streams. SQLite re-prepares a statement itself after a schema change.
 */
function cachingStatements(database: SQLite.Database, max = 1000): Statements {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => database.close(),
    get inTransaction() {
      return database.inTransaction;
    },
    prepare(sql: string) {
      let st = cache.get(sql);
      if (!st) {
        st = database.prepare(sql);
        if (cache.size >= max) cache.delete(cache.keys().next().value!);
        cache.set(sql, st);
      }
      return st;
    },
  };
}

/** True when `e` is a unique-constraint violation (either database). */
export function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: unknown } | null;
  if (!err || typeof err !== 'object') return false;
  return err.code === '23505' || err.code === 'SQLITE_CONSTRAINT_UNIQUE' || err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** True when `e` is a foreign-key violation (either database): a row still referred to by another. */
export function isForeignKeyViolation(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}

/** True when PostgreSQL refused a text value it cannot store (U+0000): bad input, not a server fault. */
export function isInvalidText(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === '22021' || code === '22P05';
}

/** The constraint or "table.column" a unique violation names, to turn it into the right error code. */
export function violatedConstraint(e: unknown): string {
  const err = e as { constraint?: string; message?: string };
  if (err.constraint) return err.constraint;
  const m = /UNIQUE constraint failed: (.*)$/.exec(err.message ?? '');
  return m?.[1] ?? '';
}
