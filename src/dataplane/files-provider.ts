import { lstat, mkdir, readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Errors } from '../core/errors.js';
import { isId } from '../core/ids.js';
import type { HomeDirectoryProvider, HomeRef } from '../directory/ports.js';

/**
 * The `files` provider: `<root>/<orgId>/<userId>/` per user. Paths are built only from immutable
 * ids (never from names a tenant chose), so no input can escape the root.
 */
export function createFilesProvider(root: string): HomeDirectoryProvider {
  const path = (ref: HomeRef) => {
    if (!isId(ref.orgId) || !isId(ref.userId)) throw Errors.backendFailed('home reference is not made of ids', { retryable: false });
    return join(root, ref.orgId, ref.userId);
  };
  return {
    async ensureHome(ref) {
      const p = path(ref);
      // ENOTDIR: a file sits where the org folder belongs; let mkdir below report it as the permanent failure it is
      const st = await lstat(p).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' || e.code === 'ENOTDIR' ? null : Promise.reject(e)));
      if (st?.isDirectory()) return;
      if (st) throw Errors.backendFailed(`${p} exists and is not a directory`, { retryable: false });
      try {
        await mkdir(p, { recursive: true, mode: 0o700 });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // ENOTDIR/EEXIST: something that is not ours is in the way; retrying will not help
        if (code === 'ENOTDIR' || code === 'EEXIST') throw Errors.backendFailed(`cannot create ${p}: ${code}`, { retryable: false, cause: e });
        throw e; // EIO, ENOSPC...: retryable
      }
    },
    async removeHome(ref) {
      const p = path(ref);
      const st = await lstat(p).catch(() => null);
      // only ever remove a directory we could have made; leave anything else alone
      if (st?.isDirectory()) await rm(p, { recursive: true, force: true });
      await rmdir(join(root, ref.orgId)).catch(() => {}); // the org folder goes when it is empty
    },
    async listHomes() {
      const out: HomeRef[] = [];
      const orgs = await readdir(root, { withFileTypes: true }).catch(() => []);
      for (const o of orgs) {
        if (!o.isDirectory()) continue;
        for (const u of await readdir(join(root, o.name), { withFileTypes: true })) {
          if (u.isDirectory()) out.push({ orgId: o.name, userId: u.name });
        }
      }
      return out;
    },
  };
}
