import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { errorResponses, Id, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps } from '../engine/http.js';
import { mapPage } from '../store/page.js';
import { ContactView, CONTACT_PROCS, CreateContactBody, getContact, listContacts, toContact, UpdateContactBody } from './contacts.js';

/** Mail contacts over HTTP (their visibility check is in mailboxVisibility). */

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const ok = (view: TSchema, status = 200) => ({ [status]: view, 202: view, ...errorResponses });
const ORG = { orgId: Id('org') };
const CONTACT = { ...ORG, contactId: Id('con') };
const Prefix = Type.Optional(Type.String({ maxLength: 254, description: 'prefix of the external address' }));

/* eslint-disable @typescript-eslint/no-explicit-any */
export function registerContactRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = (t: string) => ({ tags: [t], security: [{ bearer: [] }] });
  const both = (req: any) => ({ ...(req.body as object), ...(req.params as object) });
  const contacts = '/api/v1/organizations/:orgId/contacts';
  app.get(contacts, { schema: { ...tag('contacts'), params: params(ORG), querystring: Type.Object({ ...ListQuery, q: Prefix }, strict), response: { 200: ListOf(ContactView), ...errorResponses } } },
    async (req) => mapPage(await listContacts(db, req.principal, (req.params as any).orgId, req.query as any), toContact));
  app.post(contacts, { schema: { ...tag('contacts'), params: params(ORG), querystring: WaitQuery, body: CreateContactBody, response: ok(ContactView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, CONTACT_PROCS.createContact, both(req), 201));
  app.get(`${contacts}/:contactId`, { schema: { ...tag('contacts'), params: params(CONTACT), response: { 200: ContactView, ...errorResponses } } },
    async (req) => toContact(await getContact(db, req.principal, (req.params as any).orgId, (req.params as any).contactId)));
  app.patch(`${contacts}/:contactId`, { schema: { ...tag('contacts'), params: params(CONTACT), querystring: WaitQuery, body: UpdateContactBody, response: ok(ContactView) } },
    (req, reply) => submitAndReply(req, reply, deps, CONTACT_PROCS.updateContact, both(req)));
  app.delete(`${contacts}/:contactId`, { schema: { ...tag('contacts'), params: params(CONTACT), querystring: WaitQuery, response: ok(ContactView) } },
    (req, reply) => submitAndReply(req, reply, deps, CONTACT_PROCS.deleteContact, req.params));
}
