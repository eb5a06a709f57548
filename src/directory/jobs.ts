import { Errors } from '../core/errors.js';
import type { Engine, JobHandler } from '../engine/engine.js';
import { directoryHooks } from './hooks.js';
import { JOBS } from './model.js';
import type { HomeDirectoryProvider } from './ports.js';

/**
 * The directory's provider jobs. Each reads the desired state when it runs and converges to it, so a
 * retry, a duplicate or a crash half-way is harmless (DESIGN §3).
 */
export function directoryJobs(engine: Engine, homes: HomeDirectoryProvider): Record<string, JobHandler> {
  const db = () => engine.store.db;
  return {
    // one job for both directions: an active user has a home, anyone else has none
    [JOBS.convergeHome]: {
      async run(payload, ctx) {
        const { orgId, userId } = payload as { orgId: string; userId: string };
        const u = await db().selectFrom('users').select(['state']).where('id', '=', userId).executeTakeFirst();
        // a worker that lost its lease (stalled past it) must not touch the disk after another took the job over
        if (ctx.signal.aborted) throw Errors.unavailable('lease lost before converging', { retryable: true });
        if (u?.state === 'active') await homes.ensureHome({ orgId, userId }, ctx);
        else await homes.removeHome({ orgId, userId }, ctx);
      },
    },
    // rows go last, after every back end has let go of them
    [JOBS.purgeUser]: {
      async run(payload) {
        const { userId } = payload as { userId: string };
        await engine.txr.run(async (tx) => {
          const u = await tx.selectFrom('users').select(['state']).where('id', '=', userId).executeTakeFirst();
          if (u?.state !== 'deleting') return;
          for (const purge of directoryHooks.purgeUser) await purge(tx, userId, Date.now());
          await tx.deleteFrom('group_members').where('user_id', '=', userId).execute();
          await tx.deleteFrom('users').where('id', '=', userId).execute();
        });
      },
    },
    [JOBS.purgeOrganization]: {
      async run(payload) {
        const { orgId } = payload as { orgId: string };
        await engine.txr.run(async (tx) => {
          const org = await tx.selectFrom('organizations').select(['state']).where('id', '=', orgId).executeTakeFirst();
          if (org?.state !== 'deleting') return;
          for (const purge of directoryHooks.purgeOrganization) await purge(tx, orgId, Date.now());
          await tx.deleteFrom('group_members').where('org_id', '=', orgId).execute();
          await tx.deleteFrom('groups').where('org_id', '=', orgId).execute();
          await tx.deleteFrom('users').where('org_id', '=', orgId).execute();
          await tx.deleteFrom('domains').where('org_id', '=', orgId).execute();
          await tx.deleteFrom('organizations').where('id', '=', orgId).execute();
        });
      },
    },
  };
}
