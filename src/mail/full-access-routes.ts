import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Errors } from '../core/errors.js';
import { roleLevel } from '../core/tenancy.js';
import { errorResponses, Id, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps } from '../engine/http.js';
import { mapPage, page } from '../store/page.js';
import { toTrustee, TrusteeView, visibleMailbox } from './grants-model.js';
import { FULL_ACCESS_PROCS as P, fullAccessQuery, FullAccessView } from './full-access.js';

/**
 * Routes of full access to a mailbox (mail/full-access.ts):
 *   GET    /api/v1/organizations/{orgId}/mailboxes/{mailboxId}/full-access            the trustees
 *   PUT    /api/v1/organizations/{orgId}/mailboxes/{mailboxId}/full-access/{userId}   grant (idempotent)
 *   DELETE /api/v1/organizations/{orgId}/mailboxes/{mailboxId}/full-access/{userId}   revoke
 * The list is for the organization's admins and helpdesk (and above); the user role gets 404.
 */

const strict = { additionalProperties: false } as const;

export function registerFullAccessRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = { tags: ['full access'], security: [{ bearer: [] }] };
  const MAILBOX = { orgId: Id('org'), mailboxId: Id('mbx') };
  const base = '/api/v1/organizations/:orgId/mailboxes/:mailboxId/full-access';
  app.get(base, { schema: { ...tag, params: Type.Object(MAILBOX, strict), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(TrusteeView), ...errorResponses } } },
    async (req) => {
      const p = req.params as { orgId: string; mailboxId: string };
      if (roleLevel(req.principal.role) === 'user') throw Errors.notFound(`${p.mailboxId} not found`);
      const m = await visibleMailbox(db, req.principal, p.orgId, p.mailboxId);
      return mapPage(await page(fullAccessQuery(db, m.id), 'u.id', req.query as any), toTrustee);
    });
  const GRANT = Type.Object({ ...MAILBOX, userId: Id('usr') }, strict);
  for (const [method, proc] of [['PUT', P.grantFullAccess], ['DELETE', P.revokeFullAccess]] as const) {
    app.route({
      method, url: `${base}/:userId`, schema: { ...tag, params: GRANT, querystring: WaitQuery, response: { 200: FullAccessView, 202: FullAccessView, ...errorResponses } },
      handler: (req, reply) => {
        const p = req.params as { orgId: string; mailboxId: string; userId: string };
        return submitAndReply(req, reply, deps, proc, { orgId: p.orgId, mailboxId: p.mailboxId, userId: p.userId });
      },
    });
  }
}
