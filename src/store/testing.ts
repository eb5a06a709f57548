import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openStore, type Dialect, type Store } from './db.js';

/** Every database test runs on both (STYLE: one suite, every dialect). */
export const DIALECTS: Dialect[] = ['sqlite', 'postgres'];

/** Admin URL of the PostgreSQL server tests create their databases on. */
export const TEST_PG_URL = process.env.HMC_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  dialect: Dialect;
  /** SQLite file path or PostgreSQL URL of this test's own database. */
  sqlitePath?: string;
  url?: string;
  /** Scratch directory for this test (files provider root, configs). */
  dir: string;
  open(opts?: { poolSize?: number }): Store;
  destroy(): Promise<void>;
}

/** A fresh, empty database of the given dialect (PostgreSQL: a new randomly named database, dropped after). */
export async function createTestDatabase(dialect: Dialect): Promise<TestDatabase> {
  const dir = mkdtempSync(join(tmpdir(), `hmc-test-${dialect}-`));
  if (dialect === 'sqlite') {
    const sqlitePath = join(dir, 'hmc.db');
    return {
      dialect, sqlitePath, dir,
      open: () => openStore({ sqlitePath }),
      destroy: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const name = `hmc_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(TEST_PG_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  return {
    dialect, url, dir,
    open: (opts) => openStore({ url }, opts),
    destroy: async () => {
      const c = new pg.Client({ connectionString: TEST_PG_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
