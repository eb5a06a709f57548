import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Errors } from '../core/errors.js';
import { errorResponses, Nullable, type RouteDeps, submitAndReply, WaitQuery } from '../engine/http.js';
import { CHECK_CODES, runCheck } from './check.js';
import { REPAIR } from './repair.js';
import { seesResources } from './repo.js';

const Figure = Type.Union([Type.Integer(), Type.String(), Type.Null()], { description: 'bytes or a count (a decimal string past 2^53), an organization id for owners, null for none' });

export const FindingView = Type.Object({
  code: Type.Union(Object.values(CHECK_CODES).map((c) => Type.Literal(c))),
  orgId: Nullable(Type.String()),
  storeId: Nullable(Type.String()),
  objectId: Nullable(Type.String({ description: 'the mailbox or public folder concerned, when one row is' })),
  field: Type.String({ description: 'the column or counter that is wrong' }),
  stored: Figure,
  expected: Figure,
  repairable: Type.Boolean({ description: 'POST /api/v1/check/repair fixes it' }),
  message: Type.String(),
});
export const CheckView = Type.Object({ ok: Type.Boolean({ description: 'no findings' }), findings: Type.Array(FindingView) });
const RepairView = Type.Object({
  findings: Type.Integer(), repairable: Type.Integer(), items: Type.Integer({ description: 'organizations and stores in the repair batch' }),
  repairRequestId: Type.Union([Type.String(), Type.Null()], { description: 'the batch request doing the repair; null when nothing was repairable' }),
});

const tag = { tags: ['resources'], security: [{ bearer: [] }] };

/** Like the resource registry, the check exists only for provider roles: 404 to everyone else, before validation. */
async function providerOnly(req: FastifyRequest): Promise<void> {
  if (!seesResources(req.principal)) throw Errors.notFound(`no route ${req.method} ${req.url.split('?')[0]}`);
}

/**
 * The check's queries on one snapshot. PostgreSQL: a read-only REPEATABLE READ transaction, so a request that
 * commits between two of its queries (a mailbox counted by one and not by the other) is never reported as drift.
 * SQLite: a transaction would hold the single writer for the whole check; reads go to the WAL reader instead, and
 * a finding caused by a concurrent commit is gone on the next run (the repair re-derives everything under locks).
 */
function consistentCheck(deps: RouteDeps) {
  const dialect = deps.engine.store.dialect;
  if (dialect !== 'postgres') return runCheck(deps.db, dialect);
  return deps.db.transaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute((trx) => runCheck(trx, dialect));
}

export function registerCheckRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const route = { preValidation: providerOnly };
  app.get('/api/v1/check', {
    ...route,
    schema: {
      ...tag,
      description: 'Verify, for every organization and store, that stored totals equal the sums of their parts (counters, pieces, allocations, store totals, owners, mailbox charges) and that nothing is over capacity. Read-only.',
      response: { 200: CheckView, ...errorResponses },
    },
  }, () => consistentCheck(deps));
  app.post('/api/v1/check/repair', {
    ...route,
    schema: {
      ...tag,
      description: 'Check, then start one batch request (repairRequestId) that repairs the organizations and then the stores with repairable findings, through audited procedures. Follow the batch, then GET /api/v1/check for what remains.',
      querystring: WaitQuery,
      response: { 200: RepairView, 202: RepairView, ...errorResponses },
    },
  }, (req, reply) => submitAndReply(req, reply, deps, REPAIR.start, {}));
}
