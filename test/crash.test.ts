/**
 * Crash test (issue 2 acceptance): real processes are SIGKILLed at random points while 200 mutating
 * requests stream in over HTTP; afterwards no request is left non-terminal and the files provider's
 * directories match the database exactly.
 *
 * - SQLite: the one serving process (API + in-process workers) is killed and restarted on the same
 *   data directory and port.
 * - PostgreSQL: one API process without workers and three worker processes; a worker is killed (a
 *   replacement is started each time) and the others take its jobs over once the lease expires.
 *
 * A kill first freezes the victim (SIGSTOP), so the point where it dies is the point where it was
 * stopped, and the test can see whether it was holding jobs at that moment. Some kills wait for a
 * moment when the victim holds a job (always on PostgreSQL, to prove lease takeover); the others land
 * wherever the victim happens to be. The client (6 connections) re-sends an unanswered request with
 * the same Idempotency-Key until it gets an answer, and follows half of its requests until they are
 * done. The operation mix and kill schedule are seeded: HMC_CRASH_SEED=<n> picks another one (timing
 * still varies run to run); HMC_CRASH_LOGS=1 prints the children's log tails.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { configFromEnv, type Config } from '../src/core/config.js';
import { initPlatform } from '../src/app.js';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../src/store/testing.js';
import type { Dialect, Store } from '../src/store/db.js';
import { Child, freePort, killAllChildren, prng, sendUntilAnswered, sleep, type ClientStats } from './crash/harness.js';

const REQUESTS = 200;
/** Concurrent client connections. */
const LANES = 6;
/** Organizations: jobs of one organization run in order, of different ones concurrently. */
const ORGS = 4;
const LEASE_MS = 1500;
const PG_WORKERS = 3;
/** Share of requests whose client waits (polling the request) until it is terminal before going on. */
const FOLLOW = 0.5;
const BASE_SEED = Number(process.env.HMC_CRASH_SEED ?? 424242);

type OpKind = 'create_user' | 'delete_user' | 'update_user' | 'create_group';

interface Op {
  kind: OpKind;
  method: string;
  path: string;
  body?: unknown;
}

interface OpRecord {
  i: number;
  kind: OpKind;
  key: string;
  status: number;
  code: string | undefined;
  attempts: number;
  requestId: string | null;
}

interface KillRecord {
  victim: string;
  /** Jobs the victim held (state running, under its lease) when it was stopped. */
  heldJobs: number[];
  /** Whether this kill waited for a moment when the victim held a job. */
  hunted: boolean;
  /** From the kill until the replacement was ready (SQLite: the API was down that long). */
  downMs: number | null;
}

/** The processes of one scenario: who may be killed, and how a killed one is replaced. */
interface Cluster {
  base: string;
  /** Processes that may be killed now (PostgreSQL: ready workers, never the last one). */
  victims(): Child[];
  /** After a kill: SQLite restarts the server (and waits for it); PostgreSQL starts a new worker in the background. */
  replace(dead: Child): Promise<void>;
  /** Wait for replacements still starting; throws if one failed. */
  settle(): Promise<void>;
  /** Every process started so far, dead or alive. */
  all(): Child[];
}

for (const [n, dialect] of DIALECTS.entries()) {
  describe(`crash [${dialect}]`, { timeout: 180_000 }, () => {
    const seed = BASE_SEED + n;
    const rng = prng(seed);
    let tdb: TestDatabase;
    let config: Config;
    let store: Store;
    let token: string;
    let cluster: Cluster | undefined;
    let ran = false;
    let passed = false;

    before(async () => {
      tdb = await createTestDatabase(dialect);
      config = configFromEnv({}, {
        dataDir: tdb.dir, databaseUrl: tdb.url, filesRoot: join(tdb.dir, 'homes'), bcryptCost: 4, jobLeaseMs: LEASE_MS, logLevel: 'silent',
      });
      token = (await initPlatform(config)).token!;
      store = tdb.open({ poolSize: 2 });
      cluster = await startCluster(dialect, config);
    });

    after(async () => {
      await cluster?.settle().catch(() => {});
      const children = cluster?.all() ?? [];
      if ((ran && !passed) || process.env.HMC_CRASH_LOGS) for (const c of children) console.error(c.logTail());
      await Promise.all(children.map((c) => c.kill()));
      await killAllChildren(); // any a failed start left behind
      await store?.close();
      await tdb?.destroy();
    });

    test(`${REQUESTS} requests while processes are SIGKILLed: every request terminal, homes match the database`, { timeout: 175_000 }, async (t) => {
      ran = true;
      const c = cluster!;
      const stats: ClientStats = { retries: 0, serverErrors: [] };
      const call = (method: string, path: string, body?: unknown, key?: string) => sendUntilAnswered(c.base, method, path, { token, body, key, stats });
      const must = async (method: string, path: string, body?: unknown) => {
        const a = await call(method, path, body);
        assert.ok(a.status < 300, `${method} ${path} -> ${a.status} ${JSON.stringify(a.body)}`);
        return a.body;
      };

      // tenants, before any kill
      const reseller = await must('POST', '/api/v1/resellers', { name: 'crash-rsl' });
      const orgs: Array<{ id: string; domain: string }> = [];
      for (let o = 0; o < ORGS; o++) {
        const org = await must('POST', '/api/v1/organizations', { resellerId: reseller.id, name: `crash-org-${o}` });
        await must('POST', `/api/v1/organizations/${org.id}/domains`, { name: `crash${o}.example` });
        orgs.push({ id: org.id, domain: `crash${o}.example` });
      }
      // pre-hashed, as an import brings them (hashing is slow on purpose and not what is tested here)
      const passwordHash = `{BLF-CRYPT}${bcrypt.hashSync('crash-test-password', 4)}`;

      // the kill schedule: 3-5 kills spread over the run
      const killCount = 3 + Math.floor(rng() * 3);
      const killAt = new Map<number, boolean>(); // op index -> hunt for a job-holding moment
      const span = (REQUESTS - 30) / killCount;
      for (let k = 0; k < killCount; k++) {
        killAt.set(15 + Math.floor(k * span + rng() * span), dialect === 'postgres' || k % 2 === 1);
      }
      const kills: KillRecord[] = [];
      const killErrors: unknown[] = [];
      let killChain = Promise.resolve();

      async function killOne(hunted: boolean): Promise<void> {
        await sleep(Math.floor(rng() * 100));
        const deadline = Date.now() + (hunted ? 5_000 : 0);
        for (;;) {
          const candidates = [...c.victims()].sort(() => rng() - 0.5);
          for (const v of candidates) {
            v.freeze();
            let held = await heldJobs(store, v.owners);
            if (held.length > 0) {
              // a commit the victim sent just before it stopped may still land (a job completing):
              // give it a moment, so `held` is what the victim really leaves behind
              await sleep(100);
              held = await heldJobs(store, v.owners);
            }
            if (held.length > 0 || Date.now() >= deadline) {
              await v.kill();
              const killed = Date.now();
              const record: KillRecord = { victim: v.name, heldJobs: held, hunted, downMs: null };
              kills.push(record);
              await c.replace(v);
              if (dialect === 'sqlite') record.downMs = Date.now() - killed;
              return;
            }
            v.thaw();
          }
          if (Date.now() > deadline + 60_000) throw new Error('no process to kill for a minute');
          await sleep(2 + Math.floor(rng() * 10));
        }
      }

      // the client: LANES connections draw the next operation until REQUESTS have been answered
      const active = new Map<string, string[]>(orgs.map((o) => [o.id, []])); // users acknowledged and not deleted
      const records: OpRecord[] = [];
      const opsByKey = new Map<string, Op>();
      let next = 0;
      let groups = 0;
      const take = (list: string[]) => list.splice(Math.floor(rng() * list.length), 1)[0]!;
      const pickFrom = (list: string[]) => list[Math.floor(rng() * list.length)]!;

      // some clients follow their request until it is done before sending the next one, so the client's
      // pace depends on the workers too and the kills spread over the whole run
      async function untilTerminal(requestId: string): Promise<void> {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const r = await call('GET', `/api/v1/requests/${requestId}`);
          assert.equal(r.status, 200, `GET /api/v1/requests/${requestId} -> ${r.status}`);
          if (r.body.state === 'succeeded' || r.body.state === 'failed') return;
          assert.ok(Date.now() < deadline, `request ${requestId} is still ${r.body.state} after 60 s`);
          await sleep(25);
        }
      }

      async function lane(): Promise<void> {
        for (;;) {
          const i = next++;
          if (i >= REQUESTS) return;
          if (killAt.has(i)) {
            const hunted = killAt.get(i)!;
            killChain = killChain.then(() => killOne(hunted)).catch((e) => void killErrors.push(e));
          }
          const org = orgs[Math.floor(rng() * orgs.length)]!;
          const pool = active.get(org.id)!;
          const r = rng();
          const key = `crash-${seed}-${i}`;
          const users = `/api/v1/organizations/${org.id}/users`;
          let op: Op;
          if (r < 0.6 || (pool.length === 0 && r < 0.95)) {
            op = { kind: 'create_user', method: 'POST', path: users, body: { login: `user${i}@${org.domain}`, displayName: `User ${i}`, passwordHash } };
          } else if (r < 0.85) {
            op = { kind: 'delete_user', method: 'DELETE', path: `${users}/${take(pool)}` };
          } else if (r < 0.95) {
            op = { kind: 'update_user', method: 'PATCH', path: `${users}/${pickFrom(pool)}`, body: { displayName: `Renamed ${i}` } };
          } else {
            const members = pool.length > 0 ? [...new Set([pickFrom(pool), pickFrom(pool)])] : [];
            op = { kind: 'create_group', method: 'POST', path: `/api/v1/organizations/${org.id}/groups`, body: { name: `group-${++groups}`, members } };
          }
          opsByKey.set(key, op);
          const follow = rng() < FOLLOW;
          const a = await call(op.method, op.path, op.body, key);
          if (op.kind === 'create_user' && a.status < 300) pool.push(a.body.id);
          const requestId = a.headers.get('hmc-request-id');
          if (follow && a.status === 202 && requestId) await untilTerminal(requestId);
          records.push({ i, kind: op.kind, key, status: a.status, code: a.body?.code, attempts: a.attempts, requestId });
        }
      }
      await Promise.all(Array.from({ length: LANES }, lane));
      await killChain;
      await c.settle();
      assert.deepEqual(killErrors, [], 'every kill and restart worked');

      // let the platform finish what it was asked to do
      const settled = await quiescent(store, 90_000);
      assert.ok(settled, 'requests and jobs settle within 90 s after the last kill');

      // 1. no request is left non-terminal, every job is finished
      const reqStates = await countBy(store, 'requests', 'state');
      assert.deepEqual(Object.keys(reqStates).filter((s) => s !== 'succeeded' && s !== 'failed'), [], `request states ${JSON.stringify(reqStates)}`);
      const jobStates = await countBy(store, 'jobs', 'state');
      assert.deepEqual(Object.keys(jobStates).filter((s) => !['done', 'failed', 'cancelled'].includes(s)), [], `job states ${JSON.stringify(jobStates)}`);

      // 2. the files provider's directories are exactly the active users' homes
      const userStates = await countBy(store, 'users', 'state');
      assert.equal(userStates.deleting ?? 0, 0, `no user is left half-deleted: ${JSON.stringify(userStates)}`);
      const users = await store.db.selectFrom('users').select(['id', 'org_id']).where('state', '=', 'active').execute();
      const onDisk = homesOnDisk(config.filesRoot);
      assert.deepEqual([...onDisk.homes].sort(), users.map((u) => `${u.org_id}/${u.id}`).sort(), 'home directories = active users');
      assert.deepEqual([...onDisk.orgs].sort(), [...new Set(users.map((u) => u.org_id as string))].sort(), 'organization folders = organizations with active users');
      assert.deepEqual(onDisk.strays, [], 'nothing else under the files root');

      // 3. every answer was a real answer: no 5xx; an acknowledged request survived every kill, and one
      //    Idempotency-Key made exactly one request (a re-sent request was answered by the first one)
      assert.deepEqual(stats.serverErrors, [], 'no 5xx answers');
      assert.equal(records.length, REQUESTS);
      const byKey = new Map(
        (await store.db.selectFrom('requests').select(['id', 'idempotency_key']).where('idempotency_key', 'like', `crash-${seed}-%`).execute())
          .map((r) => [r.idempotency_key as string, r.id as string]),
      );
      for (const r of records) {
        if (r.status < 300) assert.equal(byKey.get(r.key), r.requestId, `op ${r.i} (${r.kind}) was acknowledged as ${r.requestId}`);
        else assert.equal(byKey.has(r.key), false, `op ${r.i} (${r.kind}) answered ${r.status} ${r.code} but left a request behind`);
      }
      const acknowledged = records.filter((r) => r.status < 300).length;
      assert.ok(acknowledged >= REQUESTS / 2, `most operations succeed (${acknowledged}/${REQUESTS})`);
      // a client whose answer was lost may re-send long after: it gets the same request, even when the
      // object is gone by now (a deleted user purged, a created one deleted later)
      const replays = await Promise.all(records.filter((r) => r.status < 300).map(async (r) => {
        const op = opsByKey.get(r.key)!;
        const a = await call(op.method, op.path, op.body, r.key);
        return { i: r.i, kind: r.kind, status: a.status, requestId: a.headers.get('hmc-request-id'), replayed: a.headers.get('idempotent-replayed'), expected: r.requestId };
      }));
      assert.deepEqual(replays.filter((x) => x.status >= 300 || x.requestId !== x.expected || x.replayed !== 'true'), [], 're-sent requests replay the first answer');

      // 4. kills happened, some while the victim held jobs, and those jobs were taken over once their
      //    lease expired (PostgreSQL: by another worker; SQLite: by the restarted server), claimed again
      //    (attempts > 1) and finished
      assert.equal(kills.length, killCount);
      const held = [...new Set(kills.flatMap((k) => k.heldJobs))]; // a job taken over may be held by the next victim too
      if (dialect === 'postgres') assert.ok(held.length > 0, `a worker was killed while holding a job: ${JSON.stringify(kills)}`);
      const heldRows = held.length === 0 ? [] : await store.db.selectFrom('jobs').select(['id', 'attempts', 'state']).where('id', 'in', held).execute();
      const takenOver = heldRows.filter((j) => Number(j.attempts) > 1);
      if (held.length > 0) assert.ok(takenOver.length > 0, `a job held by a killed process was claimed again: ${JSON.stringify(heldRows)}`);
      const retried = await store.db.selectFrom('jobs').select('id').where('attempts', '>', 1).execute();

      const statuses: Record<string, number> = {};
      for (const r of records) {
        const label = `${r.kind} ${r.status}${r.code ? ` ${r.code}` : ''}`;
        statuses[label] = (statuses[label] ?? 0) + 1;
      }
      t.diagnostic(JSON.stringify({
        dialect, seed, requests: records.length, acknowledged, resent: stats.retries,
        opsResent: records.filter((r) => r.attempts > 1).length, replayedAtEnd: replays.length,
        kills: kills.map((k) => ({ ...k, heldJobs: k.heldJobs.length })), heldJobsTakenOver: `${takenOver.length}/${held.length}`, jobsRunMoreThanOnce: retried.length,
        requestStates: reqStates, jobStates, activeUsers: users.length, statuses,
      }));
      passed = true;
    });
  });
}

async function startCluster(dialect: Dialect, config: Config): Promise<Cluster> {
  const port = await freePort();
  const env = {
    HMC_DATA_DIR: config.dataDir,
    HMC_DATABASE_URL: config.databaseUrl ?? '',
    HMC_HOST: '127.0.0.1',
    HMC_PORT: String(port),
    HMC_FILES_ROOT: config.filesRoot,
    HMC_JOB_LEASE_MS: String(LEASE_MS),
    HMC_BCRYPT_COST: '4',
    HMC_LOG_LEVEL: 'warn',
  };
  const base = `http://127.0.0.1:${port}`;
  const started: Child[] = [];
  const track = (c: Child) => (started.push(c), c);
  if (dialect === 'sqlite') {
    let generation = 0;
    let server = track(await Child.start(`serve#${generation}`, 'serve', { ...env, HMC_WORKERS: '2' }));
    return {
      base,
      victims: () => [server],
      async replace() {
        server = track(await Child.start(`serve#${++generation}`, 'serve', { ...env, HMC_WORKERS: '2' }));
      },
      settle: async () => {},
      all: () => started,
    };
  }
  let generation = 0;
  track(await Child.start('api', 'serve', { ...env, HMC_WORKERS: '0' }));
  const spawnWorker = async () => {
    const w = track(await Child.start(`worker#${generation++}`, 'worker', env));
    workers.push(w);
  };
  const workers: Child[] = [];
  await Promise.all(Array.from({ length: PG_WORKERS }, spawnWorker));
  const pending = new Set<Promise<void>>();
  return {
    base,
    victims: () => (workers.length >= 2 ? [...workers] : []),
    async replace(old) {
      workers.splice(workers.indexOf(old), 1);
      const p: Promise<void> = spawnWorker().finally(() => pending.delete(p));
      pending.add(p);
    },
    async settle() {
      await Promise.all([...pending]);
    },
    all: () => started,
  };
}

/** Ids of the jobs these lease owners hold (running under their lease). */
async function heldJobs(store: Store, owners: string[]): Promise<number[]> {
  if (owners.length === 0) return [];
  const rows = await store.db.selectFrom('jobs').select('id').where('state', '=', 'running').where('locked_by', 'in', owners).execute();
  return rows.map((r) => Number(r.id));
}

async function countBy(store: Store, table: string, column: string): Promise<Record<string, number>> {
  const rows = await store.db.selectFrom(table).select([column, (eb) => eb.fn.countAll().as('n')]).groupBy(column).execute();
  return Object.fromEntries(rows.map((r) => [String(r[column]), Number(r.n)]));
}

/** Poll until no request is running or compensating and no job is queued or running. */
async function quiescent(store: Store, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await store.db.selectFrom('requests').select((eb) => eb.fn.countAll().as('n')).where('state', 'in', ['running', 'compensating']).executeTakeFirstOrThrow();
    const jobs = await store.db.selectFrom('jobs').select((eb) => eb.fn.countAll().as('n')).where('state', 'in', ['queued', 'running']).executeTakeFirstOrThrow();
    if (Number(open.n) === 0 && Number(jobs.n) === 0) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

/** `<root>/<orgId>/<userId>/` directories, organization folders, and anything else found there. */
function homesOnDisk(root: string): { homes: Set<string>; orgs: Set<string>; strays: string[] } {
  const homes = new Set<string>();
  const orgs = new Set<string>();
  const strays: string[] = [];
  if (!existsSync(root)) return { homes, orgs, strays };
  for (const o of readdirSync(root, { withFileTypes: true })) {
    if (!o.isDirectory()) {
      strays.push(o.name);
      continue;
    }
    orgs.add(o.name);
    for (const u of readdirSync(join(root, o.name), { withFileTypes: true })) {
      if (u.isDirectory()) homes.add(`${o.name}/${u.name}`);
      else strays.push(`${o.name}/${u.name}`);
    }
  }
  return { homes, orgs, strays };
}
