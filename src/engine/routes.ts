import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Errors } from '../core/errors.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import type { Db } from '../store/db.js';
import { mapPage, page } from '../store/page.js';
import { noRows, scopeRows } from '../store/scope.js';
import { iso } from '../core/time.js';
import { errorResponses, Id, ListOf, ListQuery, LogListQuery, type RouteDeps, type VisibilityRegistry } from './http.js';

/** Requests, audit entries and billing events, each readable only within the caller's scope. */

const strict = { additionalProperties: false } as const;
const parse = (s: unknown) => (typeof s === 'string' ? JSON.parse(s) : null);
const ReqId = Id('req');
const OrgFilter = Type.Optional(Id('org'));
const RslFilter = Type.Optional(Id('rsl'));

/** Scope rows carrying (reseller_id, org_id); a user sees only what its own token did (`userCol` = token_id), or nothing. */
function scoped(q: any, p: Principal, userCol?: string): any {
  return scopeRows(q, p, (x) => (userCol ? x.where('org_id', '=', p.orgId).where(userCol, '=', p.tokenId) : noRows(x)));
}

export const engineVisibility: VisibilityRegistry = {
  request: async (db, p, id) => !!(await scoped(db.selectFrom('requests').select('id'), p, 'token_id').where('id', '=', id).executeTakeFirst()),
};

const RequestView = Type.Object({
  id: Type.String(), procedure: Type.String(), state: Type.String(), actor: Type.String(),
  resellerId: Type.Union([Type.String(), Type.Null()]), orgId: Type.Union([Type.String(), Type.Null()]),
  target: Type.Union([Type.Object({ type: Type.String(), id: Type.String() }), Type.Null()]),
  input: Type.Unknown(), result: Type.Unknown(), error: Type.Unknown(),
  items: Type.Object({ total: Type.Integer(), done: Type.Integer(), failed: Type.Integer() }),
  jobs: Type.Object({ total: Type.Integer(), done: Type.Integer() }),
  steps: Type.Optional(Type.Array(Type.Object({
    id: Type.Integer(), kind: Type.String(), phase: Type.String(), state: Type.String(), attempts: Type.Integer(),
    lastError: Type.Unknown(), startedAt: Type.Union([Type.String(), Type.Null()]), finishedAt: Type.Union([Type.String(), Type.Null()]),
  }))),
  createdAt: Type.String(), updatedAt: Type.String(), finishedAt: Type.Union([Type.String(), Type.Null()]),
  durationMs: Type.Union([Type.Integer(), Type.Null()]),
});

export function toRequest(r: any): any {
  return {
    id: r.id, procedure: r.procedure, state: r.state, actor: r.actor, resellerId: r.reseller_id ?? null, orgId: r.org_id ?? null,
    target: r.target_type ? { type: r.target_type, id: r.target_id } : null, input: parse(r.input), result: parse(r.result), error: parse(r.error),
    items: { total: Number(r.items_total), done: Number(r.items_done), failed: Number(r.items_failed) },
    jobs: { total: Number(r.jobs_total), done: Number(r.jobs_done) },
    createdAt: iso(r.created_at), updatedAt: iso(r.updated_at), finishedAt: iso(r.finished_at),
    durationMs: r.finished_at ? Number(r.finished_at) - Number(r.created_at) : null,
  };
}

/** One request with its steps (jobs), within scope. */
export async function getRequest(db: Db, p: Principal, id: string): Promise<any> {
  const r = await scoped(db.selectFrom('requests').selectAll(), p, 'token_id').where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`request ${id} not found`);
  const jobs = await db.selectFrom('jobs').selectAll().where('request_id', '=', id).orderBy('id').limit(1000).execute();
  return {
    ...toRequest(r),
    steps: jobs.map((j) => ({
      id: Number(j.id), kind: j.kind, phase: j.phase, state: j.state, attempts: Number(j.attempts), lastError: parse(j.last_error),
      startedAt: iso(j.started_at), finishedAt: iso(j.finished_at),
    })),
  };
}

export function registerEngineRoutes(app: FastifyInstance, { db }: RouteDeps): void {
  const tag = (t: string) => ({ tags: [t], security: [{ bearer: [] }] });
  app.get('/api/v1/requests', {
    schema: { ...tag('requests'), querystring: Type.Object({ ...LogListQuery, org: OrgFilter, reseller: RslFilter, state: Type.Optional(Type.String({ maxLength: 32 })), procedure: Type.Optional(Type.String({ maxLength: 64 })) }, strict), response: { 200: ListOf(RequestView) } },
  }, async (req) => {
    const f = req.query as any;
    let q = scoped(db.selectFrom('requests').selectAll(), req.principal, 'token_id');
    if (f.org) q = q.where('org_id', '=', f.org);
    if (f.reseller) q = q.where('reseller_id', '=', f.reseller);
    if (f.state) q = q.where('state', '=', f.state);
    if (f.procedure) q = q.where('procedure', '=', f.procedure);
    return mapPage(await page(q, 'id', f), toRequest);
  });
  app.get('/api/v1/requests/:requestId', { schema: { ...tag('requests'), params: Type.Object({ requestId: ReqId }, strict), response: { 200: RequestView, ...errorResponses } } },
    async (req) => getRequest(db, req.principal, (req.params as any).requestId));
  app.get('/api/v1/requests/:requestId/items', {
    schema: {
      ...tag('requests'), params: Type.Object({ requestId: ReqId }, strict),
      querystring: Type.Object({ ...ListQuery, state: Type.Optional(Type.String({ maxLength: 32 })) }, strict),
      response: { 200: ListOf(Type.Object({ seq: Type.Integer(), state: Type.String(), input: Type.Unknown(), result: Type.Unknown(), error: Type.Unknown() })), ...errorResponses },
    },
  }, async (req) => {
    const { requestId } = req.params as { requestId: string };
    await getRequest(db, req.principal, requestId);
    const f = req.query as { limit?: number; cursor?: string; state?: string };
    const limit = Math.min(f.limit ?? 50, 1000);
    const after = f.cursor ? Number.parseInt(Buffer.from(f.cursor, 'base64url').toString(), 10) : -1;
    // seq is a 32-bit INTEGER: a larger number is no cursor of ours (and PostgreSQL would fail on it)
    if (!Number.isInteger(after) || after < -1 || after > 2_147_483_647) throw Errors.invalidCursor('cursor is not one this API returned');
    let q = db.selectFrom('request_items').select(['seq', 'state', 'input', 'result', 'error']).where('request_id', '=', requestId).where('seq', '>', after);
    if (f.state) q = q.where('state', '=', f.state);
    const rows = await q.orderBy('seq').limit(limit + 1).execute();
    const more = rows.length > limit;
    const items = (more ? rows.slice(0, limit) : rows).map((r) => ({ seq: Number(r.seq), state: r.state, input: parse(r.input), result: parse(r.result), error: parse(r.error) }));
    return { items, next: more ? Buffer.from(String(items[items.length - 1]!.seq)).toString('base64url') : null };
  });

  const AuditView = Type.Object({
    id: Type.String(), requestId: Type.String(), at: Type.String(), actor: Type.String(), role: Type.String(),
    resellerId: Type.Union([Type.String(), Type.Null()]), orgId: Type.Union([Type.String(), Type.Null()]), procedure: Type.String(),
    phase: Type.String(), outcome: Type.String(), target: Type.Union([Type.Object({ type: Type.String(), id: Type.String() }), Type.Null()]),
    input: Type.Unknown(), before: Type.Unknown(), after: Type.Unknown(), error: Type.Unknown(), durationMs: Type.Integer(),
  });
  app.get('/api/v1/audit', {
    schema: { ...tag('audit'), querystring: Type.Object({ ...LogListQuery, org: OrgFilter, reseller: RslFilter, procedure: Type.Optional(Type.String({ maxLength: 64 })), request: Type.Optional(ReqId) }, strict), response: { 200: ListOf(AuditView) } },
  }, async (req) => {
    const f = req.query as any;
    let q = scoped(db.selectFrom('audit_log').selectAll(), req.principal, 'token_id');
    if (f.org) q = q.where('org_id', '=', f.org);
    if (f.reseller) q = q.where('reseller_id', '=', f.reseller);
    if (f.procedure) q = q.where('procedure', '=', f.procedure);
    if (f.request) q = q.where('request_id', '=', f.request);
    return mapPage(await page(q, 'id', f), (r: any) => ({
      id: r.id, requestId: r.request_id, at: iso(r.at), actor: r.actor, role: r.caller_role, resellerId: r.reseller_id ?? null,
      orgId: r.org_id ?? null, procedure: r.procedure, phase: r.phase, outcome: r.outcome,
      target: r.target_type ? { type: r.target_type, id: r.target_id } : null, input: parse(r.input), before: parse(r.before),
      after: parse(r.after), error: parse(r.error), durationMs: Number(r.duration_ms),
    }));
  });

  const EventView = Type.Object({
    id: Type.String(), at: Type.String(), resellerId: Type.Union([Type.String(), Type.Null()]), orgId: Type.Union([Type.String(), Type.Null()]),
    objectType: Type.String(), objectId: Type.String(), event: Type.String(), requestId: Type.String(), data: Type.Unknown(),
  });
  app.get('/api/v1/events', {
    schema: { ...tag('events'), querystring: Type.Object({ ...LogListQuery, org: OrgFilter, reseller: RslFilter, event: Type.Optional(Type.String({ maxLength: 32 })) }, strict), response: { 200: ListOf(EventView) } },
  }, async (req) => {
    const f = req.query as any;
    if (roleLevel(req.principal.role) === 'user') throw Errors.forbidden('billing events are for administrators');
    let q = scoped(db.selectFrom('billing_events').selectAll(), req.principal);
    if (f.org) q = q.where('org_id', '=', f.org);
    if (f.reseller) q = q.where('reseller_id', '=', f.reseller);
    if (f.event) q = q.where('event', '=', f.event);
    return mapPage(await page(q, 'id', f), (r: any) => ({
      id: r.id, at: iso(r.at), resellerId: r.reseller_id ?? null, orgId: r.org_id ?? null, objectType: r.object_type,
      objectId: r.object_id, event: r.event, requestId: r.request_id, data: parse(r.data),
    }));
  });
}
