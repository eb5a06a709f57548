import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Address } from '../directory/model.js';
import { errorResponses, Id, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps, type VisibilityRegistry } from '../engine/http.js';
import { contactsQuery } from './contacts.js';
import { AliasBody, ChangePlanBody, CreateMailboxBody, MAILBOX_PROCS, MailboxKind, MailboxState, MailboxView, RenameBody, UpdateMailboxBody } from './mailboxes-model.js';
import * as repo from './mailboxes-repo.js';

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const query = (q: Record<string, TSchema>) => Type.Object({ ...ListQuery, ...q }, strict);
const ok = (view: TSchema, status = 200) => ({ [status]: view, 202: view, ...errorResponses });
const ORG = { orgId: Id('org') };
const MAILBOX = { ...ORG, mailboxId: Id('mbx') };
const Prefix = Type.Optional(Type.String({ maxLength: 254, description: 'prefix of the (primary) address' }));

/**
 * Which mailboxes and contacts the caller can see: organization roles and above in their scope; a user
 * its own mailbox and no contacts. Checked before validation, so other tenants' ids are 404 everywhere.
 */
export const mailboxVisibility: VisibilityRegistry = {
  mailbox: async (db, p, id) => !!(await repo.mailboxesQuery(db, p).select('id').where('id', '=', id).executeTakeFirst()),
  contact: async (db, p, id) => !!(await contactsQuery(db, p).select('id').where('id', '=', id).executeTakeFirst()),
};

/* eslint-disable @typescript-eslint/no-explicit-any */
export function registerMailboxRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = (t: string) => ({ tags: [t], security: [{ bearer: [] }] });
  const both = (req: any) => ({ ...(req.body as object), ...(req.params as object) });
  const base = '/api/v1/organizations/:orgId/mailboxes';
  const one = `${base}/:mailboxId`;

  app.get(base, {
    schema: {
      ...tag('mailboxes'), params: params(ORG),
      querystring: query({ q: Prefix, kind: Type.Optional(MailboxKind), state: Type.Optional(MailboxState), userId: Type.Optional(Id('usr')) }),
      response: { 200: ListOf(MailboxView), ...errorResponses },
    },
  }, async (req) => repo.listMailboxes(db, req.principal, (req.params as any).orgId, req.query as any));
  app.post(base, { schema: { ...tag('mailboxes'), params: params(ORG), querystring: WaitQuery, body: CreateMailboxBody, response: ok(MailboxView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, MAILBOX_PROCS.createMailbox, both(req), 201));
  app.get(one, { schema: { ...tag('mailboxes'), params: params(MAILBOX), response: { 200: MailboxView, ...errorResponses } } },
    async (req) => repo.viewOf(db, await repo.getMailbox(db, req.principal, (req.params as any).orgId, (req.params as any).mailboxId)));
  app.patch(one, { schema: { ...tag('mailboxes'), params: params(MAILBOX), querystring: WaitQuery, body: UpdateMailboxBody, response: ok(MailboxView) } },
    (req, reply) => submitAndReply(req, reply, deps, MAILBOX_PROCS.updateMailbox, both(req)));
  app.delete(one, {
    schema: {
      ...tag('mailboxes'),
      description: 'Disable the mailbox at once and release its addresses into quarantine; a job purges it after the retention period (purgeAfter), until then it can be restored. The request stays running until the purge.',
      params: params(MAILBOX), querystring: WaitQuery, response: ok(MailboxView),
    },
  }, (req, reply) => submitAndReply(req, reply, deps, MAILBOX_PROCS.deleteMailbox, req.params));
  app.post(`${one}/restore`, { schema: { ...tag('mailboxes'), params: params(MAILBOX), querystring: WaitQuery, response: ok(MailboxView) } },
    (req, reply) => submitAndReply(req, reply, deps, MAILBOX_PROCS.restoreMailbox, req.params));
  app.put(`${one}/plan`, { schema: { ...tag('mailboxes'), params: params(MAILBOX), querystring: WaitQuery, body: ChangePlanBody, response: ok(MailboxView) } },
    (req, reply) => submitAndReply(req, reply, deps, MAILBOX_PROCS.changeMailboxPlan, both(req)));
  app.post(`${one}/aliases`, { schema: { ...tag('mailboxes'), params: params(MAILBOX), querystring: WaitQuery, body: AliasBody, response: ok(MailboxView, 201) } },
    (req, reply) => submitAndReply(req, reply, deps, MAILBOX_PROCS.addMailboxAlias, both(req), 201));
  app.delete(`${one}/aliases`, {
    schema: {
      ...tag('mailboxes'), description: 'Remove an alias (?address=); it is quarantined: no other recipient can take it until the quarantine ends.',
      params: params(MAILBOX), querystring: Type.Object({ address: Address, wait: Type.Optional(Type.Boolean()) }, strict), response: ok(MailboxView),
    },
  }, (req, reply) => submitAndReply(req, reply, deps, MAILBOX_PROCS.removeMailboxAlias, { ...(req.params as object), address: (req.query as any).address }));
  app.post(`${one}/primary-address`, {
    schema: { ...tag('mailboxes'), description: 'Rename the primary address, keeping the mailbox\'s data.', params: params(MAILBOX), querystring: WaitQuery, body: RenameBody, response: ok(MailboxView) },
  }, (req, reply) => submitAndReply(req, reply, deps, MAILBOX_PROCS.renameMailboxAddress, both(req)));

}
