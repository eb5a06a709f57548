import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';

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
  const database = new SQLite(target.sqlitePath);
  // Durability: WAL with synchronous=FULL, so an acknowledged request survives a power cut (DESIGN §3).
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = FULL');
  database.pragma('foreign_keys = ON');
  database.pragma('busy_timeout = 5000');
  const db: Db = new Kysely({ dialect: new SqliteDialect({ database: cachingStatements(database) }) });
  return { db, dialect: 'sqlite', sqlitePath: target.sqlitePath, close: () => db.destroy() };
}

/**
 * Kysely prepares every query it runs, and better-sqlite3 compiles SQL on every prepare(): 10-20 % of
 * the server's CPU in the bench. Statements are kept by SQL text. Sharing is safe: one connection runs
 * one statement at a time (Kysely's mutex), and nothing here streams. SQLite re-prepares a statement
 * itself after a schema change.
 */
function cachingStatements(database: SQLite.Database, max = 1000): { close(): void; prepare(sql: string): SQLite.Statement } {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => database.close(),
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
