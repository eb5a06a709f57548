import type { Engine, JobHandler } from '../engine/engine.js';
import type { JobSpec } from '../engine/procedure.js';
import { Errors } from '../core/errors.js';
import { doveadm } from './doveadm.js';
import { renderedDirs } from './follow.js';
import { readManifest } from './instance.js';

/**
 * Dovecot's auth cache on the data planes this host manages (render.ts turns it on: auth_cache_size,
 * auth_cache_ttl, no negative entries). Without it every LMTP delivery and every quota-status check asks the
 * database for the recipient (two to three userdb queries a message): Dovecot's auth process spent 1.21 s of
 * CPU per 1,000 messages on SQLite against 0.09 s on passwd-files (bench --suite dataplane, cpuSeconds); with
 * it, a recipient costs a query once per TTL.
 *
 * A cached answer must never outlive the change that made it wrong (a password, a quota, a suspended tenant,
 * a moved mailbox): every change the engine makes is followed by a flush job in the same request
 * (Engine.followChanges), so a request is done only once every Dovecot here has forgotten what it held, and
 * `?wait=true` returns with the change in force. The job flushes the whole cache (`doveadm auth cache flush`,
 * one run per Dovecot, ~20 ms): what a change touches can be many names (an organization's users, a group's
 * members' ACL groups), and the next lookups refill it. Flush jobs share one queue key, so they run one at a
 * time; a job that was already visible (committed) when a flush began is covered by that flush and ends
 * without another (a bulk import's thousands of changes cost a few flushes, not one each). Changes the
 * engine's jobs make outside a procedure flush themselves (the move's copy job: dovecot-mailstore.ts).
 *
 * Negative answers are never cached (auth_cache_negative_ttl = 0): a user created a moment ago is found at
 * once, and quota-status's lookup of an address before it existed cannot make LMTP bounce it later
 * (dataplane-facts §8). The TTL bounds how long a change made behind the engine's back (an UPDATE by hand)
 * goes unseen. A Dovecot that is not running holds no cache: nothing to flush.
 */

export const AUTH_CACHE_FLUSH_JOB = 'dataplane.flush_auth_cache';
const QUEUE_KEY = 'dataplane:auth-cache';

/** The engine follower: a flush after every change, when this host manages data planes at all. */
export function followAuthCaches(root: string | undefined): (procedureId: string) => JobSpec[] {
  return () => (root ? [{ kind: AUTH_CACHE_FLUSH_JOB, payload: {}, queueKey: QUEUE_KEY, maxAttempts: 5 }] : []);
}

/** Flush the auth cache of every running Dovecot rendered under `root`. */
export async function flushAuthCaches(root: string | undefined): Promise<void> {
  for (const dir of renderedDirs(root)) await flushAuthCache(readManifest(dir).dovecotConfig, dir);
}

/** Flush the auth cache of one Dovecot (`conf`: its dovecot.conf); `what` names it in an error. */
export async function flushAuthCache(conf: string, what: string): Promise<void> {
  const r = await doveadm(conf, ['auth', 'cache', 'flush'], { timeoutMs: 30_000 });
  // 75 (EX_TEMPFAIL): no auth socket, that Dovecot is not running, so it caches nothing
  if (r.code !== 0 && r.code !== 75) {
    throw Errors.backendFailed(`doveadm auth cache flush (${what}) exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`, { retryable: true });
  }
}

export function authCacheJobs(engine: Engine, root: string | undefined): Record<string, JobHandler> {
  /** Flush jobs that were visible when the last successful flush began: that flush covered their changes. */
  let covered = new Set<number>();
  return {
    [AUTH_CACHE_FLUSH_JOB]: {
      timeoutMs: 2 * 60_000,
      async run(_payload, ctx) {
        if (covered.has(ctx.jobId)) return;
        const visible = await engine.store.db.selectFrom('jobs').select('id').where('kind', '=', AUTH_CACHE_FLUSH_JOB)
          .where('state', 'in', ['queued', 'running']).execute();
        await flushAuthCaches(root);
        covered = new Set(visible.map((j) => Number(j.id)));
      },
    },
  };
}
