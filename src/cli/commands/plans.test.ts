import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../main.js';
import { fakeIo } from '../fake-io.js';

const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

test('plan org create sends sizes as exact bytes, limits, features and protocols', async () => {
  const io = fakeIo({ api: (c) => ({ status: 201, body: { id: 'opl_1', name: 'gold', ...(c.body as object) }, headers: { 'HMC-Request-Id': 'req_1' } }) });
  const code = await main([
    'plan', 'org', 'create', 'gold', '--reseller', 'rsl_1', '--max-mailboxes', '50', '--max-domains', 'unlimited', '--storage', '2TiB',
    '--max-mailbox-size', '50GiB', '--public-folder-storage', '8PiB', '--feature', 'publicFolders', '--no-feature', 'mobility',
    '--protocols', 'imap,webmail', '--placement', 'level', '--max-messages-per-hour', '2000', '--max-recipients-per-day', '9000',
  ], io);
  assert.equal(code, 0, io.errors());
  const call = io.calls[0]!;
  assert.equal(call.method, 'POST');
  assert.equal(call.url.pathname, '/api/v1/plans/organization');
  assert.deepEqual(call.body, {
    name: 'gold', resellerId: 'rsl_1', placement: 'level', maxMailboxes: 50, maxDomains: null, storageBytes: 2 * TiB, maxMailboxBytes: 50 * GiB,
    publicFolderBytes: 2 ** 53, maxMessagesPerHour: 2000, maxRecipientsPerDay: 9000, features: { publicFolders: true, mobility: false, protocols: ['imap', 'webmail'] },
  });
  assert.match(io.output(), /created organization plan opl_1 \(request req_1\)/);
});

test('bad sizes, unknown features and empty updates are usage errors before any call', async () => {
  for (const argv of [
    ['plan', 'org', 'create', 'x', '--storage', '1.5'],
    ['plan', 'org', 'create', 'x', '--storage', '10GB'],
    ['plan', 'org', 'create', 'x', '--feature', 'teleport'],
    ['plan', 'org', 'update', 'opl_1'],
    ['plan', 'mailbox', 'create', 'x', '--issue-warning-quota', '1GiB', '--prohibit-send-quota', '2GiB'],
    ['plan', 'mailbox', 'update', 'mpl_1', '--protocols', 'imap,gopher'],
    ['plan', 'mailbox', 'update', 'mpl_1', '--hidden', '--visible'],
    ['plan', 'mailbox', 'update', 'mpl_1', '--max-messages-per-hour', '0'],
    ['plan', 'org', 'update', 'opl_1', '--max-recipients-per-day', 'lots'],
    ['org', 'subscribe', 'org_1', 'opl_1', '--storage', '0.1KiB'],
  ]) {
    const io = fakeIo();
    assert.equal(await main(argv, io), 1, argv.join(' '));
    assert.equal(io.calls.length, 0, argv.join(' '));
    assert.match(io.errors(), /usage: hmc /, argv.join(' '));
  }
});

test('plan mailbox update prints the re-apply batch request; --json keeps stdout one JSON answer', async () => {
  const plan = { id: 'mpl_1', name: 'std', prohibitSendReceiveQuota: 2 * GiB, version: 2, reapplyRequestId: 'req_batch' };
  for (const json of [false, true]) {
    const io = fakeIo({ api: () => ({ body: plan, headers: { 'HMC-Request-Id': 'req_1', 'HMC-Request-State': 'succeeded' } }) });
    assert.equal(await main(['plan', 'mailbox', 'update', 'mpl_1', '--prohibit-send-receive-quota', '2GiB', '--visible', ...(json ? ['--json'] : [])], io), 0);
    assert.equal(io.calls[0]!.method, 'PATCH');
    assert.deepEqual(io.calls[0]!.body, { prohibitSendReceiveQuota: 2 * GiB, hiddenFromAddressBook: false });
    if (json) {
      assert.deepEqual(JSON.parse(io.output()), plan);
      assert.match(io.errors(), /re-applying to its mailboxes: request req_batch/);
    } else {
      assert.match(io.output(), /updated mailbox plan mpl_1 \(request req_1\)\nre-applying to its mailboxes: request req_batch \(follow with: hmc request show req_batch\)\n$/);
    }
  }
  // no mailboxes on the plan: no batch, no line
  const io = fakeIo({ api: () => ({ body: { ...plan, reapplyRequestId: null } }) });
  assert.equal(await main(['plan', 'mailbox', 'update', 'mpl_1', '--recipient-limit', '500', '--max-messages-per-hour', '60', '--max-recipients-per-day', '300'], io), 0);
  assert.deepEqual(io.calls[0]!.body, { recipientLimit: 500, maxMessagesPerHour: 60, maxRecipientsPerDay: 300 });
  assert.doesNotMatch(io.output(), /re-applying/);
});

test('subscription, reseller plan and available plans use their routes', async () => {
  const io = fakeIo({ api: (c) => ({ body: c.method === 'GET' ? { items: [{ planId: 'mpl_1', name: 'std' }], next: null } : {} }) });
  assert.equal(await main(['org', 'subscribe', 'org_1', 'opl_1', '--storage', '16TiB'], io), 0);
  assert.equal(await main(['org', 'subscribe', 'org_1', 'opl_2', '--storage', 'plan'], io), 0);
  assert.equal(await main(['reseller', 'set-plan', 'rsl_1', 'opl_9'], io), 0);
  assert.equal(await main(['org', 'plans', 'add', 'org_1', 'mpl_1'], io), 0);
  assert.equal(await main(['org', 'plans', 'remove', 'org_1', 'mpl_1'], io), 0);
  assert.equal(await main(['org', 'plans', 'list', 'org_1'], io), 0);
  assert.deepEqual(io.calls.map((c) => [c.method, c.url.pathname, c.body ?? null]), [
    ['PUT', '/api/v1/organizations/org_1/subscription', { orgPlanId: 'opl_1', storageBytes: 16 * TiB }],
    ['PUT', '/api/v1/organizations/org_1/subscription', { orgPlanId: 'opl_2', storageBytes: null }],
    ['PUT', '/api/v1/resellers/rsl_1/plan', { orgPlanId: 'opl_9' }],
    ['PUT', '/api/v1/organizations/org_1/available-plans/mpl_1', null],
    ['DELETE', '/api/v1/organizations/org_1/available-plans/mpl_1', null],
    ['GET', '/api/v1/organizations/org_1/available-plans', null],
  ]);
  assert.match(io.output(), /PLAN ID +NAME\nmpl_1 +std\n/);
});
