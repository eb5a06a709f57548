import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiClient, path } from './client.js';
import { CliError, EXIT_CLIENT, EXIT_SERVER, formatProblem, UsageError } from './errors.js';
import { fakeIo } from './fake-io.js';

test('path segments are encoded, so an id cannot climb out of its route', () => {
  assert.equal(path`/organizations/${'a/../b c'}/users`, '/organizations/a%2F..%2Fb%20c/users');
});

test('the base URL may carry /api/v1 or a trailing slash; empty query values are left out', () => {
  const api = new ApiClient({ url: 'http://h:1/api/v1/', token: 't' });
  assert.equal(api.url('/resellers', { limit: 5, cursor: undefined, reseller: null, wait: true }), 'http://h:1/api/v1/resellers?limit=5&wait=true');
  assert.throws(() => new ApiClient({ url: 'ftp://h', token: 't' }), UsageError);
  assert.throws(() => new ApiClient({ url: 'not a url', token: 't' }), UsageError);
});

test('requests carry the bearer token and a JSON body; answers come back parsed with the request id', async () => {
  const io = fakeIo({ api: () => ({ status: 201, body: { id: 'rsl_1' }, headers: { 'HMC-Request-Id': 'req_1' } }) });
  const api = new ApiClient({ url: 'http://h:1', token: 'secret', fetch: io.fetch });
  const res = await api.post('/resellers', { name: 'acme' }, { wait: true });
  assert.deepEqual(res.body, { id: 'rsl_1' });
  assert.equal(res.requestId, 'req_1');
  const call = io.calls[0]!;
  assert.equal(call.headers.authorization, 'Bearer secret');
  assert.deepEqual(call.body, { name: 'acme' });
  assert.equal(call.url.search, '?wait=true');
});

test('a 4xx problem becomes exit code 1 with its title, detail, code and field errors', async () => {
  const problem = { type: 't', title: 'invalid request', status: 400, detail: 'bad name', code: 'invalid_name', errors: [{ path: '/name', message: 'too long' }] };
  const io = fakeIo({ api: () => ({ status: 400, body: problem }) });
  const api = new ApiClient({ url: 'http://h:1', token: 't', fetch: io.fetch });
  const err = await api.get('/resellers').then(() => null, (e: unknown) => e);
  assert.ok(err instanceof CliError);
  assert.equal(err.exitCode, EXIT_CLIENT);
  assert.equal(err.problem?.code, 'invalid_name');
  assert.deepEqual(err.body, problem);
  assert.equal(err.message, 'invalid request: bad name (code invalid_name, HTTP 400)\n  /name: too long');
});

test('5xx answers, non-JSON error pages and network failures are exit code 2', async () => {
  const io = fakeIo({ api: (c) => (c.url.pathname.endsWith('/a') ? { status: 503, body: { title: 'unavailable', code: 'unavailable' } } : { status: 502, body: '<html>bad gateway</html>' }) });
  const api = new ApiClient({ url: 'http://h:1', token: 't', fetch: io.fetch });
  const a = await api.get('/a').catch((e: CliError) => e);
  assert.equal((a as CliError).exitCode, EXIT_SERVER);
  const b = await api.get('/b').catch((e: CliError) => e);
  assert.equal((b as CliError).exitCode, EXIT_SERVER);
  assert.match((b as CliError).message, /HTTP 502/);

  const refused = (async () => {
    throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
  }) as typeof fetch;
  const down = new ApiClient({ url: 'http://h:1', token: 't', fetch: refused });
  const c = await down.get('/x').catch((e: CliError) => e);
  assert.equal((c as CliError).exitCode, EXIT_SERVER);
  assert.match((c as CliError).message, /cannot reach the server \(GET http:\/\/h:1\/api\/v1\/x\): ECONNREFUSED/);
});

test('a problem without detail or code still reads well', () => {
  assert.equal(formatProblem({ title: 'Not Found', status: 404 }), 'Not Found (HTTP 404)');
});
