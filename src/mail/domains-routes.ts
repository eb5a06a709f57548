import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { roleLevel } from '../core/tenancy.js';
import { errorResponses, Id, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps, type VisibilityRegistry } from '../engine/http.js';
import { mapPage } from '../store/page.js';
import { AcceptDomainBody, AcceptedDomainView, AcceptedType, SharedDomainBody, SharedDomainView, SharedSubdomainBody, toAcceptedDomain, toSharedDomain } from './domains-model.js';
import { DOMAIN_PROCS } from './domains-procedures.js';
import * as repo from './domains-repo.js';

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const query = (q: Record<string, TSchema>) => Type.Object({ ...ListQuery, ...q }, strict);
const ok = (view: TSchema, status = 200) => ({ [status]: view, 202: view, ...errorResponses });
const ORG = { orgId: Id('org') };
const DOMAIN = { ...ORG, domainId: Id('dom') };
const SHARED = { sharedDomainId: Id('sdm') };
const Prefix = Type.Optional(Type.String({ maxLength: 253, description: 'prefix of the domain name' }));

/** Shared domains are visible to provider roles only (accepted domains are checked as directory domains). */
export const domainVisibility: VisibilityRegistry = {
  sharedDomain: async (db, p, id) => roleLevel(p.role) === 'provider' && !!(await repo.sharedQuery(db, p).select('id').where('id', '=', id).executeTakeFirst()),
};

export function registerDomainRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = (t: string) => ({ tags: [t], security: [{ bearer: [] }] });
  const body = (req: any) => ({ ...(req.body as object), ...(req.params as object) });

  app.get('/api/v1/organizations/:orgId/accepted-domains', {
    schema: { ...tag('accepted domains'), params: params(ORG), querystring: query({ type: Type.Optional(AcceptedType), q: Prefix }), response: { 200: ListOf(AcceptedDomainView), ...errorResponses } },
  }, async (req) => mapPage(await repo.listAccepted(db, req.principal, (req.params as any).orgId, req.query as any), toAcceptedDomain));
  app.post('/api/v1/organizations/:orgId/accepted-domains/shared', {
    schema: { ...tag('accepted domains'), description: 'Give the organization a subdomain of a shared domain of the provider, accepted as authoritative.', params: params(ORG), querystring: WaitQuery, body: SharedSubdomainBody, response: ok(AcceptedDomainView, 201) },
  }, (req, reply) => submitAndReply(req, reply, deps, DOMAIN_PROCS.acceptSharedSubdomain, body(req), 201));
  app.get('/api/v1/organizations/:orgId/domains/:domainId/accepted', { schema: { ...tag('accepted domains'), params: params(DOMAIN), response: { 200: AcceptedDomainView, ...errorResponses } } },
    async (req) => toAcceptedDomain(await repo.getAccepted(db, req.principal, (req.params as any).orgId, (req.params as any).domainId)));
  app.put('/api/v1/organizations/:orgId/domains/:domainId/accepted', {
    schema: { ...tag('accepted domains'), description: 'Mail-enable a domain of the organization, or change its type or alias.', params: params(DOMAIN), querystring: WaitQuery, body: AcceptDomainBody, response: ok(AcceptedDomainView) },
  }, (req, reply) => submitAndReply(req, reply, deps, DOMAIN_PROCS.acceptDomain, body(req)));
  app.delete('/api/v1/organizations/:orgId/domains/:domainId/accepted', { schema: { ...tag('accepted domains'), params: params(DOMAIN), querystring: WaitQuery, response: ok(AcceptedDomainView) } },
    (req, reply) => submitAndReply(req, reply, deps, DOMAIN_PROCS.removeAcceptedDomain, req.params));

  app.get('/api/v1/shared-domains', { schema: { ...tag('shared domains'), querystring: query({ q: Prefix }), response: { 200: ListOf(SharedDomainView), ...errorResponses } } },
    async (req) => mapPage(await repo.listShared(db, req.principal, req.query as any), toSharedDomain));
  app.post('/api/v1/shared-domains', { schema: { ...tag('shared domains'), querystring: WaitQuery, body: SharedDomainBody, response: ok(SharedDomainView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, DOMAIN_PROCS.createSharedDomain, req.body, 201));
  app.get('/api/v1/shared-domains/:sharedDomainId', { schema: { ...tag('shared domains'), params: params(SHARED), response: { 200: SharedDomainView, ...errorResponses } } },
    async (req) => toSharedDomain(await repo.getShared(db, req.principal, (req.params as any).sharedDomainId)));
  app.delete('/api/v1/shared-domains/:sharedDomainId', { schema: { ...tag('shared domains'), params: params(SHARED), querystring: WaitQuery, response: ok(SharedDomainView) } },
    (req, reply) => submitAndReply(req, reply, deps, DOMAIN_PROCS.deleteSharedDomain, req.params));
}
