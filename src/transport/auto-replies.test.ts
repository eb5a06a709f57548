import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DIALECTS, createTestDatabase } from '../store/testing.js';
import { migrate } from '../store/migrate.js';
import { MIGRATIONS } from '../migrations.js';
import { configFromEnv } from '../core/config.js';
import { claimReply, pruneClaims, releaseClaim } from './auto-replies.js';

const HOUR = 3600_000;
const PERIOD = configFromEnv({}).autoReplyPeriodHours * HOUR;

test('the default period is 4 days (HMC_AUTO_REPLY_PERIOD_HOURS changes it)', () => {
  assert.equal(PERIOD, 4 * 24 * HOUR);
  assert.equal(configFromEnv({ HMC_AUTO_REPLY_PERIOD_HOURS: '24' }).autoReplyPeriodHours, 24);
});

// The end-to-end tests (test/transport-agent.test.ts) show one reply per sender within a period on real
// servers; the period's end needs a clock they cannot move: here, the claim itself against both databases.
for (const dialect of DIALECTS) {
  describe(`auto-reply claims [${dialect}]`, () => {
    test('one reply per mailbox and sender per period, then again; a released claim answers the next message', async () => {
      const tdb = await createTestDatabase(dialect);
      const store = tdb.open();
      try {
        await migrate(store, MIGRATIONS);
        const db = store.db;
        const t0 = 1_700_000_000_000;
        assert.equal(await claimReply(db, 'mbx_a', 'Someone@Remote.example', t0, PERIOD), true, 'first message');
        assert.equal(await claimReply(db, 'mbx_a', 'someone@remote.example', t0 + HOUR, PERIOD), false, 'same sender, any case, within the period');
        assert.equal(await claimReply(db, 'mbx_a', 'someone@remote.example', t0 + PERIOD - 1, PERIOD), false, 'one ms before the period ends');
        assert.equal(await claimReply(db, 'mbx_b', 'someone@remote.example', t0 + HOUR, PERIOD), true, 'another mailbox answers on its own');
        assert.equal(await claimReply(db, 'mbx_a', 'other@remote.example', t0 + HOUR, PERIOD), true, 'another sender');
        assert.equal(await claimReply(db, 'mbx_a', 'someone@remote.example', t0 + PERIOD, PERIOD), true, 'the period is over: answered again');
        assert.equal(await claimReply(db, 'mbx_a', 'someone@remote.example', t0 + PERIOD + HOUR, PERIOD), false, 'and the new period counts from that reply');

        // a reply that could not be sent gives its claim back
        const t1 = t0 + 3 * PERIOD;
        assert.equal(await claimReply(db, 'mbx_c', 'x@remote.example', t1, PERIOD), true);
        await releaseClaim(db, 'mbx_c', 'X@remote.example', t1);
        assert.equal(await claimReply(db, 'mbx_c', 'x@remote.example', t1 + 1, PERIOD), true, 'released: the next message is answered');

        // two messages at the same moment: one claim
        const both = await Promise.all([claimReply(db, 'mbx_d', 'y@remote.example', t1, PERIOD), claimReply(db, 'mbx_d', 'y@remote.example', t1, PERIOD)]);
        assert.deepEqual(both.sort(), [false, true]);

        // pruning forgets only what decides nothing any more
        await pruneClaims(db, t1 + PERIOD, PERIOD);
        const left = await db.selectFrom('auto_reply_log').select(['mailbox_id', 'sender']).orderBy('mailbox_id').execute();
        assert.deepEqual(left.map((r) => r.mailbox_id), ['mbx_c', 'mbx_d']);
      } finally {
        await store.close();
        await tdb.destroy();
      }
    });
  });
}
