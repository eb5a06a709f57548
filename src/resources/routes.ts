import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Errors } from '../core/errors.js';
import { errorResponses, Id, ListOf, ListQuery, Nullable, type RouteDeps, submitAndReply, type VisibilityRegistry, WaitQuery } from '../engine/http.js';
import { mapPage } from '../store/page.js';
import {
  AllocateBody, ConsumerView, CreateServerBody, CreateStoreBody, RecipientView, ResourcesView, ServerView, StoreListQuery, StoreView, toConsumer, toRecipient, toResources,
  toServer, toStore, UpdateServerBody, UpdateStoreBody,
} from './model.js';
import { readSubscription } from '../plans/limits.js';
import { RP } from './procedures.js';
import { MOVE_PROCS, MoveBody } from './moves.js';
import * as repo from './repo.js';

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const ok = (view: TSchema, status = 200) => ({ [status]: view, 202: view, ...errorResponses });
const tag = { tags: ['resources'], security: [{ bearer: [] }] };
const SERVER = { serverId: Id('srv') };
const STORE = { ...SERVER, storeId: Id('mst') };

/** Servers and stores exist only for provider roles; for everyone else their ids are 404 like another tenant's. */
export const resourcesVisibility: VisibilityRegistry = {
  mailServer: async (db, p, id) => !!(await repo.serversQuery(db, p).where('id', '=', id).executeTakeFirst()),
  mailstore: async (db, p, id) => !!(await repo.storesQuery(db, p).where('id', '=', id).executeTakeFirst()),
};

/**
 * Every route of the registry, lists and creations included, answers 404 to non-provider roles before
 * validation: to a tenant the registry does not exist (rather than an empty list or a 403 that would tell
 * it there is something to be refused).
 */
async function providerOnly(req: FastifyRequest): Promise<void> {
  if (!repo.seesResources(req.principal)) throw Errors.notFound(`no route ${req.method} ${req.url.split('?')[0]}`);
}

export function registerResourceRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const body = (req: FastifyRequest) => ({ ...(req.body as object), ...(req.params as object) });
  const route = { preValidation: providerOnly };

  // ---- mail servers ----
  app.get('/api/v1/mail-servers', { ...route, schema: { ...tag, querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(ServerView), ...errorResponses } } },
    async (req) => mapPage(await repo.listServers(db, req.principal, req.query as any), toServer));
  app.post('/api/v1/mail-servers', { ...route, schema: { ...tag, querystring: WaitQuery, body: CreateServerBody, response: ok(ServerView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, RP.createServer, req.body, 201));
  app.get('/api/v1/mail-servers/:serverId', { ...route, schema: { ...tag, params: params(SERVER), response: { 200: ServerView, ...errorResponses } } },
    async (req) => toServer(await repo.getServer(db, req.principal, (req.params as any).serverId)));
  app.patch('/api/v1/mail-servers/:serverId', { ...route, schema: { ...tag, params: params(SERVER), querystring: WaitQuery, body: UpdateServerBody, response: ok(ServerView) } },
    (req, reply) => submitAndReply(req, reply, deps, RP.updateServer, body(req)));
  app.delete('/api/v1/mail-servers/:serverId', {
    ...route, schema: { ...tag, description: 'Refused (server_has_stores) while the server has mailstores.', params: params(SERVER), querystring: WaitQuery, response: ok(ServerView) },
  }, (req, reply) => submitAndReply(req, reply, deps, RP.deleteServer, req.params));

  // ---- mailstores of a server ----
  app.get('/api/v1/mail-servers/:serverId/stores', { ...route, schema: { ...tag, params: params(SERVER), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(StoreView), ...errorResponses } } },
    async (req) => {
      const server = await repo.getServer(db, req.principal, (req.params as any).serverId);
      return mapPage(await repo.listStores(db, req.principal, { ...(req.query as any), server: server.id }), toStore);
    });
  app.post('/api/v1/mail-servers/:serverId/stores', { ...route, schema: { ...tag, params: params(SERVER), querystring: WaitQuery, body: CreateStoreBody, response: ok(StoreView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, RP.createStore, body(req), 201));
  app.get('/api/v1/mail-servers/:serverId/stores/:storeId', { ...route, schema: { ...tag, params: params(STORE), response: { 200: StoreView, ...errorResponses } } },
    async (req) => toStore(await repo.getStore(db, req.principal, (req.params as any).storeId, (req.params as any).serverId)));
  app.patch('/api/v1/mail-servers/:serverId/stores/:storeId', {
    ...route, schema: { ...tag, description: 'capacityBytes may not drop below allocatedBytes (capacity_below_allocated); purpose and sharing change only while the store is unused (store_in_use).', params: params(STORE), querystring: WaitQuery, body: UpdateStoreBody, response: ok(StoreView) },
  }, (req, reply) => submitAndReply(req, reply, deps, RP.updateStore, body(req)));
  app.delete('/api/v1/mail-servers/:serverId/stores/:storeId', {
    ...route, schema: { ...tag, description: 'Refused (store_in_use) while organizations hold allocations on the store.', params: params(STORE), querystring: WaitQuery, response: ok(StoreView) },
  }, (req, reply) => submitAndReply(req, reply, deps, RP.deleteStore, req.params));

  // ---- all mailstores ----
  app.get('/api/v1/mailstores', {
    ...route, schema: { ...tag, description: 'All mailstores with capacity, allocated and free bytes, by id; filter by purpose, state, server.', querystring: Type.Object({ ...ListQuery, ...StoreListQuery }, strict), response: { 200: ListOf(StoreView), ...errorResponses } },
  }, async (req) => mapPage(await repo.listStores(db, req.principal, req.query as any), toStore));
  app.get('/api/v1/mailstores/:storeId', { ...route, schema: { ...tag, params: params({ storeId: Id('mst') }), response: { 200: StoreView, ...errorResponses } } },
    async (req) => toStore(await repo.getStore(db, req.principal, (req.params as any).storeId)));
  app.get('/api/v1/mailstores/:storeId/consumers', {
    ...route, schema: { ...tag, description: 'The organizations holding allocation on the store, by organization id.', params: params({ storeId: Id('mst') }), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(ConsumerView), ...errorResponses } },
  }, async (req) => {
    const store = await repo.getStore(db, req.principal, (req.params as any).storeId);
    return mapPage(await repo.storeConsumers(db, req.principal, store.id, req.query as any), toConsumer);
  });
  app.get('/api/v1/mailstores/:storeId/recipients', {
    ...route, schema: { ...tag, description: 'The mailboxes (deleted ones awaiting purge included) or public folders on the store, by id.', params: params({ storeId: Id('mst') }), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(RecipientView), ...errorResponses } },
  }, async (req) => {
    const store = await repo.getStore(db, req.principal, (req.params as any).storeId);
    return mapPage(await repo.storeRecipients(db, req.principal, store, req.query as any), toRecipient);
  });

  // ---- an organization's resources ----
  const ORG = { orgId: Id('org') };
  app.get('/api/v1/organizations/:orgId/resources', {
    ...route, schema: { ...tag, description: 'The organization\'s allocation and its pieces on every store (provider roles).', params: params(ORG), response: { 200: ResourcesView, ...errorResponses } },
  }, async (req) => {
    const orgId = (req.params as any).orgId as string;
    const s = await readSubscription(db, orgId);
    if (!s) throw Errors.notFound(`organization ${orgId} not found or not subscribed`);
    return toResources(s, await repo.orgResources(db, orgId));
  });
  const MoveView = Type.Object({ mailboxId: Type.String(), storeId: Nullable(Type.String()), movingFrom: Nullable(Type.String({ description: 'the store the data is being copied from; null once the copy is done' })), moved: Type.Boolean() });
  app.post('/api/v1/organizations/:orgId/mailboxes/:mailboxId/move', {
    ...route, schema: {
      ...tag, description: 'Move the mailbox to another mailbox store (provider roles): placement and charge move at once (with allocation when the target piece lacks room); a provider job copies the data and the request completes when it has.',
      params: params({ ...ORG, mailboxId: Id('mbx') }), querystring: WaitQuery, body: MoveBody, response: ok(MoveView),
    },
  }, (req, reply) => submitAndReply(req, reply, deps, MOVE_PROCS.moveMailbox, body(req)));
  const MoveOrgView = Type.Object({ orgId: Type.String(), storeId: Type.String(), mailboxes: Type.Integer(), batchRequestId: Nullable(Type.String({ description: 'the batch request moving them, one item per mailbox' })) });
  app.post('/api/v1/organizations/:orgId/move-mailboxes', {
    ...route, schema: {
      ...tag, description: 'Move every active mailbox of the organization to one store: starts a resumable batch request of single moves.',
      params: params(ORG), querystring: WaitQuery, body: MoveBody, response: ok(MoveOrgView),
    },
  }, (req, reply) => submitAndReply(req, reply, deps, MOVE_PROCS.moveOrganization, body(req)));
  app.put('/api/v1/organizations/:orgId/allocation', {
    ...route, schema: {
      ...tag, description: 'Size the organization\'s mailbox allocation (a total); sources say which stores gain or give up bytes, required to shrink across several stores (shrink_needs_sources).',
      params: params(ORG), querystring: WaitQuery, body: AllocateBody, response: ok(ResourcesView),
    },
  }, (req, reply) => submitAndReply(req, reply, deps, RP.allocateOrganization, body(req)));
}
