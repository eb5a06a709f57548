import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase } from '../store/testing.js';
import { createSqliteTxRunner } from './tx-runner.js';

test('SQLite group commit: concurrent units commit together, a failing unit rolls back alone', async () => {
  const tdb = await createTestDatabase('sqlite');
  const store = tdb.open();
  try {
    await sql`CREATE TABLE t (k TEXT PRIMARY KEY)`.execute(store.db);
    const txr = createSqliteTxRunner(store.db);
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        txr.run(async (tx) => {
          await tx.insertInto('t').values({ k: `a${i}` }).execute();
          if (i % 10 === 3) {
            await tx.insertInto('t').values({ k: `b${i}` }).execute();
            throw new Error('unit fails after writing');
          }
          return i;
        }),
      ),
    );
    assert.equal(results.filter((r) => r.status === 'rejected').length, 5);
    const rows = await store.db.selectFrom('t').select('k').execute();
    assert.equal(rows.length, 45, 'only the successful units are committed');
    assert.ok(!rows.some((r) => r.k.startsWith('b')), 'no partial write of a failed unit');
    // a single failing unit leaves nothing either
    await assert.rejects(txr.run(async (tx) => { await tx.insertInto('t').values({ k: 'solo' }).execute(); throw new Error('x'); }));
    assert.equal((await store.db.selectFrom('t').select('k').where('k', '=', 'solo').execute()).length, 0);
  } finally {
    await store.close();
    await tdb.destroy();
  }
});
