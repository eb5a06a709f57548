import { cp, lstat, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Errors } from '../core/errors.js';
import { isId } from '../core/ids.js';
import type { MailboxDataProvider, MailboxDataRef } from '../resources/ports.js';

/**
 * The `files` provider's mailbox data: `<root>/<storeId>/<orgId>/<mailboxId>/` per mailbox, built only from
 * immutable ids. A move copies into `<dest>.part`, renames it into place (atomic), then removes the source,
 * so a crash at any point leaves either the source whole or the destination whole, and running the move
 * again finishes it.
 */
export function createFilesMailstore(root: string): MailboxDataProvider & { pathOf(ref: Pick<MailboxDataRef, 'orgId' | 'mailboxId' | 'storeId'>): string } {
  const pathOf = (ref: Pick<MailboxDataRef, 'orgId' | 'mailboxId' | 'storeId'>) => {
    if (!isId(ref.orgId) || !isId(ref.mailboxId) || !isId(ref.storeId)) throw Errors.backendFailed('mailbox reference is not made of ids', { retryable: false });
    return join(root, ref.storeId, ref.orgId, ref.mailboxId);
  };
  const isDir = async (p: string) => (await lstat(p).catch(() => null))?.isDirectory() ?? false;
  return {
    pathOf,
    async purgeMailbox(at) {
      await rm(pathOf(at), { recursive: true, force: true });
    },
    async moveMailbox(from, to, ctx) {
      const src = pathOf(from);
      const dst = pathOf(to);
      if (src === dst) return;
      try {
        if (!(await isDir(dst)) && (await isDir(src))) {
          const part = `${dst}.part`;
          await rm(part, { recursive: true, force: true }); // a copy a crash left half-done
          await mkdir(dirname(part), { recursive: true, mode: 0o700 });
          await cp(src, part, { recursive: true, errorOnExist: false, force: true, preserveTimestamps: true });
          if (ctx.signal.aborted) throw Errors.unavailable('lease lost during the copy', { retryable: true });
          await rename(part, dst);
        }
        // (nothing there at all, not even a directory: a move undone before its copy began)
        if (await isDir(src)) await rm(src, { recursive: true, force: true });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // something that is not ours is in the way (a file where a directory belongs): retrying will not help
        if (code === 'ENOTDIR' || code === 'EEXIST') throw Errors.backendFailed(`cannot move ${src} to ${dst}: ${code}`, { retryable: false, cause: e });
        throw e; // EIO, ENOSPC, …: retryable
      }
    },
  };
}
