import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { normalizeAddress } from '../core/names.js';
import { conflictOn, liveOrg } from '../directory/procedures.js';
import { Id } from '../engine/http.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { placeRecipient } from '../resources/placement.js';
import { charge, checkCounts, checkFolderQuotaOrder, folderCharge, lockSubscription, requireFeature } from '../plans/limits.js';
import { claimAddress, releaseAddresses, type MailSettings } from './addresses.js';
import { activeOrgUser, mailGroupIn } from './groups-model.js';
import {
  CreatePublicFolderBody, EnableFolderMailBody, getFolder, isReservedFolderName, MAX_FOLDER_PATH, PUBLIC_FOLDER_JOBS, SetPermissionBody, subtree, toPublicFolder,
  UpdatePublicFolderBody,
} from './public-folders-model.js';

/**
 * Public folder procedures. Every create, resize and delete goes through `charge` in the same transaction
 * as the row change, with the organization's subscription row locked: the pool's counter
 * (usage.publicFolderBytes) is always exactly the sum of the folders' prohibitPostQuota (the seed's bug (b)).
 * Creating and changing folders needs the plan feature publicFolders; deleting never does, so an
 * organization whose plan lost the feature can still clean up.
 */

/** Persisted procedure ids (never rename). */
export const FOLDER_PROCS = {
  createFolder: 'mail.create_public_folder',
  updateFolder: 'mail.update_public_folder',
  deleteFolder: 'mail.delete_public_folder',
  enableFolderMail: 'mail.enable_public_folder_mail',
  disableFolderMail: 'mail.disable_public_folder_mail',
  setFolderPermission: 'mail.set_public_folder_permission',
  removeFolderPermission: 'mail.remove_public_folder_permission',
} as const;

const strict = { additionalProperties: false } as const;
const FOLDER_REF = { orgId: Id('org'), folderId: Id('pfd') };
const PrincipalId = Type.Union([Id('usr'), Id('grp')], { description: 'a user or a mail-enabled group of the same organization' });
const folderTarget = (org: any, id: string) => ({ type: 'public_folder', id, resellerId: org.reseller_id, orgId: org.id });
const nameTaken = (path: string) => () => Errors.nameTaken(`a public folder ${path} exists`);


function checkName(name: string): string {
  if (isReservedFolderName(name)) throw Errors.invalidName(`"${name}" cannot name a folder: ".", "..", "cur", "new", "tmp" and names starting with "~" are reserved`);
  return name;
}

function checkPath(path: string): string {
  if (path.length > MAX_FOLDER_PATH) throw Errors.invalidName(`a public folder path is at most ${MAX_FOLDER_PATH} characters`);
  return path;
}

/** Organization (live, in scope), its subscription locked, and the folder (in scope). */
async function openFolder(ctx: ProcContext, orgId: string, folderId: string) {
  const org = await liveOrg(ctx, orgId);
  const sub = await lockSubscription(ctx, org.id);
  const folder = await getFolder(ctx.tx, ctx.principal, org.id, folderId);
  return { org, sub, folder };
}

export function publicFolderProcedures(settings: MailSettings) {
  /** The organization's folders in the data planes converge to what this transaction leaves (dataplane/public-folders.ts). */
  const converge = (ctx: ProcContext, org: any) => {
    if (settings.managesDataplanes) ctx.enqueue({ kind: PUBLIC_FOLDER_JOBS.organization, payload: { orgId: org.id }, queueKey: org.id });
  };
  const createFolder = defineProcedure({
    id: FOLDER_PROCS.createFolder,
    input: Type.Object({ orgId: Id('org'), ...CreatePublicFolderBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const org = await liveOrg(ctx, input.orgId);
      const sub = await lockSubscription(ctx, org.id);
      requireFeature(sub, 'publicFolders');
      const parent = input.parentId ? await getFolder(ctx.tx, ctx.principal, org.id, input.parentId) : null;
      const quotas = { issueWarningQuota: input.issueWarningQuota ?? input.prohibitPostQuota, prohibitPostQuota: input.prohibitPostQuota };
      checkFolderQuotaOrder(quotas);
      const path = checkPath(`${parent ? parent.path : ''}/${checkName(input.name)}`);
      const charged = folderCharge(quotas);
      checkCounts(sub, { publicFolders: 1 });
      const storeId = await placeRecipient(ctx, sub, 'public_folder', { storeId: null, charged: 0, counted: false }, charged);
      await charge(ctx, sub, { publicFolders: 1, publicFolderBytes: charged });
      const row = {
        id: newId('publicFolder'), org_id: org.id, reseller_id: org.reseller_id, parent_id: parent?.id ?? null,
        name: input.name, path, issue_warning_quota: quotas.issueWarningQuota, prohibit_post_quota: quotas.prohibitPostQuota,
        max_item_size: input.maxItemSize ?? quotas.prohibitPostQuota, charged_bytes: charged, mail_enabled: 0, primary_address: null,
        hidden: input.hiddenFromAddressBook ? 1 : 0, store_id: storeId, created_at: ctx.now, updated_at: ctx.now,
      };
      await ctx.tx.insertInto('public_folders').values(row).execute().catch((e) => conflictOn(e, { path: nameTaken(path), public_folders: nameTaken(path) }));
      ctx.target(folderTarget(org, row.id));
      ctx.diff(null, toPublicFolder(row));
      converge(ctx, org);
      ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'public_folder', objectId: row.id, event: 'created', data: { prohibitPostQuota: charged } });
      return toPublicFolder(row);
    },
  });

  const updateFolder = defineProcedure({
    id: FOLDER_PROCS.updateFolder,
    input: Type.Object({ ...FOLDER_REF, ...UpdatePublicFolderBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, sub, folder: before } = await openFolder(ctx, input.orgId, input.folderId);
      requireFeature(sub, 'publicFolders');
      const quotas = {
        issueWarningQuota: input.issueWarningQuota ?? Number(before.issue_warning_quota),
        prohibitPostQuota: input.prohibitPostQuota ?? Number(before.prohibit_post_quota),
      };
      checkFolderQuotaOrder(quotas);
      const charged = folderCharge(quotas);
      const delta = charged - Number(before.charged_bytes); // both ≤ 2^53: the difference is exact
      const set: Record<string, unknown> = {
        issue_warning_quota: quotas.issueWarningQuota, prohibit_post_quota: quotas.prohibitPostQuota, charged_bytes: charged, updated_at: ctx.now,
      };
      if (delta !== 0) {
        set.store_id = await placeRecipient(ctx, sub, 'public_folder', { storeId: before.store_id ?? null, charged: Number(before.charged_bytes), counted: true }, charged);
        await charge(ctx, sub, { publicFolderBytes: delta });
      }
      if (input.maxItemSize !== undefined) set.max_item_size = input.maxItemSize;
      if (input.hiddenFromAddressBook !== undefined) set.hidden = input.hiddenFromAddressBook ? 1 : 0;
      if (input.name !== undefined && input.name !== before.name) {
        const parentPath = before.path.slice(0, before.path.length - before.name.length - 1);
        set.name = checkName(input.name);
        set.path = checkPath(`${parentPath}/${input.name}`);
      }
      await ctx.tx.updateTable('public_folders').set(set).where('id', '=', before.id).execute()
        .catch((e) => conflictOn(e, { path: nameTaken(String(set.path)), public_folders: nameTaken(String(set.path)) }));
      // the folder's own path is free (checked just above), so no path under it can be taken either
      if (set.path !== undefined) await renameSubtree(ctx, org.id, before, set.path as string);
      if (set.path !== undefined || (set.store_id !== undefined && set.store_id !== before.store_id)) converge(ctx, org);
      const after = { ...before, ...set };
      ctx.target(folderTarget(org, before.id));
      ctx.diff(toPublicFolder(before), toPublicFolder(after));
      if (delta !== 0) {
        ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'public_folder', objectId: before.id, event: 'updated', data: { prohibitPostQuota: charged } });
      }
      return toPublicFolder(after);
    },
  });

  const deleteFolder = defineProcedure({
    id: FOLDER_PROCS.deleteFolder,
    input: Type.Object({ ...FOLDER_REF, recursive: Type.Optional(Type.Boolean()) }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, sub, folder } = await openFolder(ctx, input.orgId, input.folderId);
      const rows = await subtree(ctx.tx, org.id, folder);
      if (rows.length > 1 && !input.recursive) {
        throw Errors.folderHasSubfolders(`${folder.path} has ${rows.length - 1} subfolder(s); delete them first or pass recursive=true`);
      }
      const released: string[] = [];
      for (const r of rows) if (Number(r.mail_enabled) === 1) released.push(...(await releaseAddresses(ctx, r.id, settings.addressQuarantineMs)));
      // children before parents (reverse breadth-first order), so the parent_id reference never dangles
      const ids = rows.map((r) => r.id as string).reverse();
      for (let i = 0; i < ids.length; i += 500) {
        const chunk = ids.slice(i, i + 500);
        await ctx.tx.deleteFrom('public_folder_permissions').where('folder_id', 'in', chunk).execute();
        await ctx.tx.deleteFrom('public_folders').where('id', 'in', chunk).execute();
      }
      const bytes = rows.reduce((s, r) => s + BigInt(r.charged_bytes), 0n);
      for (const r of rows) await placeRecipient(ctx, sub, 'public_folder', { storeId: r.store_id ?? null, charged: Number(r.charged_bytes), counted: true }, null);
      await charge(ctx, sub, { publicFolders: -rows.length, publicFolderBytes: -Number(bytes) });
      ctx.target(folderTarget(org, folder.id));
      ctx.diff({ folders: rows.map(toPublicFolder) }, null);
      converge(ctx, org);
      for (const r of rows) ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'public_folder', objectId: r.id, event: 'deleted' });
      return { id: folder.id, deleted: rows.map((r) => r.id as string), releasedBytes: Number(bytes), releasedAddresses: released };
    },
  });

  const enableFolderMail = defineProcedure({
    id: FOLDER_PROCS.enableFolderMail,
    input: Type.Object({ ...FOLDER_REF, ...EnableFolderMailBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, sub, folder: before } = await openFolder(ctx, input.orgId, input.folderId);
      requireFeature(sub, 'publicFolders');
      const address = normalizeAddress(input.primaryAddress).address;
      if (address !== before.primary_address) {
        await claimAddress(ctx, { orgId: org.id, resellerId: org.reseller_id, address, recipientId: before.id, recipientKind: 'public_folder', isPrimary: true });
        if (before.primary_address) await releaseAddresses(ctx, before.id, settings.addressQuarantineMs, [before.primary_address]);
      }
      const set: Record<string, unknown> = { mail_enabled: 1, primary_address: address, updated_at: ctx.now };
      if (input.hiddenFromAddressBook !== undefined) set.hidden = input.hiddenFromAddressBook ? 1 : 0;
      await ctx.tx.updateTable('public_folders').set(set).where('id', '=', before.id).execute();
      const after = { ...before, ...set };
      ctx.target(folderTarget(org, before.id));
      ctx.diff(toPublicFolder(before), toPublicFolder(after));
      return toPublicFolder(after);
    },
  });

  const disableFolderMail = defineProcedure({
    id: FOLDER_PROCS.disableFolderMail,
    input: Type.Object(FOLDER_REF, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, folder: before } = await openFolder(ctx, input.orgId, input.folderId);
      if (Number(before.mail_enabled) !== 1) throw Errors.notFound(`public folder ${before.id} is not mail-enabled`);
      await releaseAddresses(ctx, before.id, settings.addressQuarantineMs);
      const set = { mail_enabled: 0, primary_address: null, updated_at: ctx.now };
      await ctx.tx.updateTable('public_folders').set(set).where('id', '=', before.id).execute();
      const after = { ...before, ...set };
      ctx.target(folderTarget(org, before.id));
      ctx.diff(toPublicFolder(before), toPublicFolder(after));
      return toPublicFolder(after);
    },
  });

  const setFolderPermission = defineProcedure({
    id: FOLDER_PROCS.setFolderPermission,
    input: Type.Object({ ...FOLDER_REF, principalId: PrincipalId, ...SetPermissionBody.properties }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, folder } = await openFolder(ctx, input.orgId, input.folderId);
      const kind = input.principalId.startsWith('usr_') ? 'user' : 'group';
      if (kind === 'user') await activeOrgUser(ctx.tx, org.id, input.principalId);
      else await mailGroupIn(ctx.tx, org.id, input.principalId, () => Errors.recipientNotInOrganization(`${input.principalId} is not a group of this organization`));
      const before = await ctx.tx.selectFrom('public_folder_permissions').select('role').where('folder_id', '=', folder.id).where('principal_id', '=', input.principalId).executeTakeFirst();
      if (before) {
        await ctx.tx.updateTable('public_folder_permissions').set({ role: input.role }).where('folder_id', '=', folder.id).where('principal_id', '=', input.principalId).execute();
      } else {
        await ctx.tx.insertInto('public_folder_permissions').values({ folder_id: folder.id, org_id: org.id, principal_id: input.principalId, principal_kind: kind, role: input.role }).execute();
      }
      const view = { folderId: folder.id, principalId: input.principalId, principalKind: kind, role: input.role };
      ctx.target(folderTarget(org, folder.id));
      ctx.diff(before ? { ...view, role: before.role } : null, view);
      converge(ctx, org);
      return view;
    },
  });

  const removeFolderPermission = defineProcedure({
    id: FOLDER_PROCS.removeFolderPermission,
    input: Type.Object({ ...FOLDER_REF, principalId: PrincipalId }, strict),
    minRole: 'organization_admin',
    async run(ctx, input) {
      const { org, folder } = await openFolder(ctx, input.orgId, input.folderId);
      const before = await ctx.tx.selectFrom('public_folder_permissions').select(['principal_kind', 'role']).where('folder_id', '=', folder.id).where('principal_id', '=', input.principalId).executeTakeFirst();
      if (!before) throw Errors.notFound(`${input.principalId} has no permission on this folder`);
      await ctx.tx.deleteFrom('public_folder_permissions').where('folder_id', '=', folder.id).where('principal_id', '=', input.principalId).execute();
      const view = { folderId: folder.id, principalId: input.principalId, principalKind: before.principal_kind, role: before.role };
      ctx.target(folderTarget(org, folder.id));
      ctx.diff(view, null);
      converge(ctx, org);
      return view;
    },
  });

  return [createFolder, updateFolder, deleteFolder, enableFolderMail, disableFolderMail, setFolderPermission, removeFolderPermission];
}

/** Give every folder below `folder` the new path prefix (the folder's own row is updated by the caller). */
async function renameSubtree(ctx: ProcContext, orgId: string, folder: any, newPath: string): Promise<void> {
  const rows = (await subtree(ctx.tx, orgId, folder)).slice(1);
  for (const r of rows) {
    await ctx.tx.updateTable('public_folders').set({ path: checkPath(newPath + String(r.path).slice(folder.path.length)), updated_at: ctx.now }).where('id', '=', r.id).execute();
  }
}

