import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from './main.js';
import { fakeIo, type FakeCall } from './fake-io.js';

const reseller = { id: 'rsl_1', name: 'acme', displayName: 'Acme', state: 'active', createdAt: '2030-01-01T00:00:00.000Z' };

test('a create sends ?wait=true and prints the object and the request id', async () => {
  const io = fakeIo({ api: () => ({ status: 201, body: reseller, headers: { 'HMC-Request-Id': 'req_9', 'HMC-Request-State': 'succeeded' } }) });
  const code = await main(['reseller', 'create', 'acme', '--display-name', 'Acme'], io);
  assert.equal(code, 0);
  const call = io.calls[0]!;
  assert.equal(call.method, 'POST');
  assert.equal(call.url.pathname, '/api/v1/resellers');
  assert.equal(call.url.searchParams.get('wait'), 'true');
  assert.deepEqual(call.body, { name: 'acme', displayName: 'Acme' });
  assert.match(io.output(), /^id: +rsl_1$/m);
  assert.match(io.output(), /created reseller rsl_1 \(request req_9\)\n$/);
});

test('--json prints exactly the answer', async () => {
  const io = fakeIo({ api: () => ({ status: 201, body: reseller, headers: { 'HMC-Request-Id': 'req_9' } }) });
  assert.equal(await main(['reseller', 'create', 'acme', '--json'], io), 0);
  assert.deepEqual(JSON.parse(io.output()), reseller);
});

test('--all follows next cursors and joins the pages', async () => {
  const pages: Record<string, { items: unknown[]; next: string | null }> = {
    '': { items: [{ id: 'org_1', name: 'a' }], next: 'c1' },
    c1: { items: [{ id: 'org_2', name: 'b' }], next: null },
  };
  const io = fakeIo({ api: (c) => ({ body: pages[c.url.searchParams.get('cursor') ?? ''] }) });
  assert.equal(await main(['org', 'list', '--reseller', 'rsl_1', '--all', '--limit', '1', '--json'], io), 0);
  assert.deepEqual(JSON.parse(io.output()), { items: [{ id: 'org_1', name: 'a' }, { id: 'org_2', name: 'b' }], next: null });
  assert.equal(io.calls[0]!.url.search, '?reseller=rsl_1&limit=1');
  assert.equal(io.calls.length, 2);
});

test('one page without --all says how to get the next one (on stderr)', async () => {
  const io = fakeIo({ api: () => ({ body: { items: [{ id: 'org_1', name: 'a' }], next: 'c1' } }) });
  assert.equal(await main(['org', 'list'], io), 0);
  assert.match(io.output(), /^ID +NAME\norg_1 +a\n$/);
  assert.match(io.errors(), /more: --cursor c1/);
});

test('a refusal prints title, detail and code and exits 1; --json also prints the problem on stdout', async () => {
  const problem = { type: 'x', title: 'name taken', status: 409, detail: 'an organization named shop exists', code: 'name_taken' };
  const io = fakeIo({ api: () => ({ status: 409, body: problem }) });
  assert.equal(await main(['org', 'create', 'shop', '--reseller', 'rsl_1', '--json'], io), 1);
  assert.deepEqual(JSON.parse(io.output()), problem);
  assert.match(io.errors(), /hmc org create: name taken: an organization named shop exists \(code name_taken, HTTP 409\)/);
});

test('a server failure exits 2', async () => {
  const io = fakeIo({ api: () => ({ status: 500, body: { title: 'internal error', code: 'internal_error' } }) });
  assert.equal(await main(['reseller', 'list'], io), 2);
});

test('a request still running after the server stopped waiting is followed to its end', async () => {
  let polls = 0;
  const io = fakeIo({
    api: (c) => {
      if (c.method === 'POST') return { status: 202, body: reseller, headers: { 'HMC-Request-Id': 'req_1', 'HMC-Request-State': 'running' } };
      polls++;
      return { body: { id: 'req_1', state: polls < 3 ? 'running' : 'succeeded' } };
    },
  });
  assert.equal(await main(['reseller', 'suspend', 'rsl_1'], io), 0);
  assert.equal(polls, 3);
  assert.match(io.output(), /suspended reseller rsl_1 \(request req_1\)/);
});

test('a followed request that failed reports its error; internal failures exit 2', async () => {
  const io = fakeIo({
    api: (c) =>
      c.method === 'DELETE'
        ? { status: 202, headers: { 'HMC-Request-Id': 'req_1', 'HMC-Request-State': 'running' } }
        : { body: { id: 'req_1', state: 'failed', error: { code: 'backend_failed', kind: 'internal', message: 'disk full' } } },
  });
  assert.equal(await main(['user', 'delete', 'org_1', 'usr_1'], io), 2);
  assert.match(io.errors(), /request req_1 failed: disk full \(code backend_failed\)/);
});

test('no token: a clear usage error and no HTTP call', async () => {
  const io = fakeIo({ env: { HMC_TOKEN: '' } });
  assert.equal(await main(['reseller', 'list'], io), 1);
  assert.match(io.errors(), /no API token: pass --token or set HMC_TOKEN/);
  assert.equal(io.calls.length, 0);
});

test('--url and --token override the environment', async () => {
  const io = fakeIo({ api: () => ({ body: { items: [], next: null } }) });
  assert.equal(await main(['reseller', 'list', '--url', 'http://other:9/', '--token', 'tok2'], io), 0);
  assert.equal(io.calls[0]!.url.host, 'other:9');
  assert.equal(io.calls[0]!.headers.authorization, 'Bearer tok2');
  assert.equal(io.output(), '(none)\n');
});

test('passwords come from stdin (trailing newline dropped), never from argv', async () => {
  let sent: FakeCall | undefined;
  const io = fakeIo({ stdin: 's3cret pass\n', api: (c) => ((sent = c), { status: 201, body: { id: 'usr_1', login: 'a@x.example' } }) });
  assert.equal(await main(['user', 'create', 'org_1', 'a@x.example', '--password-stdin', '--role', 'organization_admin', '--disabled'], io), 0);
  assert.deepEqual(sent!.body, { login: 'a@x.example', role: 'organization_admin', password: 's3cret pass', enabled: false });

  const io2 = fakeIo({ stdin: 'n3w\r\n', api: (c) => ((sent = c), { body: { id: 'usr_1' } }) });
  assert.equal(await main(['user', 'reset-password', 'org_1', 'usr_1'], io2), 0);
  assert.equal(sent!.url.pathname, '/api/v1/organizations/org_1/users/usr_1/password');
  assert.deepEqual(sent!.body, { password: 'n3w' });

  assert.equal(await main(['user', 'create', 'org_1', 'a@x', '--password', 'x'], fakeIo()), 1);
});

test('bad combinations are refused before anything is sent', async () => {
  for (const argv of [
    ['user', 'create', 'org_1', 'a@x', '--password-stdin', '--password-hash', 'h'],
    ['user', 'create', 'org_1', 'a@x', '--role', 'provider_admin'],
    ['user', 'update', 'org_1', 'usr_1'],
    ['user', 'update', 'org_1', 'usr_1', '--enable', '--disable'],
    ['token', 'create', '--name', 'n', '--role', 'user', '--expires', 'someday'],
    ['org', 'list', '--limit', 'ten'],
  ]) {
    const io = fakeIo({ stdin: 'pw\n' });
    assert.equal(await main(argv, io), 1, argv.join(' '));
    assert.equal(io.calls.length, 0, argv.join(' '));
    assert.match(io.errors(), /usage: hmc /, argv.join(' '));
  }
});

test('user update sends only the given fields; an empty surname clears it', async () => {
  let sent: FakeCall | undefined;
  const io = fakeIo({ api: (c) => ((sent = c), { body: { id: 'usr_1' } }) });
  assert.equal(await main(['user', 'update', 'org_1', 'usr_1', '--surname', '', '--disable'], io), 0);
  assert.equal(sent!.method, 'PATCH');
  assert.deepEqual(sent!.body, { surname: null, enabled: false });
});

test('token create prints the secret once, alone on the last line', async () => {
  const io = fakeIo({ api: () => ({ status: 201, body: { id: 'tok_1', name: 'ci', role: 'user', token: 'hmc_secret' } }) });
  assert.equal(await main(['token', 'create', '--name', 'ci', '--role', 'user', '--user', 'usr_1', '--expires', '2030-01-01'], io), 0);
  assert.deepEqual(io.calls[0]!.body, { name: 'ci', role: 'user', userId: 'usr_1', expiresAt: '2030-01-01T00:00:00.000Z' });
  const lines = io.output().trim().split('\n');
  assert.equal(lines.at(-1), 'hmc_secret');
  assert.equal(io.output().split('hmc_secret').length, 2);
});

test('help, unknown commands and bare groups', async () => {
  const help = fakeIo();
  assert.equal(await main(['--help'], help), 0);
  assert.match(help.output(), /import users/);
  const group = fakeIo();
  assert.equal(await main(['org'], group), 1);
  assert.match(group.errors(), /usage: hmc org <command>/);
  const sub = fakeIo();
  assert.equal(await main(['help', 'org', 'create'], sub), 0);
  assert.match(sub.output(), /usage: hmc org create NAME --reseller ID/);
  const bad = fakeIo();
  assert.equal(await main(['frobnicate'], bad), 1);
  assert.match(bad.errors(), /unknown command "frobnicate"/);
});

test('hmc worker refuses SQLite before opening anything', async () => {
  const io = fakeIo({ env: { HMC_DATABASE_URL: '' } });
  assert.equal(await main(['worker', '--data-dir', '/nonexistent/hmc'], io), 1);
  assert.match(io.errors(), /needs PostgreSQL.*`hmc serve` runs the workers/);
});
