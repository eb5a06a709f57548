import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../src/store/testing.js';
import type { Store } from '../src/store/db.js';
import { migrate } from '../src/store/migrate.js';
import { MIGRATIONS } from '../src/migrations.js';
import {
  DAY_MS, HOUR_MS, limitEventKey, limitReached, MINUTE_MS, pruneCounters, readSendingUsage, recordLimitReached, recordMessage, type LimitedSender,
} from '../src/transport/sending-limits.js';

/**
 * The sending-limit counters (transport/sending-limits.ts) on both databases, at their edges: a message counts
 * for 60 to 61 minutes and a recipient for 24 to 25 hours, never less; many policy services writing at once lose
 * no count (the upsert is one statement); expired rows are pruned and only those; a limit's event is one row per
 * window however many nodes record it.
 */

let seq = 0;
const sender = (): LimitedSender => {
  const n = ++seq;
  return {
    login: `user${n}@limits.example`, mailboxId: `mbx_${n}`, orgId: `org_${n}`, resellerId: 'rsl_1',
    mailbox: { maxMessagesPerHour: 3, maxRecipientsPerDay: 10 }, organization: { maxMessagesPerHour: 5, maxRecipientsPerDay: 20 },
  };
};
// a bucket-aligned instant, so the edges below are exact
const T0 = Math.floor(Date.UTC(2031, 0, 1) / DAY_MS) * DAY_MS;

describe('sending-limit decisions (pure)', () => {
  test('one more message or recipient than the limit is refused, the mailbox first, then the organization', () => {
    const s = sender();
    const usage = (m: number, r: number, om: number, or: number) => ({ mailbox: { messages: m, recipients: r }, organization: { messages: om, recipients: or } });
    assert.equal(limitReached(s, usage(2, 0, 0, 0), 0), null, 'the third message of 3 passes');
    assert.deepEqual(limitReached(s, usage(3, 0, 0, 0), 0), { scope: 'mailbox', limit: 'messagesPerHour', max: 3, count: 3 });
    assert.equal(limitReached(s, usage(0, 7, 0, 0), 2), null, 'the tenth recipient of 10 passes');
    assert.deepEqual(limitReached(s, usage(0, 7, 0, 0), 3), { scope: 'mailbox', limit: 'recipientsPerDay', max: 10, count: 10 });
    assert.deepEqual(limitReached(s, usage(0, 0, 5, 0), 0), { scope: 'organization', limit: 'messagesPerHour', max: 5, count: 5 });
    assert.deepEqual(limitReached(s, usage(0, 0, 0, 19), 1), { scope: 'organization', limit: 'recipientsPerDay', max: 20, count: 20 });
    assert.equal(limitReached(s, usage(2, 9, 4, 19), 0), null);
  });

  test('event keys: one per subject, limit and clock period (hour for messages, UTC day for recipients)', () => {
    const s = sender();
    const k = (scope: 'mailbox' | 'organization', limit: 'messagesPerHour' | 'recipientsPerDay', at: number) => limitEventKey(s, { scope, limit }, at);
    assert.equal(k('mailbox', 'messagesPerHour', T0 + 5 * MINUTE_MS).key, k('mailbox', 'messagesPerHour', T0 + 59 * MINUTE_MS).key);
    assert.notEqual(k('mailbox', 'messagesPerHour', T0).key, k('mailbox', 'messagesPerHour', T0 + HOUR_MS).key);
    assert.equal(k('mailbox', 'recipientsPerDay', T0).key, k('mailbox', 'recipientsPerDay', T0 + 23 * HOUR_MS).key);
    assert.notEqual(k('mailbox', 'recipientsPerDay', T0).key, k('organization', 'recipientsPerDay', T0).key);
    assert.equal(k('organization', 'messagesPerHour', T0 + 10).until, T0 + HOUR_MS);
  });
});

for (const dialect of DIALECTS) {
  describe(`sending-limit counters [${dialect}]`, () => {
    let tdb: TestDatabase;
    let store: Store;
    before(async () => {
      tdb = await createTestDatabase(dialect);
      store = tdb.open({ poolSize: 8 });
      await migrate(store, MIGRATIONS);
    });
    after(async () => {
      await store?.close();
      await tdb?.destroy();
    });

    test('a message counts for 60 to 61 minutes, its recipients for 24 to 25 hours, for the mailbox and its organization', async () => {
      const db = store.db;
      const s = sender();
      await recordMessage(db, s, 4, T0 + 30_000); // in the minute bucket T0 and the hour bucket T0
      const at = (t: number) => readSendingUsage(db, s, t);
      assert.deepEqual(await at(T0 + 30_000), { mailbox: { messages: 1, recipients: 4 }, organization: { messages: 1, recipients: 4 } });
      assert.equal((await at(T0 + 60 * MINUTE_MS + 59_999)).mailbox.messages, 1, 'still counted 60 min 59.999 s after its minute began');
      assert.equal((await at(T0 + 61 * MINUTE_MS)).mailbox.messages, 0, 'gone at 61 min');
      assert.equal((await at(T0 + 61 * MINUTE_MS)).organization.recipients, 4, 'its recipients still count');
      assert.equal((await at(T0 + 24 * HOUR_MS + 59 * MINUTE_MS)).organization.recipients, 4, 'still counted 24 h 59 min on');
      assert.deepEqual(await at(T0 + 25 * HOUR_MS), { mailbox: { messages: 0, recipients: 0 }, organization: { messages: 0, recipients: 0 } });
      // another mailbox of the same organization adds to the organization only
      const sibling = { ...sender(), orgId: s.orgId };
      await recordMessage(db, sibling, 2, T0 + 10 * MINUTE_MS);
      assert.deepEqual(await at(T0 + 20 * MINUTE_MS), { mailbox: { messages: 1, recipients: 4 }, organization: { messages: 2, recipients: 6 } });
    });

    test('many services counting at once lose nothing', async () => {
      const db = store.db;
      const s = sender();
      const siblings = Array.from({ length: 4 }, () => ({ ...sender(), orgId: s.orgId }));
      // 4 mailboxes × 25 messages, all at once through a pool of 8 connections (PostgreSQL: real concurrency)
      await Promise.all(siblings.flatMap((m) => Array.from({ length: 25 }, (_, i) => recordMessage(db, m, 3, T0 + (i % 3) * MINUTE_MS))));
      const u = await readSendingUsage(db, siblings[0]!, T0 + 5 * MINUTE_MS);
      assert.deepEqual(u, { mailbox: { messages: 25, recipients: 75 }, organization: { messages: 100, recipients: 300 } });
    });

    test('pruning deletes exactly the rows no window reads any more', async () => {
      const db = store.db;
      const s = sender();
      await recordMessage(db, s, 1, T0 + 40 * DAY_MS);
      const count = async () => Number((await db.selectFrom('sending_counters').select((eb) => eb.fn.countAll().as('n')).where('subject_id', 'in', [s.mailboxId, s.orgId]).executeTakeFirstOrThrow()).n);
      assert.equal(await count(), 4);
      await pruneCounters(db, T0 + 40 * DAY_MS + 61 * MINUTE_MS - 1);
      assert.equal(await count(), 4);
      await pruneCounters(db, T0 + 40 * DAY_MS + 61 * MINUTE_MS);
      assert.equal(await count(), 2, 'the minute rows went, the hour rows stay');
      assert.equal((await readSendingUsage(db, s, T0 + 40 * DAY_MS + 2 * HOUR_MS)).mailbox.recipients, 1);
      await pruneCounters(db, T0 + 41 * DAY_MS + HOUR_MS);
      assert.equal(await count(), 0);
    });

    test('a limit\'s event is written once per window, however many services record it', async () => {
      const db = store.db;
      const s = sender();
      const hit = { scope: 'mailbox', limit: 'messagesPerHour', max: 3, count: 3 } as const;
      const wrote = await Promise.all(Array.from({ length: 6 }, (_, i) => recordLimitReached(db, s, hit, T0 + 100 * DAY_MS + i * MINUTE_MS)));
      assert.equal(wrote.filter(Boolean).length, 1);
      assert.equal(await recordLimitReached(db, s, { ...hit, scope: 'organization', max: 5, count: 5 }, T0 + 100 * DAY_MS), true, 'the organization\'s is another event');
      assert.equal(await recordLimitReached(db, s, hit, T0 + 100 * DAY_MS + HOUR_MS), true, 'the next hour is another window');
      const rows = await db.selectFrom('mail_events').selectAll().where('org_id', '=', s.orgId).orderBy('id').execute();
      assert.equal(rows.length, 3);
      assert.deepEqual(JSON.parse(rows[0]!.data), { scope: 'mailbox', limit: 'messagesPerHour', max: 3, count: 3 });
      assert.deepEqual([rows[0]!.mailbox_id, rows[0]!.login, rows[0]!.reseller_id, rows[0]!.event], [s.mailboxId, s.login, 'rsl_1', 'sending_limit_reached']);
    });
  });
}
