import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../main.js';
import { fakeIo } from '../fake-io.js';

const GiB = 1024 ** 3;
const mailbox = { id: 'mbx_1', orgId: 'org_1', kind: 'shared', primaryAddress: 'info@x.example', displayName: 'Info', planId: 'mpl_1', enabled: true, state: 'active' };

test('mailbox create: kind rules, aliases, overrides in exact bytes and forwarding', async () => {
  const io = fakeIo({ api: () => ({ status: 201, body: mailbox, headers: { 'HMC-Request-Id': 'req_1' } }) });
  const code = await main([
    'mailbox', 'create', 'org_1', '--kind', 'shared', '--address', 'info@x.example', '--plan', 'mpl_1', '--alias', 'a@x.example', '--alias', 'b@x.example',
    '--prohibit-send-receive-quota', '2GiB', '--protocols', 'imap,webmail', '--forward-to', 'boss@x.example', '--hidden', '--max-messages-per-hour', '20',
  ], io);
  assert.equal(code, 0, io.errors());
  assert.deepEqual(io.calls[0]!.body, {
    kind: 'shared', planId: 'mpl_1', primaryAddress: 'info@x.example', aliases: ['a@x.example', 'b@x.example'],
    overrides: { prohibitSendReceiveQuota: 2 * GiB, maxMessagesPerHour: 20, protocols: ['imap', 'webmail'] }, hiddenFromAddressBook: true,
    forwarding: { to: 'boss@x.example', mode: 'deliver_and_forward' },
  });
  assert.match(io.output(), /created mailbox mbx_1 \(request req_1\)/);

  for (const argv of [
    ['mailbox', 'create', 'org_1', '--plan', 'mpl_1'], // user mailbox without --user
    ['mailbox', 'create', 'org_1', '--plan', 'mpl_1', '--kind', 'room'], // room without --address
    ['mailbox', 'create', 'org_1', '--plan', 'mpl_1', '--kind', 'boat', '--address', 'a@b.c'],
    ['mailbox', 'create', 'org_1', '--plan', 'mpl_1', '--user', 'usr_1', '--max-send-size', '1.5'],
    ['mailbox', 'update', 'org_1', 'mbx_1'],
    ['mailbox', 'update', 'org_1', 'mbx_1', '--enable', '--disable'],
    ['mailbox', 'update', 'org_1', 'mbx_1', '--forward-mode', 'forward_only'],
  ]) {
    const bad = fakeIo();
    assert.equal(await main(argv, bad), 1, argv.join(' '));
    assert.equal(bad.calls.length, 0, argv.join(' '));
  }
});

test('mailbox update sends only what was given; null clears overrides and forwarding', async () => {
  const io = fakeIo({ api: () => ({ body: mailbox }) });
  assert.equal(await main(['mailbox', 'update', 'org_1', 'mbx_1', '--disable', '--clear-overrides', '--no-forwarding'], io), 0);
  assert.deepEqual(io.calls[0]!.body, { enabled: false, overrides: null, forwarding: null });
});

test('mailbox delete does not wait for the purge and says how to restore', async () => {
  const io = fakeIo({ api: () => ({ status: 202, body: { ...mailbox, state: 'deleted', purgeAfter: '2030-02-01T00:00:00.000Z' }, headers: { 'HMC-Request-Id': 'req_2', 'HMC-Request-State': 'running' } }) });
  assert.equal(await main(['mailbox', 'delete', 'org_1', 'mbx_1'], io), 0);
  assert.equal(io.calls.length, 1, 'no polling of a request that runs until the purge');
  assert.equal(io.calls[0]!.url.searchParams.get('wait'), null);
  assert.match(io.output(), /deleted mailbox mbx_1 \(request req_2\); purged after 2030-02-01T00:00:00.000Z, restorable until then with: hmc mailbox restore org_1 mbx_1/);
});

test('alias remove passes the address as a query; import mailboxes reports rows by primary address', async () => {
  const io = fakeIo({ api: () => ({ body: mailbox }) });
  assert.equal(await main(['mailbox', 'alias', 'remove', 'org_1', 'mbx_1', 'old@x.example'], io), 0);
  assert.equal(io.calls[0]!.method, 'DELETE');
  assert.equal(io.calls[0]!.url.pathname, '/api/v1/organizations/org_1/mailboxes/mbx_1/aliases');
  assert.equal(io.calls[0]!.url.searchParams.get('address'), 'old@x.example');

  const imp = fakeIo({
    stdin: 'primaryAddress,kind,planId\ninfo@x.example,shared,mpl_1\n',
    api: (c) => {
      if (c.method === 'POST') return { status: 202, body: { request: { id: 'req_1', state: 'running', items: 1 } } };
      if (c.url.pathname.endsWith('/items')) return { body: { items: [{ seq: 0, state: 'failed', input: { primaryAddress: 'info@x.example' }, error: { code: 'address_taken', message: 'in use' } }], next: null } };
      return { body: { id: 'req_1', state: 'succeeded', items: { total: 1, done: 1, failed: 1 } } };
    },
  });
  assert.equal(await main(['import', 'mailboxes', 'org_1', '-'], imp), 1);
  assert.equal(imp.calls[0]!.url.pathname, '/api/v1/organizations/org_1/mailboxes/import');
  assert.equal(imp.calls[0]!.headers['content-type'], 'text/csv');
  assert.match(imp.output(), /^ROW +PRIMARY ADDRESS +RESULT +ERROR\n1 +info@x\.example +failed +address_taken: in use\n/);
});

test('export mailboxes streams the CSV to stdout or to --out; a refusal is the usual problem', async () => {
  const csv = 'primaryAddress,kind\r\na@x.example,shared\r\nb@x.example,room\r\n';
  const io = fakeIo({ api: () => ({ body: csv, headers: { 'content-type': 'text/csv' } }) });
  assert.equal(await main(['export', 'mailboxes', 'org_1'], io), 0);
  assert.equal(io.output(), csv);
  assert.equal(io.calls[0]!.url.pathname, '/api/v1/organizations/org_1/mailboxes/export');
  assert.equal(io.calls[0]!.headers.authorization, 'Bearer hmc_test');

  const file = join(mkdtempSync(join(tmpdir(), 'hmc-export-')), 'out.csv');
  const toFile = fakeIo({ api: () => ({ body: csv, headers: { 'content-type': 'text/csv' } }) });
  assert.equal(await main(['export', 'mailboxes', 'org_1', '--out', file], toFile), 0);
  assert.equal(readFileSync(file, 'utf8'), csv);
  assert.equal(toFile.output(), '');
  assert.match(toFile.errors(), /exported 2 rows to /);

  const denied = fakeIo({ api: () => ({ status: 404, body: { title: 'not found', code: 'not_found' } }) });
  assert.equal(await main(['export', 'mailboxes', 'org_9'], denied), 1);
  assert.match(denied.errors(), /code not_found, HTTP 404/);
});

test('auto-reply set: scheduled needs a zoned start and end; messages from files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hmc-ar-'));
  const f = join(dir, 'ext.txt');
  (await import('node:fs')).writeFileSync(f, 'Away until July.\n');
  const io = fakeIo({ api: () => ({ body: { mailboxId: 'mbx_1', mode: 'scheduled' } }) });
  assert.equal(await main([
    'auto-reply', 'set', 'org_1', 'mbx_1', '--mode', 'scheduled', '--start', '2030-07-01T08:00:00+02:00', '--end', '2030-07-15T00:00:00Z',
    '--internal-message', 'Back soon', '--external-message-file', f, '--external-audience', 'known',
  ], io), 0);
  assert.deepEqual(io.calls[0]!.body, {
    mode: 'scheduled', startsAt: '2030-07-01T06:00:00.000Z', endsAt: '2030-07-15T00:00:00.000Z', internalMessage: 'Back soon',
    externalMessage: 'Away until July.\n', externalAudience: 'known',
  });
  for (const argv of [
    ['auto-reply', 'set', 'org_1', 'mbx_1', '--mode', 'scheduled', '--start', '2030-07-01T08:00:00Z'],
    ['auto-reply', 'set', 'org_1', 'mbx_1', '--mode', 'scheduled', '--start', '2030-07-01 08:00', '--end', '2030-07-02T08:00:00Z'],
    ['auto-reply', 'set', 'org_1', 'mbx_1', '--mode', 'on', '--end', '2030-07-02T08:00:00Z'],
    ['auto-reply', 'set', 'org_1', 'mbx_1', '--mode', 'sometimes'],
  ]) {
    const bad = fakeIo();
    assert.equal(await main(argv, bad), 1, argv.join(' '));
    assert.equal(bad.calls.length, 0);
  }
});

test('group members import and groups export use their routes', async () => {
  const io = fakeIo({
    stdin: 'group,member\nsales@x.example,ann@x.example\n',
    api: (c) => {
      if (c.method === 'POST') return { status: 202, body: { request: { id: 'req_1', state: 'succeeded', items: 1 } } };
      if (c.url.pathname.endsWith('/items')) return { body: { items: [{ seq: 0, state: 'succeeded', input: { groupId: 'grp_1', memberId: 'mbx_1' } }], next: null } };
      if (c.url.pathname.endsWith('/groups/export')) return { body: 'name,address\r\n', headers: { 'content-type': 'text/csv' } };
      return { body: { id: 'req_1', state: 'succeeded' } };
    },
  });
  assert.equal(await main(['import', 'group-members', 'org_1', '-'], io), 0, io.errors());
  assert.match(io.output(), /^ROW +GROUP ID +RESULT/);
  assert.equal(await main(['export', 'groups', 'org_1'], io), 0);
  assert.deepEqual(io.calls.filter((c) => !c.url.pathname.startsWith('/api/v1/requests')).map((c) => `${c.method} ${c.url.pathname}`), [
    'POST /api/v1/organizations/org_1/groups/members/import',
    'GET /api/v1/organizations/org_1/groups/export',
  ]);
});
