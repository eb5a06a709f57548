import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../main.js';
import { fakeIo, type FakeCall, type FakeHandler } from '../fake-io.js';
import { formatImportReport } from './import.js';

const CSV = '\uFEFFlogin,displayName,givenName,surname,password,passwordHash,enabled,role\na@x.example,A,,,password1,,,\nbad login,B,,,password1,,,\n';

function csvFile(): string {
  const f = join(mkdtempSync(join(tmpdir(), 'hmc-cli-')), 'users.csv');
  writeFileSync(f, CSV);
  return f;
}

/** A fake import: 202, two polls while running, then items served in pages of one. */
function importApi(failed: boolean): { handler: FakeHandler; posted: () => FakeCall | undefined } {
  let posted: FakeCall | undefined;
  let polls = 0;
  const items = [
    { seq: 0, state: 'succeeded', input: { login: 'a@x.example' }, result: { id: 'usr_1' }, error: null },
    failed
      ? { seq: 1, state: 'failed', input: { login: 'bad login' }, result: null, error: { code: 'invalid_address', kind: 'invalid', message: '"bad login" is not an e-mail address' } }
      : { seq: 1, state: 'succeeded', input: { login: 'b@x.example' }, result: { id: 'usr_2' }, error: null },
  ];
  const handler: FakeHandler = (c) => {
    if (c.method === 'POST') {
      posted = c;
      return { status: 202, body: { request: { id: 'req_1', state: 'running', items: 2 } }, headers: { 'HMC-Request-Id': 'req_1' } };
    }
    if (c.url.pathname === '/api/v1/requests/req_1') {
      polls++;
      const done = Math.min(2, polls - 1);
      return { body: { id: 'req_1', state: done < 2 ? 'running' : 'succeeded', items: { total: 2, done, failed: failed && done === 2 ? 1 : 0 } } };
    }
    if (c.url.pathname === '/api/v1/requests/req_1/items') {
      assert.equal(c.url.searchParams.get('limit'), '1000');
      const cursor = c.url.searchParams.get('cursor');
      return cursor ? { body: { items: [items[1]], next: null } } : { body: { items: [items[0]], next: 'p2' } };
    }
    return undefined;
  };
  return { handler, posted: () => posted };
}

test('import uploads the CSV as text/csv, follows the request and reports every row; a failed row exits 1', async () => {
  const api = importApi(true);
  const io = fakeIo({ api: api.handler });
  assert.equal(await main(['import', 'users', 'org_1', csvFile(), '--idempotency-key', 'k1'], io), 1);
  const post = api.posted()!;
  assert.equal(post.url.pathname, '/api/v1/organizations/org_1/users/import');
  assert.equal(post.headers['content-type'], 'text/csv');
  assert.equal(post.headers['idempotency-key'], 'k1');
  assert.ok(String(post.body).startsWith('login,'), 'byte-order mark removed');
  assert.equal(
    io.output(),
    [
      'ROW  LOGIN        RESULT  ERROR',
      '1    a@x.example  ok      -',
      '2    bad login    failed  invalid_address: "bad login" is not an e-mail address',
      'imported 1 of 2 rows, 1 failed (request req_1, succeeded)',
      '',
    ].join('\n'),
  );
  // not a terminal: progress as lines on stderr, never on stdout
  assert.match(io.errors(), /import: request req_1/);
  assert.match(io.errors(), /import 100% \(2\/2 rows, 1 failed\)/);
});

test('import --json prints { request, items } and exits 0 when every row succeeded', async () => {
  const api = importApi(false);
  const io = fakeIo({ api: api.handler });
  assert.equal(await main(['import', 'users', 'org_1', csvFile(), '--json'], io), 0);
  const out = JSON.parse(io.output());
  assert.equal(out.request.state, 'succeeded');
  assert.deepEqual(out.items.map((i: { seq: number }) => i.seq), [0, 1]);
});

test('import reads the CSV from stdin with "-"', async () => {
  const api = importApi(false);
  const io = fakeIo({ api: api.handler, stdin: CSV });
  assert.equal(await main(['import', 'users', 'org_1', '-'], io), 0);
  assert.ok(String(api.posted()!.body).includes('bad login'));
});

test('a missing file is the caller\'s error, reported before any upload', async () => {
  const io = fakeIo();
  assert.equal(await main(['import', 'users', 'org_1', '/nonexistent/users.csv'], io), 1);
  assert.match(io.errors(), /cannot read \/nonexistent\/users.csv/);
  assert.equal(io.calls.length, 0);
});

test('rows still pending when the request failed are reported as such', () => {
  const text = formatImportReport({ id: 'req_2', state: 'failed' }, [
    { seq: 1, state: 'pending', input: { login: 'b' } },
    { seq: 0, state: 'succeeded', input: { login: 'a' } },
  ]);
  assert.match(text, /^1 +a +ok/m);
  assert.match(text, /^2 +b +pending/m);
  assert.match(text, /imported 1 of 2 rows, 1 failed \(request req_2, failed\)/);
});
