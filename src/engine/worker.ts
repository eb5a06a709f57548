import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Errors, HmcError, isHmcError } from '../core/errors.js';
import type { Engine, FinishedRequest } from './engine.js';
import { backoffMs, claimJobs, claimNextOfKey, completeJob, heartbeat, retryJob, sweepExpired, type JobRow } from './queue.js';

export interface WorkerOptions {
  /** Jobs run at once by this worker. */
  concurrency?: number;
  leaseMs?: number;
  /** How often to look for jobs when nothing woke us (other processes' jobs on PostgreSQL). */
  pollMs?: number;
  /** Default host-enforced timeout per job. */
  jobTimeoutMs?: number;
}

/**
 * Queue keys with a job running in this process, shared by the engine's workers. A job of such a key
 * cannot be claimed before the running one finishes, and the worker that finishes it claims the key's
 * next job in the same transaction, so jobs queued for that key need no wake-up: during a burst of
 * requests for one organization each commit woke both workers into a claim that found nothing
 * (1,780 claims for 125 jobs run, ~0.2 ms of SQLite each).
 */
const runningKeys = new WeakMap<Engine, Map<string, number>>();

/**
 * A worker claims jobs under a lease, heartbeats while they run, and records each outcome through
 * the engine. Many workers (in-process or `hmc worker` processes) may share one database.
 */
export class Worker {
  readonly owner: string;
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly jobTimeoutMs: number;
  private readonly active = new Map<number, { job: JobRow; abort: AbortController; done: Promise<void> }>();
  private stopping = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private beat: NodeJS.Timeout | null = null;
  private lastSweep = 0;
  /** Something happened (jobs queued, a job finished) since the loop last looked; a wake while it is not waiting is not lost. */
  private poked = false;
  /** `keys`: the queue keys of the jobs just queued (none given: wake regardless). */
  private readonly onJobs = (keys?: readonly string[]) => {
    if (keys && keys.length > 0 && keys.every((k) => this.keys.has(k))) return;
    this.poke();
  };
  private readonly keys: Map<string, number>;

  constructor(private readonly engine: Engine, opts: WorkerOptions = {}) {
    this.owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.concurrency = opts.concurrency ?? 4;
    this.leaseMs = opts.leaseMs ?? 30_000;
    this.pollMs = opts.pollMs ?? 500;
    this.jobTimeoutMs = opts.jobTimeoutMs ?? 120_000;
    let keys = runningKeys.get(engine);
    if (!keys) runningKeys.set(engine, (keys = new Map()));
    this.keys = keys;
  }

  start(): this {
    if (this.loop) return this;
    this.engine.signals.on('jobs', this.onJobs);
    this.beat = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(this.leaseMs / 3)));
    this.beat.unref();
    this.loop = this.run();
    return this;
  }

  /** Stop claiming; wait for running jobs (aborting them after `graceMs`). */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    this.engine.signals.off('jobs', this.onJobs);
    this.wake?.();
    await this.loop;
    const t = setTimeout(() => {
      for (const a of this.active.values()) a.abort.abort();
    }, graceMs);
    // a job that finished as we stopped may have handed its slot to the next job of its key: wait for that too
    while (this.active.size > 0) await Promise.all([...this.active.values()].map((a) => a.done));
    clearTimeout(t);
    if (this.beat) clearInterval(this.beat);
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let claimed: JobRow[] = [];
      let failed = false;
      this.poked = false;
      try {
        const now = Date.now();
        if (now - this.lastSweep > Math.min(1000, this.leaseMs / 2)) {
          this.lastSweep = now;
          await this.engine.txr.run((tx) => sweepExpired(tx, now));
        }
        const free = this.concurrency - this.active.size;
        if (free > 0) {
          claimed = await this.engine.txr.run((tx) => claimJobs(tx, this.engine.store.dialect, this.owner, free, this.leaseMs));
          for (const job of claimed) this.startJob(job);
        }
      } catch (e) {
        failed = true;
        this.engine.log.warn({ err: e }, 'worker loop: claim failed, retrying');
      }
      if (this.stopping) break;
      if (claimed.length === 0 || this.active.size >= this.concurrency) {
        // A job that finished (or jobs queued) while we were claiming would otherwise leave us waiting for
        // the next poll. With one organization's jobs running one after another, PostgreSQL (claim and
        // completion on different connections) lost such wakes often: 10,000 jobs drained in 135 s, 95 s without.
        if (this.poked && !failed) continue;
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, this.active.size >= this.concurrency ? 5_000 : this.pollMs);
          function done() {
            clearTimeout(t);
            resolve();
          }
          this.wake = done;
        });
        this.wake = null;
      }
    }
  }

  private poke(): void {
    this.poked = true;
    this.wake?.();
  }

  private startJob(job: JobRow): void {
    const abort = new AbortController();
    this.keys.set(job.queue_key, (this.keys.get(job.queue_key) ?? 0) + 1);
    const done = this.execute(job, abort).then(
      (next) => this.finished(job, next),
      (e) => {
        this.engine.log.error({ err: e, job: job.id }, 'job execution failed');
        this.finished(job, null);
      },
    );
    this.active.set(job.id, { job, abort, done });
  }

  /** A job's outcome is recorded: run the next job of its key if that was claimed with it, else look for work. */
  private finished(job: JobRow, next: JobRow | null): void {
    this.active.delete(job.id);
    const n = (this.keys.get(job.queue_key) ?? 1) - 1;
    if (n > 0) this.keys.set(job.queue_key, n);
    else this.keys.delete(job.queue_key);
    if (next) this.startJob(next);
    else this.poke();
  }

  /** Runs a job and records its outcome; returns the next job of its key when it was claimed in the same transaction. */
  private async execute(job: JobRow, abort: AbortController): Promise<JobRow | null> {
    const engine = this.engine;
    const log = engine.log.child({ job: job.id, kind: job.kind, request: job.request_id });
    const handler = engine.handler(job.kind);
    const started = performance.now();
    let error: HmcError | null = null;
    if (!handler) error = Errors.backendFailed(`no handler for job kind ${job.kind}`, { retryable: false });
    else if (job.attempts > job.max_attempts) error = Errors.backendFailed(`gave up after ${job.max_attempts} attempts: ${job.last_error ?? ''}`, { retryable: false });
    else {
      const timeoutMs = handler.timeoutMs ?? this.jobTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          handler.run(JSON.parse(job.payload), { signal: abort.signal, log, requestId: job.request_id, jobId: job.id }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              abort.abort();
              reject(Errors.unavailable(`job timed out after ${timeoutMs} ms`, { retryable: true }));
            }, timeoutMs);
          }),
        ]);
      } catch (e) {
        error = isHmcError(e) ? e : Errors.backendFailed(e instanceof Error ? e.message : String(e), { cause: e, retryable: true });
      } finally {
        clearTimeout(timer);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    try {
      if (!error) {
        let finished: FinishedRequest | null = null;
        const next = await engine.txr.run(async (tx) => {
          finished = null;
          if (!(await completeJob(tx, job.id, this.owner))) return null;
          finished = await engine.jobDone(tx, job);
          return this.stopping ? null : claimNextOfKey(tx, engine.store.dialect, this.owner, job.queue_key, this.leaseMs);
        });
        engine.metricsJob(job.kind, 'done', seconds);
        engine.metricsFinished(finished);
        return next;
      } else if (error.retryable && job.attempts < job.max_attempts) {
        log.warn({ err: error.message, attempt: job.attempts }, 'job failed, will retry');
        await engine.txr.run((tx) => retryJob(tx, job.id, this.owner, JSON.stringify(error!.toJSON()), Date.now() + backoffMs(job.attempts)));
        engine.metricsJob(job.kind, 'retry', seconds);
      } else {
        log.error({ err: error.message }, 'job failed for good');
        await engine.jobFailedForGood(job, this.owner, error);
        engine.metricsJob(job.kind, 'failed', seconds);
      }
    } catch (e) {
      // the lease will expire and the sweeper hands the job to another worker
      log.error({ err: e }, 'could not record job outcome');
    }
    return null;
  }

  private async heartbeat(): Promise<void> {
    const ids = [...this.active.keys()];
    if (ids.length === 0) return;
    try {
      const held = new Set(await this.engine.txr.run((tx) => heartbeat(tx, this.owner, ids, this.leaseMs)));
      for (const id of ids) {
        if (!held.has(id)) this.active.get(id)?.abort.abort(); // lost the lease: stop work, the outcome is fenced anyway
      }
    } catch (e) {
      this.engine.log.warn({ err: e }, 'heartbeat failed');
    }
  }
}
