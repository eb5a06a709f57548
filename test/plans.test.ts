import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { GiB, PiB, setupMailOrg, TiB, ensureStores } from './mail-support.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

for (const dialect of DIALECTS) {
  describe(`plans [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => {
      t = await startTestPlatform(dialect);
      await ensureStores(t);
    });
    after(async () => { await t?.close(); });

    const problem = (r: any) => ({ status: r.statusCode, code: r.json().code, type: String(r.headers['content-type']) });

    /** A reseller with a provider ceiling plan and one organization. */
    async function reseller(name: string, ceiling: Record<string, unknown> = {}) {
      const tn = await t.tenant(name);
      const plan = await t.ok('POST', '/api/v1/plans/organization', {
        name: `${name}-ceiling`, storageBytes: 8 * PiB, maxMailboxes: 1000, maxMailboxBytes: 50 * GiB, publicFolderBytes: TiB,
        features: { publicFolders: true, protocols: ['imap', 'submission', 'webmail'] }, ...ceiling,
      });
      await t.ok('PUT', `/api/v1/resellers/${tn.reseller.id}/plan`, { orgPlanId: plan.id });
      return { ...tn, ceiling: plan };
    }

    test('a reseller defines plans only within its own plan', async () => {
      const bare = await t.tenant('noceiling');
      let r = await t.call('POST', '/api/v1/plans/organization', { token: bare.resellerAdmin, body: { name: 'basic', storageBytes: GiB } });
      assert.deepEqual(problem(r), { status: 409, code: 'no_reseller_plan', type: 'application/problem+json; charset=utf-8' });

      const a = await reseller('ceil');
      r = await t.call('POST', '/api/v1/plans/organization', { token: a.resellerAdmin, body: { name: 'big', storageBytes: 8 * PiB, maxMailboxes: 1001 } });
      assert.equal(r.statusCode, 422, r.body);
      assert.equal(r.json().code, 'reseller_plan_exceeded');
      assert.match(r.json().detail, /maxMailboxes 1001 > 1000/);
      for (const body of [
        { name: 'unl', storageBytes: GiB, maxMailboxes: null }, // unlimited mailboxes under a ceiling of 1000
        { name: 'dyn', storageBytes: null, dynamicStorage: true, maxMailboxes: 10 },
        { name: 'feat', storageBytes: GiB, maxMailboxes: 10, features: { mobility: true } },
        { name: 'proto', storageBytes: GiB, maxMailboxes: 10, features: { protocols: ['pop3'] } },
      ]) {
        const x = await t.call('POST', '/api/v1/plans/organization', { token: a.resellerAdmin, body: body as any });
        assert.equal(x.statusCode, 422, `${body.name}: ${x.body}`);
        assert.equal(x.json().code, 'reseller_plan_exceeded');
      }
      const okPlan = await t.ok('POST', '/api/v1/plans/organization', { name: 'fits', storageBytes: 2 * TiB, maxMailboxes: 1000, maxMailboxBytes: GiB, features: { protocols: ['imap'] } }, a.resellerAdmin);
      assert.equal(okPlan.owner, a.reseller.id);
      assert.equal(okPlan.storageBytes, 2 * TiB);

      r = await t.call('POST', '/api/v1/plans/mailbox', { token: a.resellerAdmin, body: { name: 'huge', issueWarningQuota: GiB, prohibitSendQuota: GiB, prohibitSendReceiveQuota: 51 * GiB } });
      assert.equal(r.json().code, 'reseller_plan_exceeded', r.body);
      r = await t.call('POST', '/api/v1/plans/mailbox', { token: a.resellerAdmin, body: { name: 'pop', issueWarningQuota: 1, prohibitSendQuota: 2, prohibitSendReceiveQuota: 3, protocols: ['pop3'] } });
      assert.equal(r.json().code, 'reseller_plan_exceeded', r.body);
    });

    test('mailbox plan quotas must be in Exchange order', async () => {
      const a = await reseller('order');
      for (const q of [[3, 2, 4], [1, 5, 4], [5, 5, 4]]) {
        const r = await t.call('POST', '/api/v1/plans/mailbox', { token: a.resellerAdmin, body: { name: `o${q.join('')}`, issueWarningQuota: q[0], prohibitSendQuota: q[1], prohibitSendReceiveQuota: q[2] } });
        assert.equal(r.statusCode, 400, r.body);
        assert.equal(r.json().code, 'QUOTA_ORDER');
      }
      const p = await t.ok('POST', '/api/v1/plans/mailbox', { name: 'ok', issueWarningQuota: 4, prohibitSendQuota: 4, prohibitSendReceiveQuota: 4 }, a.resellerAdmin);
      const r = await t.call('PATCH', `/api/v1/plans/mailbox/${p.id}`, { token: a.resellerAdmin, body: { prohibitSendQuota: 5 } });
      assert.equal(r.json().code, 'QUOTA_ORDER', r.body);
      assert.equal((await t.ok('GET', `/api/v1/plans/mailbox/${p.id}`)).version, 1, 'a refused edit changes nothing');
    });

    test('seed RU6: an organization allocated 2 TiB, then 16 TiB, then 8 PiB reads back exactly', async () => {
      const a = await reseller('alloc');
      const plan = await t.ok('POST', '/api/v1/plans/organization', { name: 'sized', storageBytes: 2 * TiB }, a.resellerAdmin);
      const url = `/api/v1/organizations/${a.org.id}/subscription`;
      let s = await t.ok('PUT', url, { orgPlanId: plan.id }, a.resellerAdmin);
      assert.equal(s.allocation.mailboxBytes, 2 * TiB);
      assert.equal(s.allocation.mailboxBytes, 2_199_023_255_552);
      for (const bytes of [16 * TiB, 8 * PiB]) {
        s = await t.ok('PUT', url, { orgPlanId: plan.id, storageBytes: bytes }, a.resellerAdmin);
        assert.equal(s.allocation.mailboxBytes, bytes);
        const read = await t.ok('GET', url, undefined, a.orgAdmin);
        assert.equal(read.allocation.mailboxBytes, bytes);
        assert.equal(read.storageOverride, bytes);
      }
      assert.equal(s.allocation.mailboxBytes, 9_007_199_254_740_992, '8 PiB = 2^53 bytes exactly');
      // and through the plan itself
      const edited = await t.ok('PATCH', `/api/v1/plans/organization/${plan.id}`, { storageBytes: 16 * TiB }, a.resellerAdmin);
      assert.equal(edited.storageBytes, 17_592_186_044_416);
      assert.equal(edited.version, 2);
      const tooBig = await t.call('PUT', url, { token: a.resellerAdmin, body: { orgPlanId: plan.id, storageBytes: 8 * PiB + 2 } });
      assert.equal(tooBig.statusCode, 400, tooBig.body);
      const overCeiling = await t.call('PUT', url, { token: a.resellerAdmin, body: { orgPlanId: plan.id, storageBytes: 8 * PiB - 2 } });
      assert.equal(overCeiling.statusCode, 200, overCeiling.body);
      const events = await t.ok('GET', `/api/v1/events?limit=100`);
      const mine = events.items.filter((e: any) => e.orgId === a.org.id && e.event === 'plan_changed');
      assert.ok(mine.length >= 3, `plan changes are billing events: ${JSON.stringify(mine)}`);
    });

    test('plans of another reseller are invisible; provider plans only where they are offered', async () => {
      const a = await reseller('visa');
      const b = await reseller('visb');
      const bPlan = await t.ok('POST', '/api/v1/plans/mailbox', { name: 'bplan', issueWarningQuota: 1, prohibitSendQuota: 1, prohibitSendReceiveQuota: 1 }, b.resellerAdmin);
      for (const token of [a.resellerAdmin, a.orgAdmin]) {
        assert.equal((await t.call('GET', `/api/v1/plans/mailbox/${bPlan.id}`, { token })).statusCode, 404);
        assert.equal((await t.call('GET', `/api/v1/plans/organization/${b.ceiling.id}`, { token })).statusCode, 404);
        assert.equal((await t.call('PATCH', `/api/v1/plans/mailbox/${bPlan.id}`, { token, body: { displayName: 'x' } })).statusCode, 404);
      }
      const listed = await t.ok('GET', '/api/v1/plans/organization', undefined, a.resellerAdmin);
      assert.deepEqual(listed.items.map((p: any) => p.id), [a.ceiling.id], 'a reseller sees its own ceiling plan and nothing of B');
      // a reseller cannot offer B's plan to its organization, nor edit the provider's ceiling plan
      assert.equal((await t.call('PUT', `/api/v1/organizations/${a.org.id}/available-plans/${bPlan.id}`, { token: a.resellerAdmin })).statusCode, 404);
      const edit = await t.call('PATCH', `/api/v1/plans/organization/${a.ceiling.id}`, { token: a.resellerAdmin, body: { maxMailboxes: 5000 } });
      assert.equal(edit.statusCode, 403, edit.body);
      // the organization sees only its subscription plan and its available mailbox plans
      const orgPlan = await t.ok('POST', '/api/v1/plans/organization', { name: 'small', storageBytes: GiB, maxMailboxes: 5 }, a.resellerAdmin);
      const mbxPlan = await t.ok('POST', '/api/v1/plans/mailbox', { name: 'std', issueWarningQuota: 1, prohibitSendQuota: 1, prohibitSendReceiveQuota: 1 }, a.resellerAdmin);
      await t.ok('PUT', `/api/v1/organizations/${a.org.id}/subscription`, { orgPlanId: orgPlan.id }, a.resellerAdmin);
      assert.deepEqual((await t.ok('GET', '/api/v1/plans/mailbox', undefined, a.orgAdmin)).items, []);
      await t.ok('PUT', `/api/v1/organizations/${a.org.id}/available-plans/${mbxPlan.id}`, undefined, a.resellerAdmin);
      assert.deepEqual((await t.ok('GET', '/api/v1/plans/mailbox', undefined, a.orgAdmin)).items.map((p: any) => p.id), [mbxPlan.id]);
      assert.deepEqual((await t.ok('GET', '/api/v1/plans/organization', undefined, a.orgAdmin)).items.map((p: any) => p.id), [orgPlan.id]);
      assert.deepEqual((await t.ok('GET', `/api/v1/organizations/${a.org.id}/available-plans`, undefined, a.orgAdmin)).items.map((p: any) => p.planId), [mbxPlan.id]);
      // org admins read plans but do not change them
      assert.equal((await t.call('PATCH', `/api/v1/plans/mailbox/${mbxPlan.id}`, { token: a.orgAdmin, body: { displayName: 'x' } })).statusCode, 403);
      // a plan in use cannot be deleted
      const del = await t.call('DELETE', `/api/v1/plans/organization/${orgPlan.id}`, { token: a.resellerAdmin });
      assert.equal(del.json().code, 'plan_in_use', del.body);
    });

    test('an organization plan change reaches its mailboxes: protocols narrowed, oversized mailboxes reported per item', async () => {
      const m = await setupMailOrg(t, 'resettle', { features: { protocols: ['imap', 'pop3', 'submission', 'webmail'] } });
      const box = await t.ok('POST', `${m.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `desk@${m.domainName}`, planId: m.mailboxPlanId }, m.orgAdmin);
      assert.deepEqual(box.protocols, ['imap', 'pop3', 'submission', 'webmail'], 'mailbox plan protocols ∩ organization plan protocols');
      const edited = await t.ok('PATCH', `/api/v1/plans/organization/${m.orgPlanId}`, { features: { protocols: ['imap'] } }, m.resellerAdmin);
      assert.equal(edited.resettleRequestIds.length, 1);
      const done = await t.settle(edited.resettleRequestIds[0]);
      assert.equal(done.state, 'succeeded');
      assert.deepEqual((await t.ok('GET', `${m.orgUrl}/mailboxes/${box.id}`, undefined, m.orgAdmin)).protocols, ['imap']);
      // a new plan whose largest mailbox is smaller: the subscription changes, the mailbox that no longer fits is an item failure
      const small = await t.ok('POST', '/api/v1/plans/organization', { name: 'resettle-small', storageBytes: 100 * GiB, maxMailboxBytes: GiB / 2 }, m.resellerAdmin);
      const sub = await t.ok('PUT', `${m.orgUrl}/subscription`, { orgPlanId: small.id }, m.resellerAdmin);
      assert.equal(sub.orgPlanId, small.id);
      const r = await t.settle(sub.resettleRequestIds[0]);
      assert.deepEqual(r.items, { total: 1, done: 1, failed: 1 });
      const items = await t.ok('GET', `/api/v1/requests/${sub.resettleRequestIds[0]}/items`);
      assert.equal(items.items[0].error.code, 'PLAN_LIMIT');
      assert.equal((await t.ok('GET', `${m.orgUrl}/mailboxes/${box.id}`, undefined, m.orgAdmin)).quotas.prohibitSendReceiveQuota, GiB, 'the mailbox stays as it was');
    });

    test('sending limits: sane defaults, 400 on bad values, within the reseller\'s plan, per-mailbox overrides, an edit reaches the mailboxes', async () => {
      const a = await reseller('rates', { maxMessagesPerHour: 20_000, maxRecipientsPerDay: 60_000 });
      // a plan that says nothing gets the documented defaults (an organization plan: capped by the reseller's own)
      const orgPlan = await t.ok('POST', '/api/v1/plans/organization', { name: 'rates-org', storageBytes: 100 * GiB }, a.resellerAdmin);
      assert.deepEqual([orgPlan.maxMessagesPerHour, orgPlan.maxRecipientsPerDay], [10_000, 50_000]);
      const tight = await t.ok('POST', '/api/v1/plans/organization', { name: 'rates-tight', storageBytes: GiB, maxMessagesPerHour: 20_000, maxRecipientsPerDay: 60_000 }, a.resellerAdmin);
      assert.deepEqual([tight.maxMessagesPerHour, tight.maxRecipientsPerDay], [20_000, 60_000]);
      let r = await t.call('POST', '/api/v1/plans/organization', { token: a.resellerAdmin, body: { name: 'rates-big', storageBytes: GiB, maxMessagesPerHour: 20_001 } });
      assert.equal(r.statusCode, 422, r.body);
      assert.equal(r.json().code, 'reseller_plan_exceeded');
      assert.match(r.json().detail, /maxMessagesPerHour 20001 > 20000/);
      const capped = await reseller('rates-low', { maxMessagesPerHour: 300, maxRecipientsPerDay: 1_000 });
      const low = await t.ok('POST', '/api/v1/plans/organization', { name: 'rates-low-org', storageBytes: GiB }, capped.resellerAdmin);
      assert.deepEqual([low.maxMessagesPerHour, low.maxRecipientsPerDay], [300, 1_000], 'a default above the reseller\'s own plan starts at its ceiling');
      const mbxPlan = await t.ok('POST', '/api/v1/plans/mailbox', { name: 'rates-mbx', issueWarningQuota: 1, prohibitSendQuota: 2, prohibitSendReceiveQuota: GiB }, a.resellerAdmin);
      assert.deepEqual([mbxPlan.maxMessagesPerHour, mbxPlan.maxRecipientsPerDay], [500, 2_000]);
      // bad values: problem+json 400, nothing changes
      for (const [url, body] of [
        ['/api/v1/plans/organization', { name: 'bad1', storageBytes: GiB, maxMessagesPerHour: 0 }],
        ['/api/v1/plans/organization', { name: 'bad2', storageBytes: GiB, maxRecipientsPerDay: null }],
        ['/api/v1/plans/organization', { name: 'bad3', storageBytes: GiB, maxRecipientsPerDay: 1.5 }],
        ['/api/v1/plans/mailbox', { name: 'bad4', issueWarningQuota: 1, prohibitSendQuota: 2, prohibitSendReceiveQuota: 3, maxMessagesPerHour: -1 }],
        ['/api/v1/plans/mailbox', { name: 'bad5', issueWarningQuota: 1, prohibitSendQuota: 2, prohibitSendReceiveQuota: 3, maxRecipientsPerDay: '100' }],
        ['/api/v1/plans/mailbox', { name: 'bad6', issueWarningQuota: 1, prohibitSendQuota: 2, prohibitSendReceiveQuota: 3, maxMessagesPerHour: 1_000_001 }],
      ] as const) {
        const x = await t.call('POST', url, { token: a.resellerAdmin, body: body as any });
        assert.equal(x.statusCode, 400, `${body.name}: ${x.body}`);
        assert.ok(String(x.headers['content-type']).startsWith('application/problem+json'), x.body);
      }
      r = await t.call('PATCH', `/api/v1/plans/mailbox/${mbxPlan.id}`, { token: a.resellerAdmin, body: { maxRecipientsPerDay: 0 } });
      assert.equal(r.statusCode, 400, r.body);
      // plan → mailbox columns, overrides on top; an edit of the plan is re-applied to its mailboxes, overrides kept
      const url = `/api/v1/organizations/${a.org.id}`;
      await t.ok('PUT', `${url}/subscription`, { orgPlanId: orgPlan.id }, a.resellerAdmin);
      await t.ok('PUT', `${url}/available-plans/${mbxPlan.id}`, undefined, a.resellerAdmin);
      await t.ok('PUT', `${url}/domains/${a.domain.id}/accepted`, { type: 'authoritative' }, a.orgAdmin);
      const plain = await t.ok('POST', `${url}/mailboxes?wait=true`, { kind: 'shared', primaryAddress: `plain@${a.domain.name}`, planId: mbxPlan.id }, a.orgAdmin);
      const own = await t.ok('POST', `${url}/mailboxes?wait=true`, { kind: 'shared', primaryAddress: `own@${a.domain.name}`, planId: mbxPlan.id, overrides: { maxMessagesPerHour: 7 } }, a.orgAdmin);
      assert.deepEqual([plain.quotas.maxMessagesPerHour, plain.quotas.maxRecipientsPerDay], [500, 2_000]);
      assert.deepEqual([own.quotas.maxMessagesPerHour, own.quotas.maxRecipientsPerDay], [7, 2_000]);
      r = await t.call('PATCH', `${url}/mailboxes/${own.id}`, { token: a.orgAdmin, body: { overrides: { maxRecipientsPerDay: 0 } } });
      assert.equal(r.statusCode, 400, r.body);
      const edited = await t.ok('PATCH', `/api/v1/plans/mailbox/${mbxPlan.id}`, { maxMessagesPerHour: 50, maxRecipientsPerDay: 400 }, a.resellerAdmin);
      assert.deepEqual([edited.maxMessagesPerHour, edited.maxRecipientsPerDay, edited.version], [50, 400, 2]);
      assert.equal((await t.settle(edited.reapplyRequestId)).state, 'succeeded');
      const after1 = await t.ok('GET', `${url}/mailboxes/${plain.id}`, undefined, a.orgAdmin);
      const after2 = await t.ok('GET', `${url}/mailboxes/${own.id}`, undefined, a.orgAdmin);
      assert.deepEqual([after1.quotas.maxMessagesPerHour, after1.quotas.maxRecipientsPerDay], [50, 400]);
      assert.deepEqual([after2.quotas.maxMessagesPerHour, after2.quotas.maxRecipientsPerDay], [7, 400], 'the override stays');
      const updated = await t.ok('PATCH', `/api/v1/plans/organization/${orgPlan.id}`, { maxRecipientsPerDay: 123 }, a.resellerAdmin);
      assert.deepEqual([updated.maxMessagesPerHour, updated.maxRecipientsPerDay], [10_000, 123]);
    });

    test('an available mailbox plan must fit the organization plan\'s largest mailbox', async () => {
      const a = await reseller('fit');
      const orgPlan = await t.ok('POST', '/api/v1/plans/organization', { name: 'capped', storageBytes: 10 * GiB, maxMailboxBytes: GiB }, a.resellerAdmin);
      const big = await t.ok('POST', '/api/v1/plans/mailbox', { name: 'big', issueWarningQuota: GiB, prohibitSendQuota: GiB, prohibitSendReceiveQuota: 2 * GiB }, a.resellerAdmin);
      const url = `/api/v1/organizations/${a.org.id}`;
      let r = await t.call('PUT', `${url}/available-plans/${big.id}`, { token: a.resellerAdmin });
      assert.equal(r.json().code, 'not_subscribed', r.body);
      await t.ok('PUT', `${url}/subscription`, { orgPlanId: orgPlan.id }, a.resellerAdmin);
      r = await t.call('PUT', `${url}/available-plans/${big.id}`, { token: a.resellerAdmin });
      assert.equal(r.statusCode, 422, r.body);
      assert.equal(r.json().code, 'PLAN_LIMIT');
    });
  });
}
