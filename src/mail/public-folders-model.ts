import { Type, type Static } from '@sinclair/typebox';
import { sql } from 'kysely';
import { Errors } from '../core/errors.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import { iso } from '../core/time.js';
import { Address } from '../directory/model.js';
import { inScope } from '../directory/repo.js';
import { Id } from '../engine/http.js';
import { Bytes } from '../plans/limits.js';
import type { Db } from '../store/db.js';
import { noRows } from '../store/scope.js';
import { page, type Page, type PageParams } from '../store/page.js';

/**
 * Public folders: a tree per organization. A folder's `path` is its parent's path + '/' + its name and is
 * unique per organization (UNIQUE (org_id, path)); names may not contain '/'. Quotas follow Exchange:
 * issueWarningQuota ≤ prohibitPostQuota (QUOTA_ORDER), plus maxItemSize. The organization is charged each
 * folder's prohibitPostQuota against its public-folder pool; `charged_bytes` is what its counters hold for it.
 */

const strict = { additionalProperties: false } as const;
const Timestamp = Type.String({ format: 'date-time' });

/** Persisted job kinds (never rename), handled by the data plane (dataplane/public-folders.ts). */
export const PUBLIC_FOLDER_JOBS = {
  /** payload { orgId }: the organization's public folder trees and their ACLs = what the database holds. */
  organization: 'mail.converge_public_folders',
} as const;

/** Persisted folder permission roles, strongest first. */
export const FOLDER_ROLES = ['owner', 'editor', 'author', 'reviewer'] as const;
export const FolderRole = Type.Union(FOLDER_ROLES.map((r) => Type.Literal(r)));

/** Longest path a folder may have (names are at most 255 characters; this bounds the depth of the tree). */
export const MAX_FOLDER_PATH = 1024;
export const FolderName = Type.String({
  minLength: 1, maxLength: 255, pattern: '^[^\\u0000-\\u001f\\u007f/\\\\]+$',
  description: 'folder name: no "/", "\\" or control characters; not ".", "..", "cur", "new" or "tmp"; not starting with "~"',
});
/**
 * Names Dovecot refuses as a mailbox name besides what FolderName's pattern excludes (a folder is a Dovecot
 * mailbox: dataplane/public-folders.ts): '.' and '..', Maildir's own cur, new and tmp, and a leading '~'.
 */
export const isReservedFolderName = (name: string) => /^(\.|\.\.|cur|new|tmp)$/.test(name) || name.startsWith('~');

export const CreatePublicFolderBody = Type.Object(
  {
    name: FolderName,
    parentId: Type.Optional(Id('pfd')),
    prohibitPostQuota: Bytes('posting is refused above this size; what the organization is charged for the folder'),
    issueWarningQuota: Type.Optional(Bytes('warning size; ≤ prohibitPostQuota (default: prohibitPostQuota)')),
    maxItemSize: Type.Optional(Bytes('largest item the folder accepts (default: prohibitPostQuota)')),
    hiddenFromAddressBook: Type.Optional(Type.Boolean()),
  },
  strict,
);
export const UpdatePublicFolderBody = Type.Object(
  {
    name: Type.Optional(FolderName),
    prohibitPostQuota: Type.Optional(Bytes()),
    issueWarningQuota: Type.Optional(Bytes()),
    maxItemSize: Type.Optional(Bytes()),
    hiddenFromAddressBook: Type.Optional(Type.Boolean()),
  },
  { ...strict, minProperties: 1 },
);
export const EnableFolderMailBody = Type.Object({ primaryAddress: Address, hiddenFromAddressBook: Type.Optional(Type.Boolean()) }, strict);
export const SetPermissionBody = Type.Object({ role: FolderRole }, strict);

export const PublicFolderView = Type.Object({
  id: Type.String(), orgId: Type.String(), parentId: Type.Union([Type.String(), Type.Null()]), name: Type.String(), path: Type.String(),
  issueWarningQuota: Type.Integer(), prohibitPostQuota: Type.Integer(), maxItemSize: Type.Integer(), chargedBytes: Type.Integer(),
  mailEnabled: Type.Boolean(), primaryAddress: Type.Union([Type.String(), Type.Null()]), hiddenFromAddressBook: Type.Boolean(),
  createdAt: Timestamp, updatedAt: Timestamp,
});
export type PublicFolderView = Static<typeof PublicFolderView>;
export const DeletedFoldersView = Type.Object({
  id: Type.String(), deleted: Type.Array(Type.String()), releasedBytes: Type.Integer(), releasedAddresses: Type.Array(Type.String()),
});
export const PermissionView = Type.Object({
  folderId: Type.String(), principalId: Type.String(), principalKind: Type.String(), role: Type.String(), displayName: Type.String(),
});

/* eslint-disable @typescript-eslint/no-explicit-any */
export const toPublicFolder = (r: any): PublicFolderView => ({
  id: r.id, orgId: r.org_id, parentId: r.parent_id ?? null, name: r.name, path: r.path,
  issueWarningQuota: Number(r.issue_warning_quota), prohibitPostQuota: Number(r.prohibit_post_quota), maxItemSize: Number(r.max_item_size),
  chargedBytes: Number(r.charged_bytes), mailEnabled: Number(r.mail_enabled) === 1, primaryAddress: r.primary_address ?? null,
  hiddenFromAddressBook: Number(r.hidden) === 1, createdAt: iso(r.created_at)!, updatedAt: iso(r.updated_at)!,
});

// ---- scoped reads ----

/** Folders the principal may see: its scope's; none for the user role (folders are administered, not self-served). */
export function foldersQuery(db: Db, p: Principal): any {
  const q = inScope(db.selectFrom('public_folders').selectAll(), p);
  return roleLevel(p.role) === 'user' ? noRows(q) : q;
}

export async function getFolder(db: Db, p: Principal, orgId: string, id: string): Promise<any> {
  const r = await foldersQuery(db, p).where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
  if (!r) throw Errors.notFound(`public folder ${id} not found`);
  return r;
}

export function listFolders(db: Db, p: Principal, orgId: string, f: PageParams & { parentId?: string; root?: boolean; q?: string }): Promise<Page<any>> {
  let q = foldersQuery(db, p).where('org_id', '=', orgId);
  if (f.parentId) q = q.where('parent_id', '=', f.parentId);
  else if (f.root) q = q.where('parent_id', 'is', null);
  // an exact prefix on both dialects (LIKE would treat '_' and '%' in folder names as wildcards)
  if (f.q) q = q.where(sql`substr(path, 1, ${[...f.q].length})`, '=', f.q);
  return page(q, 'id', f);
}

export async function listPermissions(db: Db, p: Principal, orgId: string, folderId: string, f: PageParams): Promise<Page<any>> {
  const folder = await getFolder(db, p, orgId, folderId);
  const q = db
    .selectFrom('public_folder_permissions as fp')
    .leftJoin('users as u', 'u.id', 'fp.principal_id')
    .leftJoin('groups as g', 'g.id', 'fp.principal_id')
    .select(['fp.principal_id as id', 'fp.folder_id as folder_id', 'fp.principal_kind as kind', 'fp.role as role', 'u.display_name as u_name', 'g.display_name as g_name'])
    .where('fp.folder_id', '=', folder.id);
  return page(q, 'fp.principal_id', f);
}

export const toPermission = (r: any) => ({
  folderId: r.folder_id, principalId: r.id, principalKind: r.kind, role: r.role, displayName: r.u_name ?? r.g_name ?? r.id,
});

/** A folder and everything under it, parents before children (breadth first), inside one organization. */
export async function subtree(tx: Db, orgId: string, root: any): Promise<any[]> {
  const out = [root];
  let frontier = [root.id as string];
  while (frontier.length > 0) {
    const next: any[] = [];
    for (let i = 0; i < frontier.length; i += 500) {
      next.push(...(await tx.selectFrom('public_folders').selectAll().where('org_id', '=', orgId).where('parent_id', 'in', frontier.slice(i, i + 500)).execute()));
    }
    out.push(...next);
    frontier = next.map((r) => r.id);
  }
  return out;
}
