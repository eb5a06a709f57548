import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../main.js';
import { fakeIo } from '../fake-io.js';

const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

test('server create sends the endpoints and mail root; update maps --pop none to null', async () => {
  const io = fakeIo({ api: (c) => ({ status: c.method === 'POST' ? 201 : 200, body: { id: 'srv_1', ...(c.body as object) }, headers: { 'HMC-Request-Id': 'req_1' } }) });
  assert.equal(await main(['server', 'create', 'mx1', '--lmtp', 'lmtp:10.0.0.5:24', '--imap', '10.0.0.5:143', '--pop', '10.0.0.5:110', '--mail-root', '/srv/mail'], io), 0, io.errors());
  assert.equal(await main(['server', 'update', 'srv_1', '--pop', 'none', '--state', 'draining'], io), 0, io.errors());
  assert.equal(await main(['server', 'delete', 'srv_1'], io), 0, io.errors());
  assert.deepEqual(io.calls.map((c) => [c.method, c.url.pathname, c.body ?? null]), [
    ['POST', '/api/v1/mail-servers', { name: 'mx1', lmtpEndpoint: 'lmtp:10.0.0.5:24', imapEndpoint: '10.0.0.5:143', popEndpoint: '10.0.0.5:110', mailRoot: '/srv/mail' }],
    ['PATCH', '/api/v1/mail-servers/srv_1', { popEndpoint: null, state: 'draining' }],
    ['DELETE', '/api/v1/mail-servers/srv_1', null],
  ]);
  assert.match(io.output(), /created mail server srv_1 \(request req_1\)/);
  assert.match(io.output(), /deleted mail server srv_1 \(request req_1\)/);
});

test('store create sends capacity as exact bytes; update and delete use the server-scoped route', async () => {
  const io = fakeIo({ api: (c) => ({ status: c.method === 'POST' ? 201 : 200, body: { id: 'mst_1', serverId: 'srv_1', ...(c.body as object) } }) });
  assert.equal(await main(['store', 'create', 'srv_1', 'db01', '--capacity', '2TiB', '--purpose', 'public_folder', '--sharing', 'dedicated', '--max-mailboxes', '500'], io), 0, io.errors());
  assert.equal(await main(['store', 'update', 'srv_1', 'mst_1', '--capacity', '1.5GiB', '--max-mailboxes', 'unlimited'], io), 0, io.errors());
  assert.equal(await main(['store', 'show', 'srv_1', 'mst_1'], io), 0, io.errors());
  assert.equal(await main(['store', 'delete', 'srv_1', 'mst_1'], io), 0, io.errors());
  assert.deepEqual(io.calls.map((c) => [c.method, c.url.pathname, c.body ?? null]), [
    ['POST', '/api/v1/mail-servers/srv_1/stores', { name: 'db01', purpose: 'public_folder', sharing: 'dedicated', capacityBytes: 2 * TiB, maxMailboxes: 500 }],
    ['PATCH', '/api/v1/mail-servers/srv_1/stores/mst_1', { capacityBytes: 1.5 * GiB, maxMailboxes: null }],
    ['GET', '/api/v1/mail-servers/srv_1/stores/mst_1', null],
    ['DELETE', '/api/v1/mail-servers/srv_1/stores/mst_1', null],
  ]);
  assert.match(io.output(), /created mailstore mst_1/);
  assert.match(io.output(), /deleted mailstore mst_1/);
});

test('store list filters by server, purpose and state and prints capacity columns', async () => {
  const store = { id: 'mst_1', serverId: 'srv_1', name: 'db01', purpose: 'mailbox', sharing: 'shared', state: 'active', capacityBytes: TiB, allocatedBytes: GiB, freeBytes: TiB - GiB, mailboxCount: 3 };
  const io = fakeIo({ api: () => ({ body: { items: [store], next: null } }) });
  assert.equal(await main(['store', 'list', '--server', 'srv_1', '--purpose', 'mailbox', '--state', 'active'], io), 0, io.errors());
  const url = io.calls[0]!.url;
  assert.equal(url.pathname, '/api/v1/mailstores');
  assert.equal(url.searchParams.get('server'), 'srv_1');
  assert.equal(url.searchParams.get('purpose'), 'mailbox');
  assert.equal(url.searchParams.get('state'), 'active');
  assert.match(io.output(), /^ID +SERVER ID +NAME +PURPOSE +SHARING +STATE +CAPACITY BYTES +ALLOCATED BYTES +FREE BYTES +MAILBOX COUNT\nmst_1 +srv_1 +db01 +mailbox/);
});

test('missing required options, bad choices, bad sizes and empty updates are usage errors before any call', async () => {
  for (const argv of [
    ['server', 'create', 'mx1', '--imap', 'h:143', '--mail-root', '/srv/mail'],
    ['server', 'create', 'mx1', '--lmtp', 'h:24', '--imap', 'h:143', '--mail-root', '/srv/mail', '--state', 'broken'],
    ['server', 'update', 'srv_1'],
    ['store', 'create', 'srv_1', 'db01'],
    ['store', 'create', 'srv_1', 'db01', '--capacity', '10GB'],
    ['store', 'create', 'srv_1', 'db01', '--capacity', '1TiB', '--sharing', 'private'],
    ['store', 'create', 'srv_1', 'db01', '--capacity', '1TiB', '--max-mailboxes', 'many'],
    ['store', 'update', 'srv_1', 'mst_1'],
    ['store', 'list', '--purpose', 'archive'],
  ]) {
    const io = fakeIo();
    assert.equal(await main(argv, io), 1, argv.join(' '));
    assert.equal(io.calls.length, 0, argv.join(' '));
    assert.match(io.errors(), /usage: hmc /, argv.join(' '));
  }
});

test('org allocate sends a total in bytes and STORE_ID=SIZE sources; mailbox move and org move-mailboxes name the target store', async () => {
  const io = fakeIo({ api: (c) => ({ status: 200, body: c.url.pathname.endsWith('/allocation') ? { orgId: 'org_1', mailboxBytes: 16 * TiB, publicFolderBytes: 0, dynamic: false, stores: [] } : { ...(c.body as object) } }) });
  assert.equal(await main(['org', 'allocate', 'org_1', '16TiB', '--source', 'mst_1=10TiB', '--source', 'mst_2=6TiB'], io), 0, io.errors());
  assert.equal(await main(['mailbox', 'move', 'org_1', 'mbx_1', 'mst_2'], io), 0, io.errors());
  assert.equal(await main(['org', 'move-mailboxes', 'org_1', 'mst_2'], io), 0, io.errors());
  assert.deepEqual(io.calls.map((c) => [c.method, c.url.pathname, c.body ?? null]), [
    ['PUT', '/api/v1/organizations/org_1/allocation', { mailboxBytes: 16 * TiB, sources: [{ storeId: 'mst_1', bytes: 10 * TiB }, { storeId: 'mst_2', bytes: 6 * TiB }] }],
    ['POST', '/api/v1/organizations/org_1/mailboxes/mbx_1/move', { storeId: 'mst_2' }],
    ['POST', '/api/v1/organizations/org_1/move-mailboxes', { storeId: 'mst_2' }],
  ]);
  assert.match(io.output(), /allocated organization org_1/);
  const bad = fakeIo({ api: () => ({ status: 200, body: {} }) });
  assert.equal(await main(['org', 'allocate', 'org_1', '1TiB', '--source', 'mst_1'], bad), 1, 'a usage error');
  assert.equal(bad.calls.length, 0);
});

test('org resources prints the allocation and a table of its pieces; store consumers lists organizations', async () => {
  const piece = { storeId: 'mst_1', serverId: 'srv_1', storeName: 'db01', purpose: 'mailbox', sharing: 'shared', state: 'active', bytes: TiB, chargedBytes: GiB, mailboxCount: 1 };
  const io = fakeIo({ api: (c) => ({ body: c.url.pathname.endsWith('/resources')
    ? { orgId: 'org_1', mailboxBytes: TiB, publicFolderBytes: 0, dynamic: false, stores: [piece] }
    : { items: [{ orgId: 'org_1', resellerId: 'rsl_1', bytes: TiB, chargedBytes: GiB, mailboxCount: 1 }], next: null } }) });
  assert.equal(await main(['org', 'resources', 'org_1'], io), 0, io.errors());
  assert.equal(await main(['store', 'consumers', 'mst_1'], io), 0, io.errors());
  assert.match(io.output(), /STORE ID +SERVER ID +STORE NAME .*\nmst_1 +srv_1 +db01 +mailbox/);
  assert.match(io.output(), /ORG ID +RESELLER ID +BYTES +CHARGED BYTES +MAILBOX COUNT\norg_1 +rsl_1/);
});
