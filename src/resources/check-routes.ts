import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Errors } from '../core/errors.js';
import { errorResponses, Nullable, type RouteDeps, submitAndReply, WaitQuery, waitForRequest } from '../engine/http.js';
import type { Db } from '../store/db.js';
import { CHECK_CODES, runCheck, type CheckReport, type Finding } from './check.js';
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
  dataplaneItems: Type.Integer({ description: 'data plane repairs (quota recalculations, removal of purged mailboxes\' directories)' }),
  dataplaneRequestId: Type.Union([Type.String(), Type.Null()], { description: 'the request doing the data plane repairs; null when there were none' }),
});

/**
 * A part of the check that lives outside the database (the data plane): its findings join the report,
 * and the repair submits its own request for the repairable ones.
 */
export interface CheckExtension {
  check(db: Db): Promise<Finding[]>;
  repair(db: Db, findings: Finding[]): Promise<{ procedure: string; input: unknown; items: number } | null>;
}

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

/** The check routes, with the extensions this platform has (the data plane's when HMC_DATAPLANE_ROOT is set). */
export const checkRoutes = (extensions: CheckExtension[] = []) => (app: FastifyInstance, deps: RouteDeps) => registerCheckRoutes(app, deps, extensions);

function registerCheckRoutes(app: FastifyInstance, deps: RouteDeps, extensions: CheckExtension[]): void {
  const route = { preValidation: providerOnly };
  const fullCheck = async (): Promise<CheckReport> => {
    const report = await consistentCheck(deps);
    const more = (await Promise.all(extensions.map((x) => x.check(deps.db)))).flat();
    return more.length === 0 ? report : { ok: false, findings: [...report.findings, ...more] };
  };
  app.get('/api/v1/check', {
    ...route,
    schema: {
      ...tag,
      description: 'Verify, for every organization and store, that stored totals equal the sums of their parts (counters, pieces, allocations, store totals, owners, mailbox charges) and that nothing is over capacity. Read-only.',
      response: { 200: CheckView, ...errorResponses },
    },
  }, fullCheck);
  app.post('/api/v1/check/repair', {
    ...route,
    schema: {
      ...tag,
      description: 'Check, then start one batch request (repairRequestId) that repairs the organizations and then the stores with repairable findings, through audited procedures. Follow the batch, then GET /api/v1/check for what remains.',
      querystring: WaitQuery,
      response: { 200: RepairView, 202: RepairView, ...errorResponses },
    },
  }, async (req, reply) => {
    // the data plane's repairs first (read outside any transaction: doveadm takes its time), then the database's
    let dataplaneItems = 0;
    let dataplaneRequestId: string | null = null;
    for (const x of extensions) {
      const r = await x.repair(deps.db, await x.check(deps.db));
      if (!r) continue;
      const out = await deps.engine.submit(req.principal, r.procedure, r.input);
      if ((req.query as { wait?: boolean }).wait) await waitForRequest(deps.db, out.requestId);
      dataplaneItems += r.items;
      dataplaneRequestId = out.requestId;
    }
    const result = await submitAndReply(req, reply, deps, REPAIR.start, {});
    return { ...(result as object), dataplaneItems, dataplaneRequestId };
  });
}
