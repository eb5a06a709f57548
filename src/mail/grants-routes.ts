import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Errors } from '../core/errors.js';
import { roleLevel } from '../core/tenancy.js';
import { getGroup } from '../directory/repo.js';
import { errorResponses, Id, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps } from '../engine/http.js';
import { mapPage, page } from '../store/page.js';
import { GrantView, toTrustee, TrusteeView, trusteesQuery, visibleMailbox } from './grants-model.js';
import { GRANT_PROCS as P } from './grants-procedures.js';

/**
 * Routes of send-as and send-on-behalf grants:
 *   /api/v1/organizations/{orgId}/mailboxes/{mailboxId}/send-as[/{userId}]
 *   /api/v1/organizations/{orgId}/mailboxes/{mailboxId}/send-on-behalf[/{userId}]
 *   /api/v1/organizations/{orgId}/groups/{groupId}/send-as[/{userId}]
 *   /api/v1/organizations/{orgId}/groups/{groupId}/send-on-behalf[/{userId}]
 * GET lists the trustees, PUT grants (idempotent), DELETE revokes. Lists are for the organization's
 * admins and helpdesk (and above); the user role gets 404.
 */

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const ok = (view: TSchema) => ({ 200: view, 202: view, ...errorResponses });

export function registerGrantRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = { tags: ['send-as grants'], security: [{ bearer: [] }] };
  const objects = [['mailboxes', 'mailboxId', 'mbx'], ['groups', 'groupId', 'grp']] as const;
  const rights = [['send-as', 'send_as'], ['send-on-behalf', 'send_on_behalf']] as const;
  for (const [collection, name, prefix] of objects) {
    const OBJECT = { orgId: Id('org'), [name]: Id(prefix) };
    const base = `/api/v1/organizations/:orgId/${collection}/:${name}`;
    for (const [segment, right] of rights) {
      app.get(`${base}/${segment}`, { schema: { ...tag, params: params(OBJECT), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(TrusteeView), ...errorResponses } } },
        async (req) => {
          const p = req.params as Record<string, string>;
          if (roleLevel(req.principal.role) === 'user') throw Errors.notFound(`${p[name]} not found`);
          const objectId = prefix === 'mbx' ? (await visibleMailbox(db, req.principal, p.orgId!, p[name]!)).id : (await getGroup(db, req.principal, p.orgId!, p[name]!)).id;
          return mapPage(await page(trusteesQuery(db, objectId, right), 'u.id', req.query as any), toTrustee);
        });
      const GRANT = params({ ...OBJECT, userId: Id('usr') });
      for (const [method, proc] of [['PUT', P.grantSendRight], ['DELETE', P.revokeSendRight]] as const) {
        app.route({
          method, url: `${base}/${segment}/:userId`, schema: { ...tag, params: GRANT, querystring: WaitQuery, response: ok(GrantView) },
          handler: (req, reply) => {
            const p = req.params as Record<string, string>;
            return submitAndReply(req, reply, deps, proc, { orgId: p.orgId, objectId: p[name], userId: p.userId, right });
          },
        });
      }
    }
  }
}
