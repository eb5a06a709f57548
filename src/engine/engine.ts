import { EventEmitter } from 'node:events';
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { Logger } from 'pino';
import { Errors, HmcError, isHmcError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { roleCovers, SYSTEM, type Principal } from '../core/tenancy.js';
import { isInvalidText, isUniqueViolation, type Db, type Store } from '../store/db.js';
import { canonicalJson, redact, sha256, splitSecrets } from './redact.js';
import type { BatchSpec, BillingEventSpec, JobSpec, PrepareDeps, ProcContext, Procedure, TargetSpec } from './procedure.js';
import { withSavepoint, type TxRunner } from './tx-runner.js';
import { cancelQueuedJobs, failJob, insertJobs, openJobCount, type JobRow } from './queue.js';
import { appendAudit, json } from './audit.js';
import { insertRow, runSql } from '../store/compiled.js';

// TypeBox's compiler knows no string formats until they are registered; without this every input
// with a `format` (e.g. a token's `expiresAt`) fails with "Unknown format". RFC 3339 date-time, as the HTTP layer checks it.
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', (v) => DATE_TIME_RE.test(v) && !Number.isNaN(Date.parse(v)));

export const REQUEST_STATES = ['running', 'compensating', 'succeeded', 'failed'] as const;
export type RequestState = (typeof REQUEST_STATES)[number];

/** The batch runner's own job kind. Persisted: never rename. */
export const BATCH_JOB = 'engine.run_batch';
/** Items of a batch processed per transaction. */
const BATCH_CHUNK = 100;
/** Largest batch accepted in one request. */
export const MAX_BATCH_ITEMS = 100_000;

export interface JobContext {
  signal: AbortSignal;
  log: Logger;
  requestId: string;
  jobId: number;
}

/** A job kind's handler: converges a back end to the desired state; must be idempotent. */
export interface JobHandler {
  run(payload: unknown, ctx: JobContext): Promise<void>;
  /** The host enforces this; a timeout is retryable. */
  timeoutMs?: number;
}

export interface SubmitOptions {
  idempotencyKey?: string;
}

export interface SubmitResult<R = unknown> {
  requestId: string;
  state: RequestState;
  result: R;
  /** True when an Idempotency-Key matched an earlier request and this is its stored answer. */
  replayed: boolean;
}

export interface EngineMetrics {
  observe(procedure: string, outcome: 'ok' | 'rejected' | 'error', seconds: number): void;
  jobFinished(kind: string, outcome: 'done' | 'retry' | 'failed', seconds: number): void;
  /** A request became terminal: at commit when it queued no job, else when its last job finished. */
  requestFinished(procedure: string, state: 'succeeded' | 'failed', seconds: number): void;
}

/** What became terminal in a transaction, counted once it committed. */
export interface FinishedRequest {
  procedure: string;
  state: 'succeeded' | 'failed';
  seconds: number;
}

export interface EngineDeps {
  store: Store;
  txr: TxRunner;
  log: Logger;
  prepare: PrepareDeps;
  metrics?: EngineMetrics;
}

interface Recorded {
  target: TargetSpec | null;
  before: unknown;
  after: unknown;
  jobs: JobSpec[];
  events: BillingEventSpec[];
  compensation: unknown;
  batches: { requestId: string; spec: BatchSpec }[];
}

const newRecorded = (): Recorded => ({ target: null, before: undefined, after: undefined, jobs: [], events: [], compensation: undefined, batches: [] });


/**
 * The provisioning engine (HMC's MPS): validates, authorizes and runs procedures in one transaction
 * each, keeps requests as durable records, and turns job outcomes into request outcomes, running a
 * procedure's compensation when one of its jobs fails for good.
 */
export class Engine {
  readonly store: Store;
  readonly txr: TxRunner;
  readonly log: Logger;
  private readonly procedures = new Map<string, Procedure<any, any, any>>();
  private readonly validators = new Map<string, TypeCheck<TSchema>>();
  private readonly handlers = new Map<string, JobHandler>();
  private readonly eventFollowers: Array<(events: readonly BillingEventSpec[]) => JobSpec[]> = [];
  private readonly changeFollowers: Array<(procedureId: string) => JobSpec[]> = [];
  private readonly prepareDeps: PrepareDeps;
  private readonly metrics: EngineMetrics | undefined;
  /** Emits 'jobs' when a commit queued jobs, so in-process workers wake at once. */
  readonly signals = new EventEmitter();

  constructor(deps: EngineDeps) {
    this.store = deps.store;
    this.txr = deps.txr;
    this.log = deps.log;
    this.prepareDeps = deps.prepare;
    this.metrics = deps.metrics;
    this.signals.setMaxListeners(0);
    this.handlers.set(BATCH_JOB, { run: (p, ctx) => this.runBatch(p, ctx), timeoutMs: 30 * 60_000 });
  }

  get db(): Db {
    return this.store.db;
  }

  /** Register procedures (each id once). */
  register(...procs: Procedure<any, any, any>[]): this {
    for (const p of procs) {
      if (this.procedures.has(p.id)) throw new Error(`procedure ${p.id} registered twice`);
      this.procedures.set(p.id, p);
      this.validators.set(p.id, TypeCompiler.Compile(p.input));
    }
    return this;
  }

  /** Register the handler for a job kind. */
  /**
   * Jobs that follow from the billing events of a change (e.g. the data plane must take note of a domain
   * or a tenant that changed state), added to the same transaction as the events. Areas that merely observe
   * changes register here instead of every procedure that makes them knowing about them.
   */
  followEvents(fn: (events: readonly BillingEventSpec[]) => JobSpec[]): this {
    this.eventFollowers.push(fn);
    return this;
  }

  /**
   * Jobs that follow every change (a procedure's run or its compensation), added to the change's own jobs: the
   * request waits for them like for any of its jobs, and fails (compensated) when one fails for good. For what
   * must hold before a change counts as made, whatever the change (e.g. the data plane's auth caches forget
   * what they held: dataplane/auth-cache.ts).
   */
  followChanges(fn: (procedureId: string) => JobSpec[]): this {
    this.changeFollowers.push(fn);
    return this;
  }

  private followersOf(procedureId: string, rec: Recorded): void {
    for (const f of this.changeFollowers) rec.jobs.push(...f(procedureId));
  }

  handle(kind: string, handler: JobHandler): this {
    if (this.handlers.has(kind)) throw new Error(`job kind ${kind} registered twice`);
    this.handlers.set(kind, handler);
    return this;
  }

  handler(kind: string): JobHandler | undefined {
    return this.handlers.get(kind);
  }

  procedure(id: string): Procedure<any, any, any> {
    const p = this.procedures.get(id);
    if (!p) throw Errors.notFound(`no procedure ${id}`);
    return p;
  }

  procedureIds(): string[] {
    return [...this.procedures.keys()];
  }

  /** Validate `input` against a procedure's schema; 400 `invalid_request` with the failing fields. */
  validate(procId: string, input: unknown): unknown {
    const check = this.validators.get(procId);
    if (!check) throw Errors.notFound(`no procedure ${procId}`);
    if (check.Check(input)) return input;
    const errors = [...check.Errors(input)].slice(0, 20).map((e) => ({ path: e.path || '/', message: e.message }));
    throw Errors.invalidRequest(`input does not match ${procId}: ${errors[0]?.path} ${errors[0]?.message}`, { errors });
  }

  /** Submit one procedure call as a request. */
  async submit<R = unknown>(principal: Principal, procId: string, rawInput: unknown, opts: SubmitOptions = {}): Promise<SubmitResult<R>> {
    const started = performance.now();
    const proc = this.procedure(procId);
    try {
      const input = this.validate(procId, rawInput);
      if (!roleCovers(principal.role, proc.minRole)) throw Errors.forbidden(`${procId} needs the ${proc.minRole} role or higher`);
      const redacted = redact(input, proc.secrets);
      const key = opts.idempotencyKey && principal.tokenId ? opts.idempotencyKey : undefined;
      // only a request with a key can be replayed, so only then is its input hashed (and compared on replay)
      const inputHash = key ? sha256(procId + canonicalJson(redacted)) : null;
      if (key) {
        const prior = await this.findByKey(principal.tokenId!, key);
        if (prior) return this.replay<R>(prior, inputHash!);
      }
      const prepared = proc.prepare ? await proc.prepare(input as never, this.prepareDeps) : input;
      let out: { requestId: string; state: RequestState; result: R; jobs: number; keys: string[] | undefined };
      try {
        out = await this.txr.run(async (tx) => {
          const requestId = newId('request');
          const now = Date.now();
          const rec = newRecorded();
          const t0 = performance.now();
          const result = (await proc.run(this.context(tx, principal, requestId, now, rec), prepared)) as R;
          this.followersOf(procId, rec);
          const state: RequestState = rec.jobs.length > 0 ? 'running' : 'succeeded';
          // the hot path's INSERTs skip Kysely's builder (store/compiled.ts)
          await insertRow(tx, 'requests', {
            id: requestId,
            procedure: procId,
            state,
            actor: principal.actor,
            token_id: principal.tokenId,
            caller_role: principal.role,
            principal: JSON.stringify(principal),
            reseller_id: rec.target?.resellerId ?? null,
            org_id: rec.target?.orgId ?? null,
            target_type: rec.target?.type ?? null,
            target_id: rec.target?.id ?? null,
            input: JSON.stringify(redacted),
            result: json(redact(result, proc.secrets)),
            idempotency_key: key ?? null,
            input_hash: inputHash,
            compensation: json(rec.compensation),
            jobs_total: rec.jobs.length,
            created_at: now,
            updated_at: now,
            finished_at: state === 'succeeded' ? now : null,
          });
          await this.writeRecorded(tx, principal, requestId, rec, now, null);
          await appendAudit(tx, {
            requestId, principal, procedure: procId, phase: 'execute', outcome: state === 'succeeded' ? 'succeeded' : 'accepted',
            target: rec.target, input: redacted, before: rec.before, after: rec.after, error: null, durationMs: performance.now() - t0, now,
          });
          // the queue keys tell in-process workers whether the new jobs can be claimed at all (see worker.ts)
          const keys = rec.batches.length > 0 ? undefined : rec.jobs.map((j) => j.queueKey);
          return { requestId, state, result, jobs: rec.jobs.length + rec.batches.length, keys };
        });
      } catch (e) {
        if (key) {
          // a concurrent request with the same key won the race: answer with it. Its rows usually make this
          // one fail on the procedure's own uniqueness check (e.g. address_taken) before the request row's key
          // index is reached, so any error is checked, not only a unique violation on the key.
          const prior = await this.findByKey(principal.tokenId!, key);
          if (prior) return this.replay<R>(prior, inputHash!);
        }
        throw e;
      }
      if (out.jobs > 0) this.signals.emit('jobs', out.keys);
      const seconds = (performance.now() - started) / 1000;
      this.metrics?.observe(procId, 'ok', seconds);
      if (out.state === 'succeeded') this.metrics?.requestFinished(procId, 'succeeded', seconds);
      return { requestId: out.requestId, state: out.state, result: out.result, replayed: false };
    } catch (e) {
      const err = this.mapError(e);
      this.metrics?.observe(procId, err.kind === 'internal' || err.kind === 'unavailable' ? 'error' : 'rejected', (performance.now() - started) / 1000);
      throw err;
    }
  }

  /**
   * Submit a batch: one request of many items of one procedure, run in the background by a batch
   * job with per-item results and progress. One bad item never aborts the batch.
   */
  async submitBatch(principal: Principal, procId: string, items: Record<string, unknown>[], opts: SubmitOptions & { target: TargetSpec }): Promise<SubmitResult<{ items: number }>> {
    const proc = this.procedure(procId);
    if (!roleCovers(principal.role, proc.minRole)) throw Errors.forbidden(`${procId} needs the ${proc.minRole} role or higher`);
    if (items.length === 0) throw Errors.invalidRequest('a batch needs at least one item');
    if (items.length > MAX_BATCH_ITEMS) throw Errors.tooManyItems(`a batch holds at most ${MAX_BATCH_ITEMS} items`);
    const summary = { batch: procId, items: items.length, target: opts.target.id };
    const inputHash = sha256(`batch:${procId}` + canonicalJson(items.map((i) => redact(i, proc.secrets))));
    const key = opts.idempotencyKey && principal.tokenId ? opts.idempotencyKey : undefined;
    if (key) {
      const prior = await this.findByKey(principal.tokenId!, key);
      if (prior) return this.replay(prior, inputHash);
    }
    const requestId = newId('request');
    const now = Date.now();
    try {
      await this.txr.run((tx) => this.insertBatch(tx, principal, requestId, { procedure: procId, items, target: opts.target }, key ?? null, inputHash, now));
    } catch (e) {
      if (key && isUniqueViolation(e)) {
        const prior = await this.findByKey(principal.tokenId!, key);
        if (prior) return this.replay(prior, inputHash);
      }
      throw this.mapError(e);
    }
    this.signals.emit('jobs');
    return { requestId, state: 'running', result: { items: items.length }, replayed: false };
  }

  /** The rows of a batch request: the request, its pending items, its batch job and the audit record. */
  private async insertBatch(tx: Db, principal: Principal, requestId: string, spec: BatchSpec, key: string | null, inputHash: string, now: number): Promise<void> {
    const proc = this.procedure(spec.procedure);
    const { items, target } = spec;
    const summary = { batch: proc.id, items: items.length, target: target.id };
    await tx
      .insertInto('requests')
      .values({
        id: requestId, procedure: proc.id, state: 'running', actor: principal.actor, token_id: principal.tokenId,
        caller_role: principal.role, principal: JSON.stringify(principal), reseller_id: target.resellerId,
        org_id: target.orgId, target_type: target.type, target_id: target.id, input: JSON.stringify(summary),
        result: null, idempotency_key: key, input_hash: inputHash, items_total: items.length, jobs_total: 1,
        created_at: now, updated_at: now,
      })
      .execute();
    for (let i = 0; i < items.length; i += 500) {
      await tx
        .insertInto('request_items')
        .values(
          items.slice(i, i + 500).map((item, j) => {
            const { open, secret } = splitSecrets(item, proc.secrets);
            return { request_id: requestId, seq: i + j, state: 'pending', input: JSON.stringify(open), secret: json(secret ?? undefined) };
          }),
        )
        .execute();
    }
    await insertJobs(tx, requestId, 'forward', [{ kind: BATCH_JOB, payload: { requestId }, queueKey: `batch:${requestId}`, maxAttempts: 20, runAt: spec.runAt }], now);
    await appendAudit(tx, {
      requestId, principal, procedure: proc.id, phase: 'execute', outcome: 'accepted', target, input: summary,
      before: undefined, after: undefined, error: null, durationMs: 0, now,
    });
  }

  /** The batch job: processes pending items in chunks, each chunk one transaction, each item a savepoint. */
  private async runBatch(payload: unknown, ctx: JobContext): Promise<void> {
    const { requestId } = payload as { requestId: string };
    const req = await this.db.selectFrom('requests').selectAll().where('id', '=', requestId).executeTakeFirst();
    if (!req) return;
    const proc = this.procedure(req.procedure as string);
    const principal = JSON.parse(req.principal as string) as Principal;
    for (;;) {
      if (ctx.signal.aborted) throw Errors.unavailable('batch interrupted', { retryable: true });
      const rows = await this.db
        .selectFrom('request_items')
        .select(['seq', 'input', 'secret'])
        .where('request_id', '=', requestId)
        .where('state', '=', 'pending')
        .orderBy('seq')
        .limit(BATCH_CHUNK)
        .execute();
      if (rows.length === 0) return;
      // Validation and slow preparation (password hashing) happen outside the transaction.
      const prepared = await Promise.all(
        rows.map(async (r) => {
          const input = { ...JSON.parse(r.input as string), ...(r.secret ? JSON.parse(r.secret as string) : {}) };
          try {
            const valid = this.validate(proc.id, input);
            return { seq: Number(r.seq), input: valid, prepared: proc.prepare ? await proc.prepare(valid as never, this.prepareDeps) : valid, error: null as HmcError | null };
          } catch (e) {
            return { seq: Number(r.seq), input, prepared: null, error: this.mapError(e) };
          }
        }),
      );
      let queued = 0;
      await this.txr.run(async (tx) => {
        let ok = 0;
        let failed = 0;
        for (const item of prepared) {
          const now = Date.now();
          let result: unknown = null;
          let error: HmcError | null = item.error;
          let rec = newRecorded();
          if (!error) {
            const t0 = performance.now();
            try {
              result = await withSavepoint(tx, async () => {
                rec = newRecorded();
                const r = await proc.run(this.context(tx, principal, requestId, now, rec), item.prepared);
                this.followersOf(proc.id, rec);
                await this.writeRecorded(tx, principal, requestId, rec, now, item.seq);
                await appendAudit(tx, {
                  requestId, principal, procedure: proc.id, phase: 'execute', outcome: 'succeeded', target: rec.target,
                  input: redact(item.input, proc.secrets), before: rec.before, after: rec.after, error: null, durationMs: performance.now() - t0, now,
                });
                return r;
              });
              queued += rec.jobs.length;
            } catch (e) {
              error = this.mapError(e);
            }
          }
          if (error) failed++;
          else ok++;
          await tx
            .updateTable('request_items')
            .set({
              state: error ? 'failed' : 'succeeded',
              secret: null,
              result: error ? null : json(redact(result, proc.secrets)),
              error: error ? JSON.stringify(error.toJSON()) : null,
              compensation: error ? null : json(rec.compensation),
            })
            .where('request_id', '=', requestId)
            .where('seq', '=', item.seq)
            .execute();
        }
        await tx
          .updateTable('requests')
          .set((eb) => ({
            items_done: eb('items_done', '+', ok + failed),
            items_failed: eb('items_failed', '+', failed),
            jobs_total: eb('jobs_total', '+', queued),
            updated_at: Date.now(),
          }))
          .where('id', '=', requestId)
          .execute();
      });
      if (queued > 0) this.signals.emit('jobs');
    }
  }

  private context(tx: Db, principal: Principal, requestId: string, now: number, rec: Recorded): ProcContext {
    const ctx: ProcContext = {
      tx,
      dialect: this.store.dialect,
      principal,
      requestId,
      now,
      log: this.log,
      enqueue: (job) => void rec.jobs.push(job),
      target: (t) => {
        rec.target ??= t;
      },
      diff: (before, after) => {
        if (rec.before === undefined) rec.before = before;
        rec.after = after;
      },
      event: (e) => void rec.events.push(e),
      compensation: (data) => {
        rec.compensation ??= data;
      },
      spawnBatch: (spec) => {
        const id = newId('request');
        rec.batches.push({ requestId: id, spec });
        return id;
      },
    };
    return ctx;
  }

  private async writeRecorded(tx: Db, principal: Principal, requestId: string, rec: Recorded, now: number, itemSeq: number | null): Promise<void> {
    const followers = rec.events.length === 0 ? [] : this.eventFollowers.flatMap((f) => f(rec.events));
    await insertJobs(tx, requestId, 'forward', followers.length === 0 ? rec.jobs : [...rec.jobs, ...followers], now, itemSeq);
    for (const b of rec.batches) {
      if (b.spec.items.length === 0) continue;
      const hash = sha256(`batch:${b.spec.procedure}:${requestId}`);
      await this.insertBatch(tx, principal, b.requestId, b.spec, null, hash, now);
    }
    if (rec.events.length > 0) {
      const rows = rec.events.map((e) => ({
        id: newId('event'), at: now, reseller_id: e.resellerId, org_id: e.orgId, object_type: e.objectType, object_id: e.objectId,
        event: e.event, request_id: requestId, data: json(e.data),
      }));
      if (rows.length === 1) await insertRow(tx, 'billing_events', rows[0]!);
      else await tx.insertInto('billing_events').values(rows).execute();
    }
  }

  /**
   * True when this caller's token already made a request under `key`: submitting again replays that
   * request's stored answer, even if its object is gone since (e.g. a DELETE re-sent after a crash).
   */
  async hasRequestForKey(principal: Principal, key: string): Promise<boolean> {
    return !!principal.tokenId && !!(await this.findByKey(principal.tokenId, key));
  }

  private async findByKey(tokenId: string, key: string): Promise<Record<string, any> | undefined> {
    return this.db.selectFrom('requests').selectAll().where('token_id', '=', tokenId).where('idempotency_key', '=', key).executeTakeFirst();
  }

  private replay<R>(prior: Record<string, any>, inputHash: string): SubmitResult<R> {
    if (prior.input_hash !== inputHash) {
      throw Errors.idempotencyKeyReused('this Idempotency-Key was used for a different request');
    }
    const result = prior.result ? JSON.parse(prior.result) : prior.items_total > 0 ? { items: prior.items_total } : null;
    return { requestId: prior.id, state: prior.state, result, replayed: true };
  }

  /** Anything that is not an HmcError becomes one: unique violations are conflicts, the rest internal. */
  mapError(e: unknown): HmcError {
    if (isHmcError(e)) return e;
    if (isUniqueViolation(e)) return Errors.nameTaken('an object with this name already exists', { cause: e });
    if (isInvalidText(e)) return Errors.invalidRequest('text may not contain NUL characters', { cause: e });
    this.log.error({ err: e }, 'unexpected error');
    return Errors.internal('internal error', { cause: e, retryable: true });
  }

  // ---- job outcomes (called by workers) ----

  metricsJob(kind: string, outcome: 'done' | 'retry' | 'failed', seconds: number): void {
    this.metrics?.jobFinished(kind, outcome, seconds);
  }

  /** Counts a request that became terminal, after the transaction that made it so committed. */
  metricsFinished(fin: FinishedRequest | null): void {
    if (fin) this.metrics?.requestFinished(fin.procedure, fin.state, fin.seconds);
  }

  /**
   * A job failed for good. In one transaction: mark it failed (fenced), cancel what of its request has
   * not started, and run the procedure's compensation, which writes the undo and queues its jobs.
   */
  async jobFailedForGood(job: JobRow, owner: string, error: HmcError): Promise<void> {
    let queued = false;
    const fin = await this.txr.run(async (tx): Promise<FinishedRequest | null> => {
      queued = false;
      if (!(await failJob(tx, job.id, owner, JSON.stringify(error.toJSON())))) return null;
      const req = await tx.selectFrom('requests').selectAll().where('id', '=', job.request_id).executeTakeFirst();
      if (!req) return null;
      const now = Date.now();
      const principal = JSON.parse(req.principal as string) as Principal;
      const proc = this.procedures.get(req.procedure as string);
      if (job.phase === 'compensation') {
        await tx.updateTable('requests').set({ error: JSON.stringify({ code: 'compensation_failed', kind: 'internal', message: `compensation job ${job.kind} failed: ${error.message}` }), updated_at: now }).where('id', '=', req.id).execute();
      } else if (job.item_seq !== null) {
        // one item of a batch: undo that item alone
        await cancelQueuedJobs(tx, req.id, 'forward', job.item_seq, now);
        const item = await tx.selectFrom('request_items').selectAll().where('request_id', '=', req.id).where('seq', '=', job.item_seq).executeTakeFirst();
        if (item && item.state !== 'failed') {
          await tx.updateTable('request_items').set({ state: 'failed', error: JSON.stringify(error.toJSON()) }).where('request_id', '=', req.id).where('seq', '=', job.item_seq).execute();
          await tx.updateTable('requests').set((eb) => ({ items_failed: eb('items_failed', '+', 1), updated_at: now })).where('id', '=', req.id).execute();
          queued = (await this.compensate(tx, req, principal, proc, item.compensation ? JSON.parse(item.compensation as string) : undefined, job.item_seq, now)) || queued;
        }
      } else if (req.state === 'running') {
        await cancelQueuedJobs(tx, req.id, 'forward', null, now);
        await tx.updateTable('requests').set({ state: 'compensating', error: JSON.stringify(error.toJSON()), updated_at: now }).where('id', '=', req.id).execute();
        queued = await this.compensate(tx, req, principal, proc, req.compensation ? JSON.parse(req.compensation as string) : undefined, null, now);
      }
      return this.finishIfDone(tx, req.id as string);
    });
    this.metricsFinished(fin);
    if (queued) this.signals.emit('jobs');
  }

  private async compensate(tx: Db, req: Record<string, any>, principal: Principal, proc: Procedure<any, any, any> | undefined, data: unknown, itemSeq: number | null, now: number): Promise<boolean> {
    if (!proc?.compensate || data === undefined) return false;
    const t0 = performance.now();
    const rec = newRecorded();
    await proc.compensate(this.context(tx, { ...SYSTEM, actor: `compensation of ${req.id}` }, req.id, now, rec), data);
    this.followersOf(proc.id, rec);
    await insertJobs(tx, req.id, 'compensation', rec.jobs, now, itemSeq);
    await this.writeRecorded(tx, SYSTEM, req.id, { ...rec, jobs: [] }, now, itemSeq);
    if (rec.jobs.length > 0) {
      await tx.updateTable('requests').set((eb) => ({ jobs_total: eb('jobs_total', '+', rec.jobs.length) })).where('id', '=', req.id).execute();
    }
    await appendAudit(tx, {
      requestId: req.id, principal, procedure: proc.id, phase: 'compensate', outcome: 'compensated',
      target: rec.target ?? { type: req.target_type, id: req.target_id, resellerId: req.reseller_id, orgId: req.org_id },
      input: data, before: rec.before, after: rec.after, error: null, durationMs: performance.now() - t0, now,
    });
    return rec.jobs.length > 0;
  }

  /** After a job finished: count it, and when the request has nothing open left, make it terminal. */
  async jobDone(tx: Db, job: JobRow): Promise<FinishedRequest | null> {
    // RETURNING: the row finishIfDone needs, without reading it again. Once per job: fixed text (store/compiled.ts)
    const r = await runSql(tx, 'UPDATE requests SET jobs_done = jobs_done + 1, updated_at = ? WHERE id = ? RETURNING *', [Date.now(), job.request_id]);
    return this.finishIfDone(tx, job.request_id, r.rows[0]);
  }

  /** `current`: the request's row as this transaction last wrote it, when the caller has it. */
  private async finishIfDone(tx: Db, requestId: string, current?: Record<string, any>): Promise<FinishedRequest | null> {
    if ((await openJobCount(tx, requestId)) > 0) return null;
    const req = current ?? (await tx.selectFrom('requests').selectAll().where('id', '=', requestId).executeTakeFirst());
    if (!req || (req.state !== 'running' && req.state !== 'compensating')) return null;
    const now = Date.now();
    const failedForGood = req.state === 'compensating' || (req.error && JSON.parse(req.error as string).code === 'compensation_failed');
    const state: RequestState = failedForGood ? 'failed' : 'succeeded';
    let result = req.result;
    if (Number(req.items_total) > 0) {
      result = JSON.stringify({ items: Number(req.items_total), succeeded: Number(req.items_done) - Number(req.items_failed), failed: Number(req.items_failed) });
    }
    await runSql(tx, 'UPDATE requests SET state = ?, result = ?, finished_at = ?, updated_at = ? WHERE id = ?', [state, result, now, now, requestId]);
    const principal = JSON.parse(req.principal as string) as Principal;
    await appendAudit(tx, {
      requestId, principal, procedure: req.procedure as string, phase: 'complete', outcome: state,
      target: { type: req.target_type as string, id: req.target_id as string, resellerId: req.reseller_id as string | null, orgId: req.org_id as string | null },
      input: undefined, before: undefined, after: undefined, error: req.error ? JSON.parse(req.error as string) : null,
      durationMs: now - Number(req.created_at), now,
    });
    return { procedure: req.procedure as string, state, seconds: (now - Number(req.created_at)) / 1000 };
  }
}
