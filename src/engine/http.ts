import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Errors, HmcError, type ErrorKind } from '../core/errors.js';
import { idPattern, type IdKind } from '../core/ids.js';
import type { Principal } from '../core/tenancy.js';
import type { Db } from '../store/db.js';
import type { Engine } from './engine.js';

/**
 * What areas need to expose their procedures over HTTP, without importing the API face: the
 * principal on each request, one way to submit a mutation, and list query schemas.
 */

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

export interface RouteDeps {
  engine: Engine;
  db: Db;
}

/** Decides whether the caller may see an object, by its id kind; used to answer 404 before anything else. */
export type VisibilityCheck = (db: Db, p: Principal, id: string) => Promise<boolean>;
export type VisibilityRegistry = Partial<Record<IdKind, VisibilityCheck>>;

export const STATUS: Record<ErrorKind, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  limit: 422,
  unavailable: 503,
  internal: 500,
};

/** An id of one kind (`usr`, `org`, ...) in a schema. */
export const Id = (prefix: string) => Type.String({ pattern: idPattern(prefix), maxLength: 30, description: `${prefix}_ id` });

/** A schema that also accepts null. */
export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const ListQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'page size (default 50)' })),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'the `next` value of the previous page' })),
};

/** Logs (requests, audit, events) may be read newest first. */
export const LogListQuery = {
  ...ListQuery,
  order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')], { description: 'asc (default): oldest first; desc: newest first' })),
};

export const WaitQuery = Type.Object(
  { wait: Type.Optional(Type.Boolean({ description: 'answer when the request is terminal (up to 30 s)' })) },
  { additionalProperties: false },
);

export const ListOf = (item: TSchema) => Type.Object({ items: Type.Array(item), next: Type.Union([Type.String(), Type.Null()]) });

export const Problem = Type.Object(
  {
    type: Type.String(), title: Type.String(), status: Type.Integer(), detail: Type.String(), code: Type.String(),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
  },
  { $id: 'Problem' },
);

/** Standard error responses for a route's OpenAPI entry. */
export const errorResponses = {
  400: Type.Ref('Problem'), 401: Type.Ref('Problem'), 403: Type.Ref('Problem'), 404: Type.Ref('Problem'), 409: Type.Ref('Problem'),
};

const TERMINAL = new Set(['succeeded', 'failed']);

/** Poll a request until it is terminal or the deadline passes. */
export async function waitForRequest(db: Db, id: string, timeoutMs = 30_000): Promise<{ state: string; error: string | null }> {
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  for (;;) {
    const r = await db.selectFrom('requests').select(['state', 'error']).where('id', '=', id).executeTakeFirstOrThrow();
    if (TERMINAL.has(r.state) || Date.now() >= deadline) return r;
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(200, delay * 2);
  }
}

/**
 * Submit a procedure for an HTTP call and answer: the resource as the body, `HMC-Request-Id` and
 * `HMC-Request-State` headers; 202 while provider jobs are still running, else `okStatus`. With
 * `?wait=true` the answer waits for the request to finish; a request that failed (and was
 * compensated) answers with its error.
 */
export async function submitAndReply(
  req: FastifyRequest,
  reply: FastifyReply,
  deps: RouteDeps,
  procId: string,
  input: unknown,
  okStatus = 200,
): Promise<unknown> {
  const key = req.headers['idempotency-key'];
  if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 200)) {
    throw Errors.invalidRequest('Idempotency-Key must be 1-200 characters');
  }
  const out = await deps.engine.submit(req.principal, procId, input, { idempotencyKey: key as string | undefined });
  let state: string = out.state;
  if ((req.query as { wait?: boolean } | undefined)?.wait && !TERMINAL.has(state)) {
    const r = await waitForRequest(deps.db, out.requestId);
    state = r.state;
    if (r.state === 'failed' && r.error) {
      const e = JSON.parse(r.error) as { code: string; kind: ErrorKind; message: string };
      reply.header('HMC-Request-Id', out.requestId).header('HMC-Request-State', state);
      throw new HmcError(e.code, e.kind === 'internal' ? 'unavailable' : e.kind, `request ${out.requestId} failed and was undone: ${e.message}`);
    }
  }
  reply.header('HMC-Request-Id', out.requestId).header('HMC-Request-State', state);
  if (out.replayed) reply.header('Idempotent-Replayed', 'true');
  reply.code(TERMINAL.has(state) ? okStatus : 202);
  return out.result;
}

export type Registrar = (app: FastifyInstance, deps: RouteDeps) => void;
