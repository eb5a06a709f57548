/**
 * All job-queue SQL, in one place (DESIGN §5). Mechanics follow graphile-worker and pg-boss:
 * one claim statement that also counts the attempt and records the owner; every later write is
 * fenced by that owner; leases expire and a sweeper hands expired jobs back; capped, jittered backoff.
 *
 * Ordering: jobs with the same queue_key (an organization) run strictly in id order. A job is
 * claimable only when no earlier job of its key is still open (queued, including ones waiting on a
 * backoff, or running). Index `jobs_open_by_key (queue_key, id) WHERE state IN ('queued','running')`
 * makes that NOT EXISTS a single index probe; `jobs_ready (run_at, id) WHERE state = 'queued'`
 * serves the scan for ready jobs.
 */
import { sql } from 'kysely';
import type { Db, Dialect } from '../store/db.js';
import type { JobSpec } from './procedure.js';

export const JOB_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export type JobPhase = 'forward' | 'compensation';

export interface JobRow {
  id: number;
  request_id: string;
  phase: JobPhase;
  item_seq: number | null;
  queue_key: string;
  kind: string;
  payload: string;
  state: JobState;
  attempts: number;
  max_attempts: number;
  run_at: number;
  locked_by: string | null;
  locked_until: number | null;
  last_error: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export const DEFAULT_MAX_ATTEMPTS = 8;

/** Insert jobs for a request (inside the request's transaction). */
export async function insertJobs(
  tx: Db,
  requestId: string,
  phase: JobPhase,
  jobs: JobSpec[],
  now: number,
  itemSeq: number | null = null,
): Promise<void> {
  if (jobs.length === 0) return;
  await tx
    .insertInto('jobs')
    .values(
      jobs.map((j) => ({
        request_id: requestId,
        phase,
        item_seq: itemSeq,
        queue_key: j.queueKey,
        kind: j.kind,
        payload: JSON.stringify(j.payload ?? null),
        state: 'queued',
        attempts: 0,
        max_attempts: j.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        run_at: now,
        created_at: now,
      })),
    )
    .execute();
}

/**
 * Claim up to `limit` ready jobs for `owner` under a lease ending at `now + leaseMs`.
 * PostgreSQL: FOR UPDATE SKIP LOCKED lets any number of workers claim concurrently without waiting
 * on each other; a row another worker is claiming is skipped, and its later siblings stay blocked by
 * the NOT EXISTS (they see it as queued or running either way).
 * SQLite: there is one writer, so the UPDATE ... WHERE id IN (SELECT ...) is already atomic.
 */
export async function claimJobs(db: Db, dialect: Dialect, owner: string, limit: number, leaseMs: number, now = Date.now()): Promise<JobRow[]> {
  const until = now + leaseMs;
  if (dialect === 'postgres') {
    const r = await sql<JobRow>`
      WITH next AS (
        SELECT j.id FROM jobs j
        WHERE j.state = 'queued' AND j.run_at <= ${now}
          AND NOT EXISTS (
            SELECT 1 FROM jobs p
            WHERE p.queue_key = j.queue_key AND p.id < j.id AND p.state IN ('queued', 'running'))
        ORDER BY j.run_at, j.id
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      )
      UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1, locked_by = ${owner},
        locked_until = ${until}, started_at = ${now}
      FROM next WHERE jobs.id = next.id
      RETURNING jobs.*`.execute(db);
    return r.rows.sort((a, b) => a.id - b.id);
  }
  const r = await sql<JobRow>`
    UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = ${owner},
      locked_until = ${until}, started_at = ${now}
    WHERE id IN (
      SELECT j.id FROM jobs j
      WHERE j.state = 'queued' AND j.run_at <= ${now}
        AND NOT EXISTS (
          SELECT 1 FROM jobs p
          WHERE p.queue_key = j.queue_key AND p.id < j.id AND p.state IN ('queued', 'running'))
      ORDER BY j.run_at, j.id
      LIMIT ${limit})
    RETURNING *`.execute(db);
  return r.rows.sort((a, b) => a.id - b.id);
}

/** Extend the lease of jobs this owner still holds; returns the ids it still holds (fenced). */
export async function heartbeat(db: Db, owner: string, ids: number[], leaseMs: number, now = Date.now()): Promise<number[]> {
  if (ids.length === 0) return [];
  const rows = await db
    .updateTable('jobs')
    .set({ locked_until: now + leaseMs })
    .where('id', 'in', ids)
    .where('locked_by', '=', owner)
    .where('state', '=', 'running')
    .returning('id')
    .execute();
  return rows.map((r) => Number(r.id));
}

/** Mark a job done. Fenced: false when the lease was lost and another worker owns the job now. */
export async function completeJob(tx: Db, id: number, owner: string, now = Date.now()): Promise<boolean> {
  const r = await tx
    .updateTable('jobs')
    .set({ state: 'done', finished_at: now, locked_by: null, locked_until: null, last_error: null })
    .where('id', '=', id)
    .where('locked_by', '=', owner)
    .where('state', '=', 'running')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Put a job back for a later attempt (fenced). */
export async function retryJob(tx: Db, id: number, owner: string, error: string, runAt: number): Promise<boolean> {
  const r = await tx
    .updateTable('jobs')
    .set({ state: 'queued', run_at: runAt, locked_by: null, locked_until: null, last_error: error })
    .where('id', '=', id)
    .where('locked_by', '=', owner)
    .where('state', '=', 'running')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Fail a job for good (fenced). */
export async function failJob(tx: Db, id: number, owner: string, error: string, now = Date.now()): Promise<boolean> {
  const r = await tx
    .updateTable('jobs')
    .set({ state: 'failed', finished_at: now, locked_by: null, locked_until: null, last_error: error })
    .where('id', '=', id)
    .where('locked_by', '=', owner)
    .where('state', '=', 'running')
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Cancel a request's jobs that have not started (after a permanent failure, before compensating). */
export async function cancelQueuedJobs(tx: Db, requestId: string, phase: JobPhase, itemSeq: number | null, now = Date.now()): Promise<number> {
  let q = tx
    .updateTable('jobs')
    .set({ state: 'cancelled', finished_at: now })
    .where('request_id', '=', requestId)
    .where('phase', '=', phase)
    .where('state', '=', 'queued');
  q = itemSeq === null ? q : q.where('item_seq', '=', itemSeq);
  const r = await q.executeTakeFirst();
  return Number(r.numUpdatedRows);
}

/**
 * Sweeper: jobs whose lease ran out (their worker died or hung) go back to the queue. The attempt
 * was already counted by the claim, so a job that keeps killing its worker runs out of attempts.
 */
export async function sweepExpired(db: Db, now = Date.now()): Promise<number> {
  const r = await db
    .updateTable('jobs')
    .set({ state: 'queued', locked_by: null, locked_until: null, run_at: now, last_error: 'lease expired' })
    .where('state', '=', 'running')
    .where('locked_until', '<', now)
    .executeTakeFirst();
  return Number(r.numUpdatedRows);
}

/** Open jobs of a request (queued or running), to know when it is finished. */
export async function openJobCount(tx: Db, requestId: string): Promise<number> {
  const r = await tx
    .selectFrom('jobs')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('request_id', '=', requestId)
    .where('state', 'in', ['queued', 'running'])
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Queue depth and age of the oldest ready job, for /metrics. */
export async function queueStats(db: Db, now = Date.now()): Promise<{ queued: number; running: number; oldestAgeMs: number }> {
  const rows = await db
    .selectFrom('jobs')
    .select(['state', (eb) => eb.fn.countAll().as('n'), (eb) => eb.fn.min('created_at').as('oldest')])
    .where('state', 'in', ['queued', 'running'])
    .groupBy('state')
    .execute();
  let queued = 0;
  let running = 0;
  let oldest = now;
  for (const r of rows) {
    if (r.state === 'queued') queued = Number(r.n);
    else running = Number(r.n);
    if (r.oldest !== null) oldest = Math.min(oldest, Number(r.oldest));
  }
  return { queued, running, oldestAgeMs: queued + running > 0 ? now - oldest : 0 };
}

/** Capped exponential backoff with full jitter in [50%, 100%]: 1 s, 2 s, 4 s ... up to `capMs`. */
export function backoffMs(attempt: number, baseMs = 1000, capMs = 5 * 60_000, random = Math.random): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp * (0.5 + random() * 0.5));
}
