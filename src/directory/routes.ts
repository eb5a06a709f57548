import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { readCsvTable } from '../core/csv.js';
import { Errors } from '../core/errors.js';
import { roleLevel } from '../core/tenancy.js';
import { errorResponses, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps, type VisibilityRegistry } from '../engine/http.js';
import { mapPage } from '../store/page.js';
import {
  AddDomainBody, CreatedTokenView, CreateGroupBody, CreateOrganizationBody, CreateResellerBody, CreateTokenBody, CreateUserBody,
  DomainView, GroupView, Id, MemberView, MoveOrganizationBody, OrganizationView, ResellerView, SetPasswordBody, TokenView,
  toDomain, toGroup, toOrganization, toReseller, toToken, toUser, UpdateGroupBody, UpdateOrganizationBody, UpdateResellerBody,
  UpdateUserBody, UserView,
} from './model.js';
import { P } from './procedures.js';
import * as repo from './repo.js';

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const query = (q: Record<string, TSchema>) => Type.Object({ ...ListQuery, ...q }, strict);
const ok = (view: TSchema, status = 200) => ({ [status]: view, 202: view, ...errorResponses });

const RESELLER = { resellerId: Id('rsl') };
const ORG = { orgId: Id('org') };
const USER = { ...ORG, userId: Id('usr') };
const DOMAIN = { ...ORG, domainId: Id('dom') };
const GROUP = { ...ORG, groupId: Id('grp') };
const State = Type.Optional(Type.String({ maxLength: 32 }));
const Prefix = Type.Optional(Type.String({ maxLength: 254, description: 'prefix of the name' }));

/** Which ids the caller can see, checked before validation so other tenants' objects are 404 on every route. */
export const directoryVisibility: VisibilityRegistry = {
  reseller: async (db, p, id) => !!(await repo.resellersQuery(db, p).select('id').where('id', '=', id).executeTakeFirst()),
  organization: (db, p, id) => repo.organizationVisible(db, p, id),
  domain: async (db, p, id) => roleLevel(p.role) !== 'user' && !!(await repo.inScope(db.selectFrom('domains').select('id'), p).where('id', '=', id).executeTakeFirst()),
  user: async (db, p, id) => {
    let q = repo.inScope(db.selectFrom('users').select('id'), p).where('id', '=', id);
    if (roleLevel(p.role) === 'user') q = q.where('id', '=', p.userId);
    return !!(await q.executeTakeFirst());
  },
  group: async (db, p, id) => roleLevel(p.role) !== 'user' && !!(await repo.inScope(db.selectFrom('groups').select('id'), p).where('id', '=', id).executeTakeFirst()),
  token: async (db, p, id) => !!(await repo.tokensQuery(db, p).where('id', '=', id).executeTakeFirst()),
};

/** CSV columns of a user import (header row required). */
export const IMPORT_COLUMNS = ['login', 'displayName', 'givenName', 'surname', 'password', 'passwordHash', 'enabled', 'role'] as const;

/** Turn a CSV text into import items; empty cells are omitted, `enabled` accepts true/false/yes/no/1/0. */
export function csvToItems(text: string): Record<string, unknown>[] {
  const rows = readCsvTable(text, IMPORT_COLUMNS);
  return rows.map((r) => {
    const item: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r)) {
      if (v === '' || v === undefined) continue;
      if (k === 'enabled') {
        const b = { true: true, yes: true, '1': true, false: false, no: false, '0': false }[v.toLowerCase()];
        item[k] = b ?? v; // a bad value fails that row's validation, not the whole batch
      } else item[k] = v;
    }
    return item;
  });
}

export function registerDirectoryRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = (t: string) => ({ tags: [t], security: [{ bearer: [] }] });

  // ---- resellers ----
  app.get('/api/v1/resellers', { schema: { ...tag('resellers'), querystring: query({ state: State, q: Prefix }), response: { 200: ListOf(ResellerView) } } },
    async (req) => mapPage(await repo.listResellers(db, req.principal, req.query as any), toReseller));
  app.post('/api/v1/resellers', { schema: { ...tag('resellers'), querystring: WaitQuery, body: CreateResellerBody, response: ok(ResellerView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, P.createReseller, req.body, 201));
  app.get('/api/v1/resellers/:resellerId', { schema: { ...tag('resellers'), params: params(RESELLER), response: { 200: ResellerView, ...errorResponses } } },
    async (req) => toReseller(await repo.getReseller(db, req.principal, (req.params as any).resellerId)));
  app.patch('/api/v1/resellers/:resellerId', { schema: { ...tag('resellers'), params: params(RESELLER), querystring: WaitQuery, body: UpdateResellerBody, response: ok(ResellerView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.updateReseller, { ...(req.body as object), ...(req.params as object) }));
  app.delete('/api/v1/resellers/:resellerId', { schema: { ...tag('resellers'), params: params(RESELLER), querystring: WaitQuery, response: ok(ResellerView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.deleteReseller, req.params));
  for (const [verb, proc] of [['suspend', P.suspendReseller], ['resume', P.resumeReseller]] as const) {
    app.post(`/api/v1/resellers/:resellerId/${verb}`, { schema: { ...tag('resellers'), params: params(RESELLER), querystring: WaitQuery, response: ok(ResellerView) } },
      (req, reply) => submitAndReply(req, reply, deps, proc, req.params));
  }

  // ---- organizations ----
  app.get('/api/v1/organizations', { schema: { ...tag('organizations'), querystring: query({ reseller: Type.Optional(Id('rsl')), state: State, q: Prefix }), response: { 200: ListOf(OrganizationView) } } },
    async (req) => mapPage(await repo.listOrganizations(db, req.principal, req.query as any), toOrganization));
  app.post('/api/v1/organizations', { schema: { ...tag('organizations'), querystring: WaitQuery, body: CreateOrganizationBody, response: ok(OrganizationView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, P.createOrganization, req.body, 201));
  app.get('/api/v1/organizations/:orgId', { schema: { ...tag('organizations'), params: params(ORG), response: { 200: OrganizationView, ...errorResponses } } },
    async (req) => toOrganization(await repo.getOrganization(db, req.principal, (req.params as any).orgId)));
  app.patch('/api/v1/organizations/:orgId', { schema: { ...tag('organizations'), params: params(ORG), querystring: WaitQuery, body: UpdateOrganizationBody, response: ok(OrganizationView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.updateOrganization, { ...(req.body as object), ...(req.params as object) }));
  app.delete('/api/v1/organizations/:orgId', { schema: { ...tag('organizations'), params: params(ORG), querystring: Type.Object({ force: Type.Optional(Type.Boolean()), wait: Type.Optional(Type.Boolean()) }, strict), response: ok(OrganizationView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.deleteOrganization, { ...(req.params as object), ...((req.query as any).force ? { force: true } : {}) }));
  for (const [verb, proc] of [['suspend', P.suspendOrganization], ['resume', P.resumeOrganization]] as const) {
    app.post(`/api/v1/organizations/:orgId/${verb}`, { schema: { ...tag('organizations'), params: params(ORG), querystring: WaitQuery, response: ok(OrganizationView) } },
      (req, reply) => submitAndReply(req, reply, deps, proc, req.params));
  }
  app.post('/api/v1/organizations/:orgId/move', { schema: { ...tag('organizations'), params: params(ORG), querystring: WaitQuery, body: MoveOrganizationBody, response: ok(OrganizationView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.moveOrganization, { ...(req.body as object), ...(req.params as object) }));

  // ---- domains ----
  app.get('/api/v1/organizations/:orgId/domains', { schema: { ...tag('domains'), params: params(ORG), querystring: query({ q: Prefix }), response: { 200: ListOf(DomainView), ...errorResponses } } },
    async (req) => mapPage(await repo.listDomains(db, req.principal, (req.params as any).orgId, req.query as any), toDomain));
  app.post('/api/v1/organizations/:orgId/domains', { schema: { ...tag('domains'), params: params(ORG), querystring: WaitQuery, body: AddDomainBody, response: ok(DomainView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, P.addDomain, { ...(req.body as object), ...(req.params as object) }, 201));
  app.get('/api/v1/organizations/:orgId/domains/:domainId', { schema: { ...tag('domains'), params: params(DOMAIN), response: { 200: DomainView, ...errorResponses } } },
    async (req) => toDomain(await repo.getDomain(db, req.principal, (req.params as any).orgId, (req.params as any).domainId)));
  app.delete('/api/v1/organizations/:orgId/domains/:domainId', { schema: { ...tag('domains'), params: params(DOMAIN), querystring: WaitQuery, response: ok(DomainView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.removeDomain, req.params));

  // ---- users ----
  app.get('/api/v1/organizations/:orgId/users', {
    schema: { ...tag('users'), params: params(ORG), querystring: query({ q: Prefix, enabled: Type.Optional(Type.Boolean()), state: State, role: State, domainId: Type.Optional(Id('dom')) }), response: { 200: ListOf(UserView), ...errorResponses } },
  }, async (req) => mapPage(await repo.listUsers(db, req.principal, (req.params as any).orgId, req.query as any), toUser));
  app.post('/api/v1/organizations/:orgId/users', { schema: { ...tag('users'), params: params(ORG), querystring: WaitQuery, body: CreateUserBody, response: ok(UserView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, P.createUser, { ...(req.body as object), ...(req.params as object) }, 201));
  app.get('/api/v1/organizations/:orgId/users/:userId', { schema: { ...tag('users'), params: params(USER), response: { 200: UserView, ...errorResponses } } },
    async (req) => toUser(await repo.getUser(db, req.principal, (req.params as any).orgId, (req.params as any).userId)));
  app.patch('/api/v1/organizations/:orgId/users/:userId', { schema: { ...tag('users'), params: params(USER), querystring: WaitQuery, body: UpdateUserBody, response: ok(UserView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.updateUser, { ...(req.body as object), ...(req.params as object) }));
  app.delete('/api/v1/organizations/:orgId/users/:userId', { schema: { ...tag('users'), params: params(USER), querystring: WaitQuery, response: ok(UserView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.deleteUser, req.params));
  app.post('/api/v1/organizations/:orgId/users/:userId/password', { schema: { ...tag('users'), params: params(USER), querystring: WaitQuery, body: SetPasswordBody, response: ok(UserView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.setPassword, { ...(req.body as object), ...(req.params as object) }));
  app.post('/api/v1/organizations/:orgId/users/import', {
    schema: {
      ...tag('users'),
      description: `Import users from CSV (Content-Type text/csv, header row with columns ${IMPORT_COLUMNS.join(', ')}) or JSON {items:[...]}. Runs in the background as one request with per-row results: follow GET /api/v1/requests/{id} and /items.`,
      params: params(ORG),
      body: Type.Union([Type.String({ maxLength: 50 * 1024 * 1024 }), Type.Object({ items: Type.Array(Type.Object({}, { additionalProperties: true }), { minItems: 1, maxItems: 100_000 }) }, strict)]),
      response: { 202: Type.Object({ request: Type.Object({ id: Type.String(), state: Type.String(), items: Type.Integer() }) }), ...errorResponses },
    },
  }, async (req, reply) => {
    const { orgId } = req.params as { orgId: string };
    const org = await repo.getLiveOrganization(db, req.principal, orgId);
    const items = typeof req.body === 'string' ? csvToItems(req.body) : (req.body as { items: Record<string, unknown>[] }).items;
    const key = req.headers['idempotency-key'];
    const out = await deps.engine.submitBatch(req.principal, P.createUser, items.map((i) => ({ ...i, orgId })), {
      idempotencyKey: typeof key === 'string' ? key : undefined,
      target: { type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id },
    });
    reply.code(202).header('HMC-Request-Id', out.requestId).header('HMC-Request-State', out.state);
    return { request: { id: out.requestId, state: out.state, items: items.length } };
  });

  // ---- groups ----
  app.get('/api/v1/organizations/:orgId/groups', { schema: { ...tag('groups'), params: params(ORG), querystring: query({ q: Prefix }), response: { 200: ListOf(GroupView), ...errorResponses } } },
    async (req) => mapPage(await repo.listGroups(db, req.principal, (req.params as any).orgId, req.query as any), toGroup));
  app.post('/api/v1/organizations/:orgId/groups', { schema: { ...tag('groups'), params: params(ORG), querystring: WaitQuery, body: CreateGroupBody, response: ok(GroupView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, P.createGroup, { ...(req.body as object), ...(req.params as object) }, 201));
  app.get('/api/v1/organizations/:orgId/groups/:groupId', { schema: { ...tag('groups'), params: params(GROUP), response: { 200: GroupView, ...errorResponses } } },
    async (req) => toGroup(await repo.getGroup(db, req.principal, (req.params as any).orgId, (req.params as any).groupId)));
  app.patch('/api/v1/organizations/:orgId/groups/:groupId', { schema: { ...tag('groups'), params: params(GROUP), querystring: WaitQuery, body: UpdateGroupBody, response: ok(GroupView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.updateGroup, { ...(req.body as object), ...(req.params as object) }));
  app.delete('/api/v1/organizations/:orgId/groups/:groupId', { schema: { ...tag('groups'), params: params(GROUP), querystring: WaitQuery, response: ok(GroupView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.deleteGroup, req.params));
  app.get('/api/v1/organizations/:orgId/groups/:groupId/members', { schema: { ...tag('groups'), params: params(GROUP), querystring: query({}), response: { 200: ListOf(MemberView), ...errorResponses } } },
    async (req) => {
      const p = req.params as { orgId: string; groupId: string };
      return mapPage(await repo.listMembers(db, req.principal, p.orgId, p.groupId, req.query as any), (r: any) => ({ userId: r.id, login: r.login, displayName: r.display_name }));
    });
  const Membership = Type.Object({ groupId: Type.String(), userId: Type.String() });
  app.put('/api/v1/organizations/:orgId/groups/:groupId/members/:userId', { schema: { ...tag('groups'), params: params({ ...GROUP, userId: Id('usr') }), querystring: WaitQuery, response: ok(Membership) } },
    (req, reply) => submitAndReply(req, reply, deps, P.addGroupMember, req.params));
  app.delete('/api/v1/organizations/:orgId/groups/:groupId/members/:userId', { schema: { ...tag('groups'), params: params({ ...GROUP, userId: Id('usr') }), querystring: WaitQuery, response: ok(Membership) } },
    (req, reply) => submitAndReply(req, reply, deps, P.removeGroupMember, req.params));

  // ---- tokens ----
  app.get('/api/v1/tokens', { schema: { ...tag('tokens'), querystring: query({ includeRevoked: Type.Optional(Type.Boolean()) }), response: { 200: ListOf(TokenView) } } },
    async (req) => mapPage(await repo.listTokens(db, req.principal, req.query as any), toToken));
  app.post('/api/v1/tokens', { schema: { ...tag('tokens'), querystring: WaitQuery, body: CreateTokenBody, response: ok(CreatedTokenView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, P.createToken, req.body, 201));
  app.get('/api/v1/tokens/:tokenId', { schema: { ...tag('tokens'), params: params({ tokenId: Id('tok') }), response: { 200: TokenView, ...errorResponses } } },
    async (req) => toToken(await repo.getToken(db, req.principal, (req.params as any).tokenId)));
  app.delete('/api/v1/tokens/:tokenId', { schema: { ...tag('tokens'), params: params({ tokenId: Id('tok') }), querystring: WaitQuery, response: ok(TokenView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.revokeToken, req.params));
}
