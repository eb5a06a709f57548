import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { sql } from 'kysely';
import { DIALECTS, createTestDatabase } from './testing.js';
import { migrate, runDdl, type Migration } from './migrate.js';
import { MIGRATIONS } from '../migrations.js';

for (const dialect of DIALECTS) {
  describe(`migrations [${dialect}]`, () => {
    test('apply once, are recorded, and a re-run applies nothing', async () => {
      const tdb = await createTestDatabase(dialect);
      const store = tdb.open();
      try {
        const first = await migrate(store, MIGRATIONS);
        assert.deepEqual(first.applied, MIGRATIONS.map((m) => m.id));
        assert.equal(first.backup, null, 'a new database needs no backup');
        const again = await migrate(store, MIGRATIONS);
        assert.deepEqual(again.applied, []);
      } finally {
        await store.close();
        await tdb.destroy();
      }
    });

    test('append-only tables refuse updates and deletes', async () => {
      const tdb = await createTestDatabase(dialect);
      const store = tdb.open();
      try {
        await migrate(store, MIGRATIONS);
        await store.db.insertInto('billing_events').values({ id: 'evt_1', at: 1, object_type: 'x', object_id: 'y', event: 'created', request_id: 'r' }).execute();
        await assert.rejects(sql`UPDATE billing_events SET event = 'deleted'`.execute(store.db));
        await assert.rejects(sql`DELETE FROM billing_events`.execute(store.db));
      } finally {
        await store.close();
        await tdb.destroy();
      }
    });

    if (dialect === 'sqlite') {
      test('an existing SQLite database is backed up before a new migration', async () => {
        const tdb = await createTestDatabase(dialect);
        let store = tdb.open();
        try {
          await migrate(store, MIGRATIONS);
          const extra: Migration = { id: '9999_extra', up: (db, d) => runDdl(db, d, 'CREATE TABLE extra (id TEXT PRIMARY KEY)') };
          const r = await migrate(store, [...MIGRATIONS, extra]);
          assert.deepEqual(r.applied, ['9999_extra']);
          assert.ok(r.backup && existsSync(r.backup), 'backup file written');
          await store.close();
          store = (await import('./db.js')).openStore({ sqlitePath: r.backup! });
          const rows = await store.db.selectFrom('hmc_migrations').select('id').execute();
          assert.ok(!rows.some((x) => x.id === '9999_extra'), 'backup holds the state before migrating');
        } finally {
          await store.close();
          await tdb.destroy();
        }
      });
    }
  });
}
