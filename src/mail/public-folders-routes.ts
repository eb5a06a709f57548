import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { errorResponses, Id, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps, type VisibilityRegistry } from '../engine/http.js';
import { mapPage } from '../store/page.js';
import {
  CreatePublicFolderBody, DeletedFoldersView, EnableFolderMailBody, foldersQuery, getFolder, listFolders, listPermissions, PermissionView,
  PublicFolderView, SetPermissionBody, toPermission, toPublicFolder, UpdatePublicFolderBody,
} from './public-folders-model.js';
import { FOLDER_PROCS as P } from './public-folders-procedures.js';

/**
 * HTTP routes of public folders: /api/v1/organizations/{orgId}/public-folders. Permissions are set per
 * holder kind (…/permissions/users/{userId}, …/permissions/groups/{groupId}) so every path parameter is an
 * id of one kind and the API's visibility check covers it.
 */

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const ok = (view: TSchema, status = 200) => ({ [status]: view, 202: view, ...errorResponses });
const ORG = { orgId: Id('org') };
const FOLDER = { ...ORG, folderId: Id('pfd') };
const COLLECTION = '/api/v1/organizations/:orgId/public-folders';
const ONE = `${COLLECTION}/:folderId`;

/** Which public folders the caller can see (404 before anything else for any other). */
export const publicFolderVisibility: VisibilityRegistry = {
  publicFolder: async (db, p, id) => !!(await foldersQuery(db, p).select('id').where('id', '=', id).executeTakeFirst()),
};

export function registerPublicFolderRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = { tags: ['public folders'], security: [{ bearer: [] }] };

  app.get(COLLECTION, {
    schema: {
      ...tag, params: params(ORG),
      querystring: Type.Object({
        ...ListQuery,
        parentId: Type.Optional(Id('pfd')),
        root: Type.Optional(Type.Boolean({ description: 'only top-level folders' })),
        q: Type.Optional(Type.String({ maxLength: 1024, description: 'prefix of the folder path, e.g. /Sales' })),
      }, strict),
      response: { 200: ListOf(PublicFolderView), ...errorResponses },
    },
  }, async (req) => mapPage(await listFolders(db, req.principal, (req.params as any).orgId, req.query as any), toPublicFolder));
  app.post(COLLECTION, {
    schema: {
      ...tag, params: params(ORG), querystring: WaitQuery, body: CreatePublicFolderBody, response: ok(PublicFolderView, 201),
      description: 'Create a folder (needs the plan feature publicFolders); its prohibitPostQuota is charged against the organization\'s public-folder pool.',
    },
  }, (req, reply) => submitAndReply(req, reply, deps, P.createFolder, { ...(req.body as object), ...(req.params as object) }, 201));
  app.get(ONE, { schema: { ...tag, params: params(FOLDER), response: { 200: PublicFolderView, ...errorResponses } } },
    async (req) => toPublicFolder(await getFolder(db, req.principal, (req.params as any).orgId, (req.params as any).folderId)));
  app.patch(ONE, {
    schema: {
      ...tag, params: params(FOLDER), querystring: WaitQuery, body: UpdatePublicFolderBody, response: ok(PublicFolderView),
      description: 'Rename or resize; a resize re-charges the difference of prohibitPostQuota.',
    },
  }, (req, reply) => submitAndReply(req, reply, deps, P.updateFolder, { ...(req.body as object), ...(req.params as object) }));
  app.delete(ONE, {
    schema: {
      ...tag, params: params(FOLDER),
      querystring: Type.Object({ recursive: Type.Optional(Type.Boolean({ description: 'also delete every subfolder' })), wait: Type.Optional(Type.Boolean()) }, strict),
      response: ok(DeletedFoldersView),
      description: 'Delete a folder; refused (folder_has_subfolders) while it has subfolders unless recursive=true. Addresses go to quarantine.',
    },
  }, (req, reply) => submitAndReply(req, reply, deps, P.deleteFolder, { ...(req.params as object), ...((req.query as any).recursive ? { recursive: true } : {}) }));

  app.put(`${ONE}/mail`, { schema: { ...tag, params: params(FOLDER), querystring: WaitQuery, body: EnableFolderMailBody, response: ok(PublicFolderView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.enableFolderMail, { ...(req.body as object), ...(req.params as object) }));
  app.delete(`${ONE}/mail`, { schema: { ...tag, params: params(FOLDER), querystring: WaitQuery, response: ok(PublicFolderView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.disableFolderMail, req.params));

  app.get(`${ONE}/permissions`, { schema: { ...tag, params: params(FOLDER), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(PermissionView), ...errorResponses } } },
    async (req) => {
      const p = req.params as { orgId: string; folderId: string };
      return mapPage(await listPermissions(db, req.principal, p.orgId, p.folderId, req.query as any), toPermission);
    });
  const Permission = Type.Object({ folderId: Type.String(), principalId: Type.String(), principalKind: Type.String(), role: Type.String() });
  for (const [segment, name, prefix] of [['users', 'userId', 'usr'], ['groups', 'groupId', 'grp']] as const) {
    const schema = params({ ...FOLDER, [name]: Id(prefix) });
    app.put(`${ONE}/permissions/${segment}/:${name}`, { schema: { ...tag, params: schema, querystring: WaitQuery, body: SetPermissionBody, response: ok(Permission) } },
      (req, reply) => {
        const p = req.params as Record<string, string>;
        return submitAndReply(req, reply, deps, P.setFolderPermission, { orgId: p.orgId, folderId: p.folderId, principalId: p[name], ...(req.body as object) });
      });
    app.delete(`${ONE}/permissions/${segment}/:${name}`, { schema: { ...tag, params: schema, querystring: WaitQuery, response: ok(Permission) } },
      (req, reply) => {
        const p = req.params as Record<string, string>;
        return submitAndReply(req, reply, deps, P.removeFolderPermission, { orgId: p.orgId, folderId: p.folderId, principalId: p[name] });
      });
  }
}
