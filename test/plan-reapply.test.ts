import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { DIALECTS } from '../src/store/testing.js';
import { openStore } from '../src/store/db.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, GiB } from './mail-support.js';
import { Child, freePort, killAllChildren, sleep } from './crash/harness.js';

/**
 * Issue 3: editing a mailbox plan with 5,000 mailboxes on it re-applies it as one batch request; the
 * serving process is SIGKILLed while the batch runs, restarted, and finishes it — every mailbox updated
 * exactly once (one succeeded re-apply in the audit log per mailbox, every mailbox at the new version).
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

const MAILBOXES = 5000;

for (const dialect of DIALECTS) {
  describe(`mailbox plan re-apply survives a crash [${dialect}]`, () => {
    let t: TestPlatform | undefined;
    after(async () => {
      await killAllChildren();
      await t?.tdb.destroy();
    });

    test(`${MAILBOXES} mailboxes, SIGKILL mid-batch, restart: each updated exactly once`, async () => {
      t = await startTestPlatform(dialect, { workers: 1 });
      const m = await setupMailOrg(t, 'reapply', { storageBytes: 20_000 * GiB, mailboxPlan: { issueWarningQuota: 1000, prohibitSendQuota: 2000, prohibitSendReceiveQuota: 3000 } });
      // setup through the API: one import (a batch request of mailbox creations)
      const items = Array.from({ length: MAILBOXES }, (_, i) => ({ kind: 'shared', primaryAddress: `box${i}@${m.domainName}`, planId: m.mailboxPlanId }));
      const imported = await t.ok('POST', `${m.orgUrl}/mailboxes/import`, { items });
      const setup = await t.settle(imported.request.id, 240_000);
      assert.deepEqual(setup.items, { total: MAILBOXES, done: MAILBOXES, failed: 0 });
      await t.platform.close();

      const port = await freePort();
      const env = {
        HMC_DATA_DIR: t.config.dataDir, HMC_DATABASE_URL: t.config.databaseUrl ?? '', HMC_HOST: '127.0.0.1', HMC_PORT: String(port),
        HMC_FILES_ROOT: t.config.filesRoot, HMC_JOB_LEASE_MS: '2000', HMC_LOG_LEVEL: 'warn', HMC_WORKERS: '1',
      };
      const base = `http://127.0.0.1:${port}`;
      const api = async (method: string, path: string, body?: unknown) => {
        const r = await fetch(base + path, {
          method, headers: { authorization: `Bearer ${t!.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
        const text = await r.text();
        if (r.status >= 300) throw new Error(`${method} ${path} -> ${r.status} ${text}\n${server?.logTail() ?? ''}`);
        return JSON.parse(text);
      };

      let server: Child | undefined = await Child.start('serve#0', 'serve', env);
      const edited = await api('PATCH', `/api/v1/plans/mailbox/${m.mailboxPlanId}`, { issueWarningQuota: 1500, prohibitSendQuota: 2500, prohibitSendReceiveQuota: 3500, maxMessagesPerHour: 42 });
      assert.equal(edited.version, 2);
      const batchId = edited.reapplyRequestId as string;
      assert.match(batchId, /^req_/);

      // kill as soon as part of the batch is committed
      const deadline = Date.now() + 60_000;
      let doneAtKill = 0;
      for (;;) {
        const r = await api('GET', `/api/v1/requests/${batchId}`);
        if (r.items.done > 0) {
          await server.kill();
          doneAtKill = r.items.done;
          break;
        }
        assert.ok(Date.now() < deadline, 'the batch never started');
        await sleep(5);
      }
      const store = openStore(dialect === 'sqlite' ? { sqlitePath: `${t.config.dataDir}/hmc.db` } : { url: t.config.databaseUrl! }, { poolSize: 1 });
      try {
        const mid = await store.db.selectFrom('request_items').select((eb) => eb.fn.countAll().as('n')).where('request_id', '=', batchId).where('state', '=', 'pending').executeTakeFirstOrThrow();
        assert.ok(Number(mid.n) > 0, `the kill came after the batch had finished (${doneAtKill} done when killed)`);

        server = await Child.start('serve#1', 'serve', env);
        const end = Date.now() + 240_000;
        let final: any;
        for (;;) {
          final = await api('GET', `/api/v1/requests/${batchId}`);
          if (final.state === 'succeeded' || final.state === 'failed') break;
          assert.ok(Date.now() < end, `the batch did not finish: ${JSON.stringify(final)}`);
          await sleep(50);
        }
        assert.equal(final.state, 'succeeded', JSON.stringify(final));
        assert.deepEqual(final.items, { total: MAILBOXES, done: MAILBOXES, failed: 0 });

        const boxes = await store.db.selectFrom('mailboxes').select(['id', 'plan_version', 'prohibit_send_receive_quota', 'charged_bytes', 'max_messages_per_hour']).where('org_id', '=', m.org.id).execute();
        assert.equal(boxes.length, MAILBOXES);
        assert.ok(boxes.every((b) => Number(b.plan_version) === 2 && Number(b.prohibit_send_receive_quota) === 3500 && Number(b.charged_bytes) === 3500 && Number(b.max_messages_per_hour) === 42), 'every mailbox has the new plan');
        // exactly once: one succeeded re-apply per mailbox in the audit log, and no item skipped a mailbox as already done
        const audits = await store.db.selectFrom('audit_log').select(['target_id']).where('request_id', '=', batchId).where('outcome', '=', 'succeeded')
          .where('target_type', '=', 'mailbox').execute();
        const per = new Map<string, number>();
        for (const a of audits) per.set(a.target_id as string, (per.get(a.target_id as string) ?? 0) + 1);
        assert.equal(per.size, MAILBOXES, 'every mailbox was re-applied');
        assert.ok([...per.values()].every((n) => n === 1), 'no mailbox was re-applied twice');
        const sub = await api('GET', `/api/v1/organizations/${m.org.id}/subscription`);
        assert.equal(sub.usage.mailboxBytes, MAILBOXES * 3500, 'the organization is charged the new quota once per mailbox');
      } finally {
        await server.kill();
        await store.close();
      }
    });
  });
}
