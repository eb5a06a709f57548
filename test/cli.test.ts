import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DIALECTS, createTestDatabase, type TestDatabase } from '../src/store/testing.js';
import { freePort } from './ports.js';

/**
 * The `hmc` CLI end to end: real processes (`init`, `serve`, on PostgreSQL also `worker`) on a real database,
 * and every API command run as its own process against the served API, as an operator would.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(ROOT, 'src/cli/main.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
}

function finish(child: ChildProcess, stdin = ''): Promise<Run> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdin!.end(stdin);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Resolves when the process prints `line` on stdout; rejects if it exits first or the deadline passes. */
function waitForLine(child: ChildProcess, line: RegExp, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no ${line} within ${timeoutMs} ms; output: ${seen}`)), timeoutMs);
    child.stdout!.on('data', (d) => {
      seen += d;
      const m = line.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    child.stderr!.on('data', (d) => (seen += d));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before ${line}; output: ${seen}`));
    });
  });
}

function exited(child: ChildProcess, timeoutMs = 20_000): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms`)), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

const IMPORT_CSV = [
  'login,displayName,givenName,surname,password,passwordHash,enabled,role',
  'ann@{d},Ann,Ann,Lee,password-123,,true,user',
  'ben@{d},Ben,,,password-123,,,',
  'not an address,Bad,,,password-123,,,',
  'cat@{d},Cat,,,password-123,,false,organization_helpdesk',
  'dan@{d},Dan,,,password-123,,true,organization_admin',
].join('\n');

for (const dialect of DIALECTS) {
  describe(`hmc CLI [${dialect}]`, () => {
    let tdb: TestDatabase;
    let env: NodeJS.ProcessEnv;
    let server: ChildProcess;
    let worker: ChildProcess | undefined;
    let serverOut: Promise<Run>;
    let workerOut: Promise<Run> | undefined;

    const hmc = (args: string[], stdin = '', extra: NodeJS.ProcessEnv = {}) => finish(start(args, { ...env, ...extra }), stdin);
    const json = async (args: string[], stdin = ''): Promise<any> => {
      const r = await hmc([...args, '--json'], stdin);
      assert.equal(r.code, 0, `hmc ${args.join(' ')}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };

    before(async () => {
      tdb = await createTestDatabase(dialect);
      const port = await freePort();
      // the data directory comes from --data-dir (the contract), not HMC_DATA_DIR
      const { HMC_DATA_DIR: _ignored, ...inherited } = process.env;
      env = {
        ...inherited,
        HMC_DATABASE_URL: tdb.url ?? '',
        HMC_BCRYPT_COST: '4',
        HMC_LOG_LEVEL: 'warn',
        HMC_URL: `http://127.0.0.1:${port}`,
        HMC_TOKEN: '',
      };
      const init = await hmc(['init', '--data-dir', tdb.dir, '--json']);
      assert.equal(init.code, 0, init.stderr);
      const out = JSON.parse(init.stdout);
      assert.match(out.token, /^hmc_/);
      assert.deepEqual({ dataDir: out.dataDir, database: out.database }, { dataDir: tdb.dir, database: dialect });
      env.HMC_TOKEN = out.token;

      // on PostgreSQL the API process runs no workers: a separate `hmc worker` must run the jobs
      server = start(['serve', '--data-dir', tdb.dir, '--port', String(port), ...(dialect === 'postgres' ? ['--workers', '0'] : [])], env);
      const listening = waitForLine(server, /HMC listening on \S+/);
      serverOut = finish(server);
      await listening;
      if (dialect === 'postgres') {
        worker = start(['worker', '--data-dir', tdb.dir, '--concurrency', '2'], env);
        const running = waitForLine(worker, /HMC worker running/);
        workerOut = finish(worker);
        await running;
      }
      const health = await fetch(`${env.HMC_URL}/healthz`);
      assert.equal(health.status, 200);
    });

    after(async () => {
      for (const p of [server, worker]) if (p && p.exitCode === null) p.kill('SIGKILL');
      await tdb?.destroy();
    });

    test('migrate finds nothing pending after init; the server answers /readyz', async () => {
      const m = await json(['migrate', '--data-dir', tdb.dir]);
      assert.deepEqual({ applied: m.applied, backup: m.backup, dataDir: m.dataDir, database: m.database }, { applied: [], backup: null, dataDir: tdb.dir, database: dialect });
      const text = await hmc(['migrate', '--data-dir', tdb.dir]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /up to date; nothing applied/);
      const ready = await fetch(`${env.HMC_URL}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: 'ready' });
    });

    test('a second init says so and prints no token', async () => {
      const r = await hmc(['init', '--data-dir', tdb.dir, '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).token, null);
      const text = await hmc(['init', '--data-dir', tdb.dir]);
      assert.match(text.stdout, /already initialised/);
      assert.doesNotMatch(text.stdout, /hmc_/);
    });

    test('reseller, organization, domain and user: create, list and show', async () => {
      const created = await hmc(['reseller', 'create', 'cli-rsl', '--display-name', 'CLI Reseller']);
      assert.equal(created.code, 0, created.stderr);
      assert.match(created.stdout, /^created reseller rsl_\w+ \(request req_\w+\)$/m);
      const rsl = (await json(['reseller', 'list', '--all'])).items.find((r: any) => r.name === 'cli-rsl');
      assert.equal(rsl.displayName, 'CLI Reseller');

      const org = await json(['org', 'create', 'cli-org', '--reseller', rsl.id]);
      assert.equal(org.resellerId, rsl.id);
      const orgs = await json(['org', 'list', '--reseller', rsl.id]);
      assert.deepEqual(orgs.items.map((o: any) => o.id), [org.id]);

      const domain = await json(['domain', 'add', org.id, 'cli.example']);
      assert.equal(domain.name, 'cli.example');
      assert.deepEqual((await json(['domain', 'list', org.id])).items.map((d: any) => d.id), [domain.id]);

      const user = await json(['user', 'create', org.id, 'Zoe@CLI.example', '--display-name', 'Zoe', '--password-stdin'], 'a-long-password\n');
      assert.equal(user.login, 'zoe@cli.example');
      assert.equal(user.hasPassword, true);
      const shown = await hmc(['user', 'show', org.id, user.id]);
      assert.match(shown.stdout, /^login: +zoe@cli\.example$/m);
      const table = await hmc(['user', 'list', org.id]);
      assert.match(table.stdout, /^ID +LOGIN +DISPLAY NAME/);
      assert.match(table.stdout, /zoe@cli\.example +Zoe/);
    });

    test('import users: a 5-row CSV with one bad row imports 4, reports the bad row and exits 1', async () => {
      const rsl = await json(['reseller', 'create', 'imp-rsl']);
      const org = await json(['org', 'create', 'imp-org', '--reseller', rsl.id]);
      await json(['domain', 'add', org.id, 'imp.example']);
      const file = join(tdb.dir, 'users.csv');
      writeFileSync(file, IMPORT_CSV.replaceAll('{d}', 'imp.example'));

      const r = await hmc(['import', 'users', org.id, file, '--json']);
      assert.equal(r.code, 1, r.stderr);
      const { request, items } = JSON.parse(r.stdout);
      assert.equal(request.state, 'succeeded');
      assert.deepEqual(request.items, { total: 5, done: 5, failed: 1 });
      assert.deepEqual(items.map((i: any) => i.state), ['succeeded', 'succeeded', 'failed', 'succeeded', 'succeeded']);
      assert.equal(items[2].input.login, 'not an address');
      assert.equal(items[2].error.code, 'invalid_address');
      assert.match(r.stderr, /import 100% \(5\/5 rows, 1 failed\)/);

      const users = await json(['user', 'list', org.id, '--all']);
      assert.deepEqual(users.items.map((u: any) => u.login).sort(), ['ann@imp.example', 'ben@imp.example', 'cat@imp.example', 'dan@imp.example']);
      const shown = await hmc(['request', 'show', request.id]);
      assert.match(shown.stdout, /^items\.failed: +1$/m);
    });

    test('refusals exit 1 with the problem code; an unreachable server exits 2', async () => {
      await json(['reseller', 'create', 'dup-rsl']);
      const dup = await hmc(['reseller', 'create', 'dup-rsl']);
      assert.equal(dup.code, 1);
      assert.match(dup.stderr, /code name_taken, HTTP 409/);
      const dupJson = await hmc(['reseller', 'create', 'dup-rsl', '--json']);
      assert.equal(JSON.parse(dupJson.stdout).code, 'name_taken');

      const bad = await hmc(['reseller', 'list'], '', { HMC_TOKEN: 'hmc_not-a-token' });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /code unauthorized/);

      const down = await hmc(['reseller', 'list', '--url', `http://127.0.0.1:${await freePort()}`]);
      assert.equal(down.code, 2);
      assert.match(down.stderr, /cannot reach the server/);
    });

    test('serve (and worker) stop cleanly on SIGTERM', async () => {
      server.kill('SIGTERM');
      worker?.kill('SIGTERM');
      assert.equal(await exited(server), 0);
      assert.match((await serverOut).stderr, /SIGTERM: stopping/);
      if (worker) {
        assert.equal(await exited(worker), 0);
        assert.match((await workerOut!).stderr, /SIGTERM: stopping/);
      }
    });
  });
}
