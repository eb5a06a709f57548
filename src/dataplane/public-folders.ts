import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine, JobContext, JobHandler } from '../engine/engine.js';
import type { BillingEventSpec, JobSpec } from '../engine/procedure.js';
import { PUBLIC_FOLDER_JOBS } from '../mail/public-folders-model.js';
import type { Db } from '../store/db.js';
import { convergeFolder, failed, mailboxDoveadm, planesUnder, type Owner, type Plane } from './acl.js';
import { publicRoot } from './render.js';

/**
 * Public folders made real in Dovecot (issue 5 item 6). An organization's folders placed on a mail server
 * (their store's server) live there under `<mail root>/public/<org>/`:
 *
 *   tree/<path>            the folders as Maildir (LAYOUT=fs, names in IMAP modified UTF-7 as Dovecot writes
 *                          them), which every user of the organization on that server sees as Public/<path>
 *                          (render.ts: the login's passdb lookup turns the namespace on and points it here)
 *   tree/<path>/~hmc-folder-id   the folder's id: it travels with the directory when the folder is renamed;
 *                          '~' starts no valid mailbox name, so no subfolder can take the name
 *   folders/<id>           a symlink to the folder's directory: the INBOX of the folder's delivery identity
 *   delivery/<id>          that identity's home (a mail-enabled folder's address is a Dovecot user whose INBOX
 *                          is the folder, quota = prohibitPostQuota; its own root is empty, so subfolders do
 *                          not count)
 *
 * Permissions become the folder's ACL: `group=<principal id>` per permission (Dovecot matches it against the
 * login's acl_groups: the user's own id and its groups, nested ones included), with these rights:
 *   reviewer  lookup read write-seen                                   (IMAP lrs)
 *   author    + insert post                                            (lrsip)
 *   editor    + write write-deleted expunge                            (lrswipte)
 *   owner     as editor: making and removing folders and granting are HMC's procedures (they charge the
 *             organization's pool and keep the tree and its ACLs the platform's), so nobody holds Dovecot's
 *             create, delete or admin right on a public folder.
 * Nothing else: a folder without permissions is seen by nobody.
 *
 * One job kind (PUBLIC_FOLDER_JOBS.organization, payload { orgId }), enqueued by every folder procedure that
 * changes the tree or a permission, converges the organization's tree on each data plane rendered here from
 * what the database holds: it scans the tree for folder ids, renames a folder whose path changed (doveadm
 * mailbox rename, parents first: the subtree moves with it), creates missing ones, removes folders that were
 * deleted, sets every folder's ACL to its permissions, and points the links. Every step reads the current state
 * first, so a crash anywhere is repaired by the next run. A follower runs it after a user's deletion (ACL
 * entries of the user go) and an organization's purge (its trees go). doveadm runs as the mail uid without a userdb lookup,
 * as the tree's owner (HOME = the organization's public directory, the tree as its private namespace), with
 * the quota plugin and the auto-created special folders off.
 *
 * Not done: a folder whose store moves to another mail server keeps its messages on the old one (they are not
 * copied; the new server starts it empty and the old copy stays until removed by hand); users see only the
 * folders on their own mailbox's server.
 */

const RIGHTS: Record<string, string> = {
  reviewer: 'lookup read write-seen',
  author: 'insert lookup post read write-seen',
  editor: 'expunge insert lookup post read write write-deleted write-seen',
  owner: 'expunge insert lookup post read write write-deleted write-seen',
};
/** The file in a folder's directory naming the folder. */
const MARKER = '~hmc-folder-id';
/** Maildir's own directories, never folders. */
const MAILDIR_DIRS = new Set(['cur', 'new', 'tmp']);

/** IMAP modified UTF-7 (RFC 3501 §5.1.3), Dovecot's on-disk spelling of a folder name. */
export function mutf7Encode(s: string): string {
  let out = '';
  let run: number[] = [];
  const flush = () => {
    if (run.length === 0) return;
    const b = Buffer.alloc(run.length * 2);
    run.forEach((u, i) => b.writeUInt16BE(u, i * 2));
    out += `&${b.toString('base64').replace(/=+$/, '').replace(/\//g, ',')}-`;
    run = [];
  };
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e) {
      flush();
      out += c === 0x26 ? '&-' : s[i];
    } else run.push(c);
  }
  flush();
  return out;
}

export function mutf7Decode(s: string): string {
  return s.replace(/&([^-]*)-/g, (_, b64: string) => {
    if (b64 === '') return '&';
    const b = Buffer.from(b64.replace(/,/g, '/'), 'base64');
    let r = '';
    for (let i = 0; i + 1 < b.length; i += 2) r += String.fromCharCode(b.readUInt16BE(i));
    return r;
  });
}

/** A folder path (`/a/b`) as Dovecot's mailbox name (`a/b`) and directory under the tree. */
const nameOf = (path: string) => path.slice(1);
const dirOf = (path: string) => nameOf(path).split('/').map(mutf7Encode).join('/');
const nameOfDir = (dir: string) => dir.split('/').map(mutf7Decode).join('/');
const depth = (p: string) => p.split('/').length;

interface Folder {
  id: string;
  path: string;
  acl: Map<string, string>;
}

/** Directory (relative to the tree) of every folder id found in it. */
function scan(tree: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (rel: string) => {
    const abs = rel ? join(tree, rel) : tree;
    let entries;
    try {
      entries = readdirSync(abs, { withFileTypes: true });
    } catch {
      return;
    }
    if (rel) {
      const marker = join(abs, MARKER);
      if (existsSync(marker)) {
        const id = readFileSync(marker, 'utf8').trim();
        if (id && !found.has(id)) found.set(id, rel);
      }
    }
    for (const e of entries) if (e.isDirectory() && !MAILDIR_DIRS.has(e.name)) walk(rel ? `${rel}/${e.name}` : e.name);
  };
  walk('');
  return found;
}

/** The organization's tree on one data plane to `desired` (folders placed on that server). */
async function convergePlane(plane: Plane, orgId: string, desired: Folder[], elsewhere: Set<string>, ctx: JobContext): Promise<void> {
  const base = join(publicRoot(plane.mailRoot), orgId);
  const tree = join(base, 'tree');
  const links = join(base, 'folders');
  if (desired.length === 0 && !existsSync(base)) return;
  const own = (p: string) => chownSync(p, plane.mailUid, plane.mailGid);
  for (const d of [publicRoot(plane.mailRoot), base, tree, links, join(base, 'delivery')]) {
    if (!existsSync(d)) {
      mkdirSync(d, { recursive: true });
      own(d);
    }
  }
  const owner: Owner = {
    plane, name: `public-folders@${orgId}`, home: base,
    options: ['mail_location=maildir:~/tree:LAYOUT=fs:INBOX=~/inbox', 'mail_plugins=acl', 'namespace/shared/disabled=yes', 'namespace/public/disabled=yes',
      ...['Drafts', 'Sent', 'Junk', 'Trash'].map((m) => `namespace/inbox/mailbox/${m}/auto=no`)],
  };
  const run = async (args: string[], ok: number[] = [0]) => {
    const r = await mailboxDoveadm(owner, args, ctx);
    if (!ok.includes(r.code)) failed(owner, args.join(' '), r);
    return r;
  };

  const found = scan(tree);
  // 1. every wanted folder where its path says, parents first (a rename carries the subtree along)
  for (const f of [...desired].sort((a, b) => depth(a.path) - depth(b.path))) {
    const want = dirOf(f.path);
    const at = found.get(f.id);
    if (at === want) continue;
    if (at !== undefined) {
      await run(['mailbox', 'rename', nameOfDir(at), nameOf(f.path)]);
      for (const [id, d] of found) {
        if (d === at || d.startsWith(`${at}/`)) found.set(id, want + d.slice(at.length));
      }
      continue;
    }
    // new (or its marker was never written): a directory already there without a marker is adopted
    if (!existsSync(join(tree, want, 'cur'))) await run(['mailbox', 'create', nameOf(f.path)], [0, 65]);
    const tmp = join(tree, want, `${MARKER}.tmp`);
    writeFileSync(tmp, `${f.id}\n`);
    own(tmp);
    renameSync(tmp, join(tree, want, MARKER));
    found.set(f.id, want);
  }
  // 2. folders no longer wanted anywhere, deepest first (one placed on another server keeps its data here)
  const wanted = new Set(desired.map((f) => f.id));
  for (const [id, d] of [...found].sort((a, b) => depth(b[1]) - depth(a[1]))) {
    if (wanted.has(id) || elsewhere.has(id)) continue;
    await run(['mailbox', 'delete', nameOfDir(d)], [0, 68]);
    rmSync(join(tree, d, MARKER), { force: true }); // the directory stays when it still has subfolders
    rmSync(join(base, 'delivery', id), { recursive: true, force: true });
    found.delete(id);
  }
  // 3. ACLs: exactly the permissions
  for (const f of desired) await convergeFolder(owner, nameOf(f.path), f.acl, ctx);
  // 4. the delivery links
  for (const f of desired) {
    const link = join(links, f.id);
    const target = `../tree/${found.get(f.id)}`;
    let st;
    try {
      st = lstatSync(link);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink() && readlinkSync(link) === target) continue;
    if (st?.isDirectory()) adoptStray(link, join(tree, found.get(f.id)!), own);
    const tmp = `${link}.tmp`;
    rmSync(tmp, { force: true });
    symlinkSync(target, tmp);
    chownSync(tmp, plane.mailUid, plane.mailGid);
    renameSync(tmp, link);
  }
  for (const name of readdirSync(links)) {
    const id = name.replace(/\.tmp$/, '');
    if (!wanted.has(id)) rmSync(join(links, name), { recursive: true, force: true });
  }
  // the organization has no folders left anywhere (all deleted, or the organization purged): nothing to keep
  if (desired.length === 0 && elsewhere.size === 0 && found.size === 0) rmSync(base, { recursive: true, force: true });
}

/**
 * Mail Dovecot delivered before the folder's link existed went into a directory it made at the link's place:
 * its messages move into the folder as new mail (a maildir file is a message; Dovecot indexes it on next access).
 */
function adoptStray(stray: string, folderDir: string, own: (p: string) => void): void {
  for (const sub of ['new', 'cur']) {
    const from = join(stray, sub);
    if (!existsSync(from)) continue;
    for (const file of readdirSync(from)) {
      const to = join(folderDir, 'new', file.replace(/:2,.*$/, ''));
      renameSync(join(from, file), to);
      own(to);
    }
  }
  rmSync(stray, { recursive: true, force: true });
}

/** The organization's folders, per server, with their ACLs. */
async function desiredFolders(db: Db, orgId: string): Promise<Map<string, Folder[]>> {
  const rows = await db.selectFrom('public_folders as f').innerJoin('mailstores as s', 's.id', 'f.store_id')
    .select(['f.id', 'f.path', 's.server_id']).where('f.org_id', '=', orgId).execute();
  const perms = await db.selectFrom('public_folder_permissions').select(['folder_id', 'principal_id', 'role']).where('org_id', '=', orgId).execute();
  const acl = new Map<string, Map<string, string>>();
  for (const p of perms) {
    const m = acl.get(String(p.folder_id)) ?? new Map<string, string>();
    m.set(`group=${p.principal_id}`, RIGHTS[String(p.role)]!);
    acl.set(String(p.folder_id), m);
  }
  const out = new Map<string, Folder[]>();
  for (const r of rows) {
    const list = out.get(String(r.server_id)) ?? [];
    list.push({ id: String(r.id), path: String(r.path), acl: acl.get(String(r.id)) ?? new Map() });
    out.set(String(r.server_id), list);
  }
  return out;
}

/**
 * The engine follower: a purged organization's trees go (its rows went with the purge, which runs first in
 * its queue), and a deleted user's ACL entries with them (harmless, ids are never reused, but not kept).
 */
export const followPublicFolderChanges = (root: string | undefined) => (events: readonly BillingEventSpec[]): JobSpec[] => {
  if (!root) return [];
  const orgs = new Set<string>();
  for (const e of events) {
    if (!e.orgId || (e.data as { compensation?: boolean } | undefined)?.compensation === true) continue;
    if (e.event === 'deleted' && (e.objectType === 'organization' || e.objectType === 'user')) orgs.add(e.orgId);
  }
  return [...orgs].map((orgId) => ({ kind: PUBLIC_FOLDER_JOBS.organization, payload: { orgId }, queueKey: orgId }));
};

/** The job, on the data planes rendered under `root` (none: nothing to do). */
export function publicFolderJobs(engine: Engine, root: string | undefined): Record<string, JobHandler> {
  return {
    [PUBLIC_FOLDER_JOBS.organization]: {
      async run(payload, ctx) {
        const planes = planesUnder(root);
        if (planes.length === 0) return;
        const { orgId } = payload as { orgId: string };
        const byServer = await desiredFolders(engine.store.db, orgId);
        for (const plane of planes) {
          const elsewhere = new Set([...byServer].filter(([s]) => s !== plane.serverId).flatMap(([, fs]) => fs.map((f) => f.id)));
          await convergePlane(plane, orgId, byServer.get(plane.serverId) ?? [], elsewhere, ctx);
        }
      },
    },
  };
}
