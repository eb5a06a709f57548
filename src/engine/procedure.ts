import type { Static, TSchema } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { Principal, Role } from '../core/tenancy.js';
import type { Db, Dialect } from '../store/db.js';

/** A provider job a procedure asks for. Jobs with the same `queueKey` (the organization) run in order. */
export interface JobSpec {
  kind: string;
  payload: unknown;
  queueKey: string;
  maxAttempts?: number;
  /** Not before this time (epoch ms); default now. A delayed job should have a queue key of its own: it blocks later jobs of its key until it runs. */
  runAt?: number;
}

/** What the request acted on, for the audit log and scoping of the request record. */
export interface TargetSpec {
  type: string;
  id: string;
  resellerId: string | null;
  orgId: string | null;
}

/** One append-only billing event (HMC Plan Manager events). */
export interface BillingEventSpec {
  resellerId: string | null;
  orgId: string | null;
  objectType: string;
  objectId: string;
  event: 'created' | 'deleted' | 'suspended' | 'resumed' | 'moved' | 'plan_changed' | 'updated';
  data?: unknown;
}

/** Everything a procedure may touch while it runs inside its transaction. */
export interface ProcContext {
  tx: Db;
  dialect: Dialect;
  principal: Principal;
  requestId: string;
  now: number;
  log: Logger;
  /** Append a provider job to this request (same transaction). */
  enqueue(job: JobSpec): void;
  /** Name the target of this request and its scope (reseller, organization). */
  target(t: TargetSpec): void;
  /** State before and after, for the audit log. */
  diff(before: unknown, after: unknown): void;
  /** Append a billing event (same transaction). */
  event(e: BillingEventSpec): void;
  /** The small data the compensation needs if a job of this request fails for good. */
  compensation(data: unknown): void;
  /**
   * Start a batch request of `spec.procedure` over `spec.items` in this transaction (e.g. re-applying an edited
   * plan to its mailboxes); returns the new request's id. It runs after commit, as the same principal.
   */
  spawnBatch(spec: BatchSpec): string;
}

/** A batch request started by a procedure. */
export interface BatchSpec {
  procedure: string;
  items: Record<string, unknown>[];
  target: TargetSpec;
  /** Do not start before this time (ms): a follow-up due later, e.g. purging a deleted mailbox after its retention. */
  runAt?: number;
}

/** A named public operation with a typed input, a minimum role, its transaction body and its compensation. */
export interface Procedure<S extends TSchema, P = Static<S>, R = unknown> {
  /** Persisted name (`area.verb_noun`); never renamed. */
  id: string;
  input: S;
  minRole: Role;
  /** Input keys whose values never reach logs, the audit log or request records. */
  secrets?: readonly string[];
  /** Slow work done before the transaction (password hashing). Must not touch the database. */
  prepare?(input: Static<S>, deps: PrepareDeps): Promise<P>;
  run(ctx: ProcContext, input: P): Promise<R>;
  /** Undo the desired state after a permanent job failure: new transaction; enqueue the jobs that undo the back end. */
  compensate?(ctx: ProcContext, data: any): Promise<void>;
}

export interface PrepareDeps {
  hashPassword(plain: string): Promise<string>;
}


/** Identity helper that keeps the generic types of a procedure definition. */
export function defineProcedure<S extends TSchema, P = Static<S>, R = unknown>(p: Procedure<S, P, R>): Procedure<S, P, R> {
  return p;
}
