import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { Errors } from '../src/core/errors.js';
import { createFilesProvider } from '../src/dataplane/files-provider.js';
import type { HomeDirectoryProvider } from '../src/directory/ports.js';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';

/** Engine semantics seen from outside: idempotency, compensation, retries, request resources, bad input, metrics, OpenAPI. */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): any {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  const body = r.json();
  assert.equal(body.code, code, r.body);
  assert.equal(body.status, status);
  return body;
}

const requestId = (r: LightMyRequestResponse): string => {
  const id = r.headers['hmc-request-id'];
  assert.equal(typeof id, 'string', `no HMC-Request-Id on ${r.statusCode} ${r.body}`);
  return id as string;
};

/**
 * A fake home-directory back end (a real one cannot be made to fail on cue): the real files provider,
 * except that the first `failures` ensureHome calls for each user fail with a retryable `unavailable`.
 */
function flakyHomesFake(inner: HomeDirectoryProvider, failures: number): HomeDirectoryProvider & { calls: Map<string, number> } {
  const calls = new Map<string, number>();
  return {
    calls,
    async ensureHome(ref, ctx) {
      const n = (calls.get(ref.userId) ?? 0) + 1;
      calls.set(ref.userId, n);
      if (n <= failures) throw Errors.unavailable(`flaky fake: back end unavailable (call ${n} of ${ref.userId})`);
      return inner.ensureHome(ref, ctx);
    },
    removeHome: (ref, ctx) => inner.removeHome(ref, ctx),
    listHomes: (ctx) => inner.listHomes(ctx),
  };
}

/**
 * /metrics once `done` holds (or after 5 s): the worker counts a finished request once its commit is durable
 * (SQLite: after the WAL sync, which may return a moment after a reader already sees the new state).
 */
async function metricsUntil(p: { call: TestPlatform['call'] }, done: (metrics: string) => boolean): Promise<string> {
  let m = '';
  for (const until = Date.now() + 5000; !done((m = (await p.call('GET', '/metrics', { token: '' })).body)) && Date.now() < until; ) await new Promise((res) => setTimeout(res, 20));
  return m;
}

for (const dialect of DIALECTS) {
  describe(`engine [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    const usersOf = async (orgId: string, q?: string) =>
      (await t.ok('GET', `/api/v1/organizations/${orgId}/users?limit=1000${q ? `&q=${encodeURIComponent(q)}` : ''}`)).items as any[];

    /** Make `<filesRoot>/<orgId>` a regular file, so no home can be made under it (mkdir fails with ENOTDIR: permanent). */
    function blockOrgFolder(orgId: string): { path: string; content: string } {
      mkdirSync(t.config.filesRoot, { recursive: true });
      const path = join(t.config.filesRoot, orgId);
      const content = `not a directory: placed by the compensation test for ${orgId}\n`;
      writeFileSync(path, content);
      return { path, content };
    }

    test('Idempotency-Key: the same key and body replay the same request; a different body is refused', async () => {
      const { org, orgAdmin } = await t.tenant('idem');
      const url = `/api/v1/organizations/${org.id}/users`;
      const body = { login: 'once@idem.example', password: 'idempotent-1' };
      const headers = { 'idempotency-key': 'create-once-1' };
      const first = await t.call('POST', url, { body, headers, token: orgAdmin });
      assert.equal(first.statusCode, 202, first.body);
      assert.equal(first.headers['idempotent-replayed'], undefined);
      const second = await t.call('POST', url, { body, headers, token: orgAdmin });
      assert.ok(second.statusCode === 201 || second.statusCode === 202, second.body);
      assert.equal(requestId(second), requestId(first));
      assert.equal(second.headers['idempotent-replayed'], 'true');
      assert.equal(second.json().id, first.json().id);
      await t.settle(requestId(first));
      const third = await t.call('POST', url, { body, headers, token: orgAdmin });
      assert.equal(requestId(third), requestId(first));
      assert.equal(third.headers['idempotent-replayed'], 'true');
      assert.equal((await usersOf(org.id)).length, 1);

      const other = await t.call('POST', url, { body: { ...body, displayName: 'Someone else' }, headers, token: orgAdmin });
      assertProblem(other, 409, 'idempotency_key_reused');
      assert.equal((await usersOf(org.id)).length, 1);
      const otherRoute = await t.call('POST', `/api/v1/organizations/${org.id}/groups`, { body: { name: 'g' }, headers, token: orgAdmin });
      assertProblem(otherRoute, 409, 'idempotency_key_reused');
      assert.deepEqual((await t.ok('GET', `/api/v1/organizations/${org.id}/groups`)).items, []);

      // a new key is a new request
      const fresh = await t.call('POST', url, { body: { login: 'twice@idem.example' }, headers: { 'idempotency-key': 'create-once-2' }, token: orgAdmin });
      assert.equal(fresh.statusCode, 202, fresh.body);
      assert.notEqual(requestId(fresh), requestId(first));
      assert.equal((await t.settle(requestId(fresh))).state, 'succeeded');
      assert.equal((await usersOf(org.id)).length, 2);
    });

    test('20 concurrent POSTs with one Idempotency-Key create exactly one user', async () => {
      const { org, orgAdmin } = await t.tenant('idem-race');
      const url = `/api/v1/organizations/${org.id}/users`;
      const body = { login: 'raced@idem-race.example', password: 'raced-password' };
      const answers = await Promise.all(Array.from({ length: 20 }, () =>
        t.call('POST', url, { body, headers: { 'idempotency-key': 'race-key' }, token: orgAdmin })));
      for (const a of answers) assert.ok(a.statusCode === 201 || a.statusCode === 202, `${a.statusCode} ${a.body}`);
      const ids = new Set(answers.map(requestId));
      assert.equal(ids.size, 1, `one request for one key, got ${[...ids].join(', ')}`);
      assert.equal(answers.filter((a) => a.headers['idempotent-replayed'] !== 'true').length, 1, 'exactly one answer is the original');
      assert.equal(new Set(answers.map((a) => a.json().id)).size, 1);
      const req = await t.settle([...ids][0]!);
      assert.equal(req.state, 'succeeded');
      const users = await usersOf(org.id);
      assert.equal(users.length, 1);
      assert.equal(users[0].login, 'raced@idem-race.example');
      const created = (await t.ok('GET', `/api/v1/events?org=${org.id}&event=created&limit=1000`)).items.filter((e: any) => e.objectType === 'user');
      assert.equal(created.length, 1, 'billed once');
    });

    test('a permanent job failure fails the request and compensates: state and disk back to before, audit shows both', async () => {
      const { org } = await t.tenant('comp');
      const block = blockOrgFolder(org.id);
      const failed = /^hmc_requests_finished_total\{procedure="directory.create_user",state="failed"\} (\d+)$/m;
      const failedCount = async () => Number(failed.exec((await t.call('GET', '/metrics', { token: '' })).body)?.[1] ?? 0);
      const failedBefore = await failedCount();

      const r = await t.call('POST', `/api/v1/organizations/${org.id}/users`, { body: { login: 'doomed@comp.example', password: 'doomed-password' } });
      assert.equal(r.statusCode, 202, r.body);
      const user = r.json();
      const id = requestId(r);
      const req = await t.settle(id);
      assert.equal(req.state, 'failed');
      assert.equal(req.error.code, 'backend_failed', JSON.stringify(req.error));
      assert.ok(req.finishedAt);
      // /metrics counts it as a failure of its procedure (once the worker's transaction is counted)
      await metricsUntil(t, (m) => Number(failed.exec(m)?.[1] ?? 0) !== failedBefore);
      assert.equal(await failedCount(), failedBefore + 1);

      // the user is gone from the API
      assertProblem(await t.call('GET', `/api/v1/organizations/${org.id}/users/${user.id}`), 404, 'not_found');
      assert.deepEqual(await usersOf(org.id), []);
      // the disk is as it was: the blocking file untouched, nothing new beside it
      assert.ok(lstatSync(block.path).isFile());
      assert.equal(readFileSync(block.path, 'utf8'), block.content);
      assert.deepEqual(readdirSync(t.config.filesRoot).filter((n) => n.startsWith(org.id)), [org.id]);
      const homes = await t.platform.homes.listHomes({ signal: AbortSignal.timeout(5000) });
      assert.deepEqual(homes.filter((h) => h.orgId === org.id), []);

      // the steps: the forward job failed for good, the compensation's jobs ran
      const forward = req.steps.filter((s: any) => s.phase === 'forward');
      assert.equal(forward.length, 1);
      assert.equal(forward[0].kind, 'files.converge_home');
      assert.equal(forward[0].state, 'failed');
      assert.equal(forward[0].attempts, 1, 'a permanent failure is not retried');
      assert.equal(forward[0].lastError.code, 'backend_failed');
      const comp = req.steps.filter((s: any) => s.phase === 'compensation');
      assert.ok(comp.length >= 1 && comp.every((s: any) => s.state === 'done'), JSON.stringify(comp));

      // the audit shows the execution, the compensation and the failed completion
      const audit = (await t.ok('GET', `/api/v1/audit?request=${id}`)).items;
      const phases = audit.map((e: any) => e.phase);
      assert.deepEqual(phases, ['execute', 'compensate', 'complete']);
      assert.ok(audit.every((e: any) => e.procedure === 'directory.create_user'));
      assert.equal(audit.find((e: any) => e.phase === 'complete').outcome, 'failed');
      assert.equal(audit.find((e: any) => e.phase === 'complete').error.code, 'backend_failed');
      assert.ok(!JSON.stringify(audit).includes('doomed-password'));

      // billing saw it come and go
      const events = (await t.ok('GET', `/api/v1/events?org=${org.id}&limit=1000`)).items.filter((e: any) => e.objectId === user.id);
      assert.deepEqual(events.map((e: any) => e.event), ['created', 'deleted']);
      assert.ok(events.every((e: any) => e.requestId === id));

      // with the obstacle gone, the same login can be created and works
      rmSync(block.path);
      const again = await t.call('POST', `/api/v1/organizations/${org.id}/users?wait=true`, { body: { login: 'doomed@comp.example' } });
      assert.equal(again.statusCode, 201, again.body);
      assert.ok(existsSync(join(t.config.filesRoot, org.id, again.json().id)));
    });

    test('?wait=true on a request that fails answers 503 backend_failed, and nothing is left', async () => {
      const { org } = await t.tenant('wait-fail');
      const block = blockOrgFolder(org.id);
      const r = await t.call('POST', `/api/v1/organizations/${org.id}/users?wait=true`, { body: { login: 'never@wait-fail.example' } });
      assertProblem(r, 503, 'backend_failed');
      assert.equal(r.headers['hmc-request-state'], 'failed');
      const req = await t.ok('GET', `/api/v1/requests/${requestId(r)}`);
      assert.equal(req.state, 'failed');
      assert.deepEqual(await usersOf(org.id), []);
      assert.equal(readFileSync(block.path, 'utf8'), block.content);
    });

    test("a change follower: its job is one of every change's jobs, the request waits for it and fails (compensated) when it fails for good", async () => {
      const seen: string[] = [];
      let on = false;
      let failOnce = false;
      const engine = t.platform.engine;
      engine.handle('test.follower', {
        async run(p) {
          seen.push((p as { proc: string }).proc);
          if (failOnce) {
            failOnce = false; // the compensation's own follower job then succeeds
            throw Errors.backendFailed('follower fake: fails for good', { retryable: false });
          }
        },
      });
      engine.followChanges((proc) => (on ? [{ kind: 'test.follower', payload: { proc }, queueKey: 'test:follower' }] : []));
      const { org } = await t.tenant('follow');
      on = true;
      try {
        await t.ok('POST', `/api/v1/organizations/${org.id}/users?wait=true`, { login: 'one@follow.example' });
        assert.equal(seen.length, 1, 'the follower ran before ?wait=true returned');
        failOnce = true;
        const r = await t.call('POST', `/api/v1/organizations/${org.id}/users?wait=true`, { body: { login: 'two@follow.example' } });
        assertProblem(r, 503, 'backend_failed');
        assert.equal(seen.length, 3, 'the failed change and its compensation were each followed');
        assert.deepEqual((await usersOf(org.id)).map((x) => x.login), ['one@follow.example'], 'the change whose follower failed was undone');
      } finally {
        on = false;
      }
    });

    test('a request is a resource: state, target, steps and timings; secrets redacted', async () => {
      const { org } = await t.tenant('reqres');
      const r = await t.call('POST', `/api/v1/organizations/${org.id}/users?wait=true`, { body: { login: 'r@reqres.example', password: 'request-secret' } });
      assert.equal(r.statusCode, 201, r.body);
      assert.equal(r.headers['hmc-request-state'], 'succeeded');
      const req = await t.ok('GET', `/api/v1/requests/${requestId(r)}`);
      assert.equal(req.id, requestId(r));
      assert.equal(req.procedure, 'directory.create_user');
      assert.equal(req.state, 'succeeded');
      assert.equal(req.orgId, org.id);
      assert.deepEqual(req.target, { type: 'user', id: r.json().id });
      assert.equal(req.input.password, '[redacted]');
      assert.equal(req.input.login, 'r@reqres.example');
      assert.equal(req.result.id, r.json().id);
      assert.equal(req.error, null);
      assert.deepEqual(req.jobs, { total: 1, done: 1 });
      assert.equal(req.steps.length, 1);
      const [step] = req.steps;
      assert.equal(step.kind, 'files.converge_home');
      assert.equal(step.phase, 'forward');
      assert.equal(step.state, 'done');
      assert.equal(step.attempts, 1);
      for (const at of [req.createdAt, req.updatedAt, req.finishedAt, step.startedAt, step.finishedAt]) {
        assert.equal(typeof at, 'string');
        assert.ok(!Number.isNaN(Date.parse(at)), at);
      }
      assert.ok(Date.parse(req.createdAt) <= Date.parse(step.startedAt));
      assert.ok(Date.parse(step.startedAt) <= Date.parse(step.finishedAt));
      assert.ok(Date.parse(step.finishedAt) <= Date.parse(req.finishedAt));
      assert.ok(Number.isInteger(req.durationMs) && req.durationMs >= 0);
      assert.ok(!JSON.stringify(req).includes('request-secret'));
      // listed with the organization's requests
      const listed = (await t.ok('GET', `/api/v1/requests?org=${org.id}&procedure=directory.create_user`)).items;
      assert.deepEqual(listed.map((x: any) => x.id), [req.id]);
      assertProblem(await t.call('GET', '/api/v1/requests/req_00000000000000000000000000'), 404, 'not_found');
    });

    describe('with a flaky back end', () => {
      let f: TestPlatform;
      let root: string;
      let homes: ReturnType<typeof flakyHomesFake>;
      before(async () => {
        root = mkdtempSync(join(tmpdir(), 'hmc-flaky-homes-'));
        homes = flakyHomesFake(createFilesProvider(root), 2);
        f = await startTestPlatform(dialect, { homes, config: { filesRoot: root } });
      });
      after(async () => {
        await f?.close();
        rmSync(root, { recursive: true, force: true });
      });

      test('a retryable failure is retried with backoff and the request succeeds', async () => {
        const { org } = await f.tenant('flaky');
        const r = await f.call('POST', `/api/v1/organizations/${org.id}/users`, { body: { login: 'patient@flaky.example' } });
        assert.equal(r.statusCode, 202, r.body);
        const user = r.json();
        // while it waits in backoff, /metrics shows an open job and its age
        for (const until = Date.now() + 10_000; !homes.calls.get(user.id) && Date.now() < until; ) await new Promise((res) => setTimeout(res, 10));
        assert.ok(homes.calls.get(user.id), 'first attempt ran');
        const open = (await f.call('GET', '/metrics', { token: '' })).body;
        const depth = Number(/^hmc_jobs_queued (\S+)$/m.exec(open)?.[1]) + Number(/^hmc_jobs_running (\S+)$/m.exec(open)?.[1]);
        assert.ok(depth >= 1, open);
        assert.ok(Number(/^hmc_jobs_oldest_age_seconds (\S+)$/m.exec(open)?.[1]) > 0, open);
        // backoff starts at 0.5-1 s, then 1-2 s: well inside this deadline
        const req = await f.settle(requestId(r), 15_000);
        assert.equal(req.state, 'succeeded', JSON.stringify(req.error));
        assert.equal(req.error, null);
        assert.equal(req.steps.length, 1);
        assert.equal(req.steps[0].kind, 'files.converge_home');
        assert.equal(req.steps[0].state, 'done');
        assert.equal(req.steps[0].attempts, 3);
        assert.equal(homes.calls.get(user.id), 3);
        assert.ok(existsSync(join(root, org.id, user.id)));
        assert.equal((await f.ok('GET', `/api/v1/organizations/${org.id}/users/${user.id}`)).state, 'active');
        const succeeded = /^hmc_requests_finished_total\{procedure="directory.create_user",state="succeeded"\} 1$/m;
        const metrics = await metricsUntil(f, (m) => succeeded.test(m));
        assert.match(metrics, /hmc_jobs_finished_total\{kind="files.converge_home",outcome="retry"\} 2/);
        assert.match(metrics, succeeded);
        assert.doesNotMatch(metrics, /hmc_requests_finished_total\{[^}]*state="failed"/);
      });
    });

    test('bad input: 400 problem+json with a code, never a partial write', async () => {
      const { org } = await t.tenant('bad');
      const url = `/api/v1/organizations/${org.id}/users`;

      let p = assertProblem(await t.call('POST', url, { body: { login: 'a@bad.example', bogus: 1 } }), 400, 'invalid_request');
      assert.ok(p.errors.some((e: any) => /bogus/.test(e.path)), JSON.stringify(p.errors));
      p = assertProblem(await t.call('POST', url, { body: { login: 42 } }), 400, 'invalid_request');
      assert.ok(p.errors.some((e: any) => /login/.test(e.path)), JSON.stringify(p.errors));
      p = assertProblem(await t.call('POST', url, { body: { login: 'a@bad.example', enabled: 'yes' } }), 400, 'invalid_request');
      assert.ok(p.errors.some((e: any) => /enabled/.test(e.path)), JSON.stringify(p.errors));
      assertProblem(await t.call('POST', url, { body: {} }), 400, 'invalid_request');
      assertProblem(await t.call('POST', url, { body: [] }), 400, 'invalid_request');
      for (const login of ['not-an-address', 'two@@bad.example', 'space in@bad.example', 'ab@', '@bad.example', `${'x'.repeat(65)}@bad.example`]) {
        assertProblem(await t.call('POST', url, { body: { login } }), 400, 'invalid_address');
      }
      assertProblem(await t.call('POST', url, { body: { login: 'short@bad.example', password: 'short' } }), 400, 'password_too_short');

      const long = 'a'.repeat(65);
      p = assertProblem(await t.call('POST', '/api/v1/resellers', { body: { name: long } }), 400, 'invalid_request');
      assert.ok(p.errors.some((e: any) => /name/.test(e.path)), JSON.stringify(p.errors));
      assertProblem(await t.call('POST', '/api/v1/organizations', { body: { resellerId: org.resellerId, name: long } }), 400, 'invalid_request');
      assertProblem(await t.call('POST', `/api/v1/organizations/${org.id}/groups`, { body: { name: long } }), 400, 'invalid_request');
      assertProblem(await t.call('POST', '/api/v1/resellers', { body: { name: 'Upper Case' } }), 400, 'invalid_request');
      assertProblem(await t.call('POST', '/api/v1/resellers', { body: { name: 'ok-name', displayName: 'bell\u0007' } }), 400, 'invalid_request');
      assertProblem(await t.call('POST', `/api/v1/organizations/${org.id}/domains`, { body: { name: 'bad..example' } }), 400, 'invalid_domain');
      assertProblem(await t.call('POST', `/api/v1/organizations/${org.id}/domains`, { body: { name: 'x'.repeat(254) } }), 400, 'invalid_request');

      assertProblem(await t.call('POST', url, { raw: '{"login": "a@bad.example"', contentType: 'application/json' }), 400, 'invalid_json');
      assertProblem(await t.call('POST', '/api/v1/resellers', { raw: '{name:', contentType: 'application/json' }), 400, 'invalid_json');
      assertProblem(await t.call('GET', `${url}?limit=0`), 400, 'invalid_request');
      assertProblem(await t.call('GET', `${url}?cursor=garbage`), 400, 'invalid_cursor');
      assertProblem(await t.call('GET', '/api/v1/organizations/not-an-id'), 400, 'invalid_request');

      // none of it left anything behind
      assert.deepEqual(await usersOf(org.id), []);
      assert.deepEqual((await t.ok('GET', '/api/v1/resellers?q=ok-name')).items, []);
      assert.deepEqual((await t.ok('GET', `/api/v1/organizations/${org.id}/groups`)).items, []);
      assert.deepEqual((await t.ok('GET', `/api/v1/organizations/${org.id}/domains`)).items.map((d: any) => d.name), ['bad.example']);
    });

    test('/readyz: ready while the database answers, 503 (never a 500) once it cannot be read', async () => {
      const own = await startTestPlatform(dialect);
      try {
        const ok = await own.call('GET', '/readyz', { token: '' });
        assert.equal(ok.statusCode, 200, ok.body);
        assert.deepEqual(ok.json(), { status: 'ready' });
        await own.platform.store.close();
        const gone = await own.call('GET', '/readyz', { token: '' });
        assert.equal(gone.statusCode, 503, gone.body);
        assert.deepEqual(gone.json(), { status: 'database unavailable' });
      } finally {
        await own.close().catch(() => own.tdb.destroy());
      }
    });

    test('/metrics counts procedures and shows the job queue', async () => {
      const { org } = await t.tenant('metrics');
      const r = await t.call('POST', `/api/v1/organizations/${org.id}/users?wait=true`, { body: { login: 'm@metrics.example' } });
      assert.equal(r.statusCode, 201, r.body);
      assertProblem(await t.call('POST', `/api/v1/organizations/${org.id}/users`, { body: { login: 'm@metrics.example' } }), 409, 'address_taken');
      const m = await t.call('GET', '/metrics', { token: '' });
      assert.equal(m.statusCode, 200);
      assert.match(String(m.headers['content-type']), /^text\/plain/);
      const ok = /^hmc_procedure_requests_total\{procedure="directory.create_user",outcome="ok"\} (\d+)$/m.exec(m.body);
      assert.ok(ok && Number(ok[1]) >= 1, 'ok counter');
      assert.match(m.body, /^hmc_procedure_requests_total\{procedure="directory.create_user",outcome="rejected"\} \d+$/m);
      assert.match(m.body, /^hmc_jobs_queued \d+$/m);
      assert.match(m.body, /^hmc_procedure_duration_seconds_bucket\{le="[^"]+",procedure="directory.create_user"\} \d+$/m);
    });

    test('/api/v1/openapi.json is OpenAPI 3.1 with the contract paths', async () => {
      const r = await t.call('GET', '/api/v1/openapi.json', { token: '' });
      assert.equal(r.statusCode, 200, r.body);
      const doc = r.json();
      assert.match(doc.openapi, /^3\.1\./);
      for (const path of [
        '/api/v1/resellers', '/api/v1/resellers/{resellerId}', '/api/v1/organizations', '/api/v1/organizations/{orgId}',
        '/api/v1/organizations/{orgId}/move', '/api/v1/organizations/{orgId}/domains', '/api/v1/organizations/{orgId}/users',
        '/api/v1/organizations/{orgId}/users/import', '/api/v1/organizations/{orgId}/groups', '/api/v1/tokens',
        '/api/v1/requests/{requestId}', '/api/v1/audit', '/api/v1/events',
      ]) assert.ok(doc.paths[path], `missing ${path}`);
      const create = doc.paths['/api/v1/organizations/{orgId}/users'].post;
      assert.ok(create.requestBody, 'the create-user body is documented');
      assert.ok(doc.components.securitySchemes.bearer);
      const list = doc.paths['/api/v1/organizations'].get;
      assert.ok(list.parameters.some((x: any) => x.name === 'reseller' && x.in === 'query'));
      const docs = await t.call('GET', '/api/docs', { token: '' });
      assert.ok(docs.statusCode < 400, `docs page ${docs.statusCode}`);
    });
  });
}
