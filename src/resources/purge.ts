import type { Engine, JobHandler } from '../engine/engine.js';
import type { MailboxDataProvider } from './ports.js';

/**
 * Removing a purged mailbox's data (issue 5 item 7): the purge procedure (mail/mailboxes-lifecycle.ts)
 * deletes the rows and, in the same transaction, asks for this job for every store the data may be on (its
 * store, and the one a move had not finished copying from). The mailbox id is never used again, so the job
 * needs no re-check: it converges to "no data", and running it twice is harmless.
 */

export const PURGE_DATA_JOB = 'mailstore.purge_mailbox';

export interface PurgeDataPayload {
  orgId: string;
  mailboxId: string;
  storeId: string;
}

export function purgeDataJobs(engine: Engine, data: MailboxDataProvider): Record<string, JobHandler> {
  return {
    [PURGE_DATA_JOB]: {
      async run(payload, ctx) {
        const p = payload as PurgeDataPayload;
        const root = await engine.store.db.selectFrom('mailstores as s').innerJoin('mail_servers as v', 'v.id', 's.server_id')
          .select('v.mail_root').where('s.id', '=', p.storeId).executeTakeFirst();
        // a store deregistered since holds nothing of ours any more
        if (!root) return;
        await data.purgeMailbox({ orgId: p.orgId, mailboxId: p.mailboxId, storeId: p.storeId, mailRoot: root.mail_root }, ctx);
      },
    },
  };
}
