import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
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
  close(): Promise<void>;
}

// BIGINT columns hold epoch milliseconds and counters well below 2^53: read them as numbers.
pg.types.setTypeParser(20, (v) => Number(v));

/**
 * A SQLite connection with the platform's write settings (also used by the benchmark's raw baseline, so
 * both run with the same durability).
 */
export function openSqliteWriter(path: string): SQLite.Database {
  const writer = new SQLite(path);
  // Durability: WAL with synchronous=FULL, so an acknowledged request survives a power cut (DESIGN §3).
  writer.pragma('journal_mode = WAL');
  writer.pragma('synchronous = FULL');
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
    const pool = new pg.Pool({ connectionString: target.url, max: opts.poolSize ?? 10 });
    // an idle client losing its connection must not crash the process
    pool.on('error', () => {});
    const db: Db = new Kysely({ dialect: new PostgresDialect({ pool }) });
    return { db, dialect: 'postgres', close: () => db.destroy() };
  }
  mkdirSync(dirname(target.sqlitePath), { recursive: true });
  const writer = openSqliteWriter(target.sqlitePath);
  // reads outside a transaction (see sqlite-driver.ts), opened after the writer made the file WAL
  const reader = new SQLite(target.sqlitePath);
  reader.pragma('foreign_keys = ON');
  reader.pragma('busy_timeout = 5000');
  const db: Db = new Kysely({ dialect: splitSqliteDialect(cachingStatements(writer), cachingStatements(reader)) });
  return { db, dialect: 'sqlite', sqlitePath: target.sqlitePath, close: () => db.destroy() };
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
