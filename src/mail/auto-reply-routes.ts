import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { errorResponses, Id, submitAndReply, WaitQuery, type RouteDeps } from '../engine/http.js';
import { AUTO_REPLY_PROCS as P, AutoReplyView, SetAutoReplyBody, toAutoReply } from './auto-reply.js';
import { visibleMailbox } from './grants-model.js';

/**
 * GET/PUT /api/v1/organizations/{orgId}/mailboxes/{mailboxId}/auto-reply. A mailbox's user reads and sets
 * its own; the organization's admins and helpdesk (and above) any of the organization's. A mailbox never
 * set answers the defaults (mode off, empty messages, audience none, updatedAt null).
 */

const MAILBOX = Type.Object({ orgId: Id('org'), mailboxId: Id('mbx') }, { additionalProperties: false });
const URL = '/api/v1/organizations/:orgId/mailboxes/:mailboxId/auto-reply';

export function registerAutoReplyRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = { tags: ['auto-reply'], security: [{ bearer: [] }] };
  app.get(URL, { schema: { ...tag, params: MAILBOX, response: { 200: AutoReplyView, ...errorResponses } } }, async (req) => {
    const p = req.params as { orgId: string; mailboxId: string };
    const m = await visibleMailbox(db, req.principal, p.orgId, p.mailboxId);
    return toAutoReply(m, await db.selectFrom('auto_replies').selectAll().where('mailbox_id', '=', m.id).executeTakeFirst());
  });
  app.put(URL, { schema: { ...tag, params: MAILBOX, querystring: WaitQuery, body: SetAutoReplyBody, response: { 200: AutoReplyView, 202: AutoReplyView, ...errorResponses } } },
    (req, reply) => submitAndReply(req, reply, deps, P.setAutoReply, { ...(req.body as object), ...(req.params as object) }));
}
