import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../store/testing.js';
import type { Store } from '../store/db.js';
import { migrate } from '../store/migrate.js';
import { MIGRATIONS } from '../migrations.js';
import { backoffMs, claimJobs, completeJob, failJob, heartbeat, insertJobs, retryJob, sweepExpired } from './queue.js';

async function newRequest(store: Store, id: string): Promise<void> {
  await store.db.insertInto('requests').values({
    id, procedure: 'test', state: 'running', actor: 't', caller_role: 'provider_admin', principal: '{}', input: '{}', created_at: 0, updated_at: 0,
  }).execute();
}

for (const dialect of DIALECTS) {
  describe(`job queue [${dialect}]`, () => {
    let tdb: TestDatabase;
    let store: Store;
    before(async () => {
      tdb = await createTestDatabase(dialect);
      store = tdb.open();
      await migrate(store, MIGRATIONS);
    });
    after(async () => {
      await store.close();
      await tdb.destroy();
    });

    test('jobs of one key run strictly in order; other keys are not held up', async () => {
      await newRequest(store, 'req_order');
      await insertJobs(store.db, 'req_order', 'forward', [
        { kind: 'k', payload: 1, queueKey: 'orgA' }, { kind: 'k', payload: 2, queueKey: 'orgA' }, { kind: 'k', payload: 3, queueKey: 'orgB' },
      ], Date.now());
      const first = await claimJobs(store.db, dialect, 'w1', 10, 30_000);
      assert.deepEqual(first.map((j) => JSON.parse(j.payload)), [1, 3], 'head of each key only');
      assert.deepEqual(await claimJobs(store.db, dialect, 'w2', 10, 30_000), [], 'orgA #2 waits for #1');
      assert.ok(await completeJob(store.db, first[0]!.id, 'w1'));
      const second = await claimJobs(store.db, dialect, 'w2', 10, 30_000);
      assert.deepEqual(second.map((j) => JSON.parse(j.payload)), [2]);
      assert.equal(second[0]!.attempts, 1);
      for (const j of [first[1]!, second[0]!]) await completeJob(store.db, j.id, j.locked_by!);
    });

    test('outcomes are fenced by owner; an expired lease goes back to the queue and counts the attempt', async () => {
      await newRequest(store, 'req_fence');
      await insertJobs(store.db, 'req_fence', 'forward', [{ kind: 'k', payload: 'f', queueKey: 'orgF' }], Date.now());
      const [j] = await claimJobs(store.db, dialect, 'dead-worker', 1, 50);
      assert.ok(j);
      assert.equal(await completeJob(store.db, j.id, 'someone-else'), false, 'not the owner');
      assert.deepEqual(await heartbeat(store.db, 'someone-else', [j.id], 1000), []);
      assert.equal(await sweepExpired(store.db, Date.now() + 100), 1, 'lease ran out');
      assert.equal(await completeJob(store.db, j.id, 'dead-worker'), false, 'the old owner lost it');
      const [again] = await claimJobs(store.db, dialect, 'w3', 1, 30_000, Date.now() + 200);
      assert.equal(again?.id, j.id);
      assert.equal(again?.attempts, 2);
      assert.ok(await retryJob(store.db, j.id, 'w3', 'boom', Date.now() + 60_000));
      assert.deepEqual(await claimJobs(store.db, dialect, 'w3', 1, 30_000), [], 'in backoff');
      await store.db.updateTable('jobs').set({ run_at: 0 }).where('id', '=', j.id).execute();
      const [third] = await claimJobs(store.db, dialect, 'w4', 1, 30_000);
      assert.ok(await failJob(store.db, third!.id, 'w4', 'for good'));
      const row = await store.db.selectFrom('jobs').selectAll().where('id', '=', j.id).executeTakeFirstOrThrow();
      assert.equal(row.state, 'failed');
      assert.equal(row.attempts, 3);
    });

    test('concurrent claimers never get the same job', async () => {
      await newRequest(store, 'req_many');
      await insertJobs(store.db, 'req_many', 'forward', Array.from({ length: 60 }, (_, i) => ({ kind: 'k', payload: i, queueKey: `key${i}` })), Date.now());
      const claims = await Promise.all(Array.from({ length: 6 }, (_, i) => claimJobs(store.db, dialect, `c${i}`, 20, 30_000)));
      const ids = claims.flat().map((j) => j.id);
      assert.equal(new Set(ids).size, ids.length, 'no job claimed twice');
      assert.equal(ids.length, 60);
    });
  });
}

test('backoff is capped, exponential and jittered', () => {
  assert.equal(backoffMs(1, 1000, 300_000, () => 1), 1000);
  assert.equal(backoffMs(3, 1000, 300_000, () => 1), 4000);
  assert.equal(backoffMs(30, 1000, 300_000, () => 1), 300_000);
  assert.equal(backoffMs(3, 1000, 300_000, () => 0), 2000);
});
