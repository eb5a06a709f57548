import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { JobHandler } from '../engine/engine.js';
import type { BillingEventSpec, JobSpec } from '../engine/procedure.js';
import { readManifest, reloadPostfix } from './instance.js';
import type { Manifest } from './render.js';

/**
 * What the data plane must do after a change, beyond the lookups (which read the database and so follow
 * every commit by themselves): when a domain changes class — accepted, changed or removed, or its
 * organization or reseller suspended, resumed or deleted — every Postfix this host manages is reloaded
 * (see reloadPostfix: smtpd caches address classes per process). The engine adds the job to the very
 * transaction that records the change (Engine.followEvents), so a committed change is always followed.
 */

export const POSTFIX_RELOAD_JOB = 'dataplane.reload_postfix';

const CLASS_EVENTS = new Set(['suspended', 'resumed', 'deleted', 'purged']);

export function domainClassChanged(events: readonly BillingEventSpec[]): boolean {
  return events.some((e) => e.objectType === 'accepted_domain'
    || ((e.objectType === 'organization' || e.objectType === 'reseller') && CLASS_EVENTS.has(e.event)));
}

/** The engine follower: one reload job per change that needs it, when this host manages data planes at all. */
export function followDomainClassChanges(root: string | undefined): (events: readonly BillingEventSpec[]) => JobSpec[] {
  return (events) => (root && domainClassChanged(events) ? [{ kind: POSTFIX_RELOAD_JOB, payload: {}, queueKey: 'dataplane:postfix-reload' }] : []);
}

/** Rendered data planes under `root`: `<root>/<mail server name>/dataplane.json`. */
export function renderedDirs(root: string | undefined): string[] {
  if (!root || !existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(root, d.name, 'dataplane.json')))
    .map((d) => join(root, d.name));
}

/** The manifest of the data plane rendered under `root` for mail server `serverId`, or null. */
export function renderedPlane(root: string | undefined, serverId: string): Manifest | null {
  for (const dir of renderedDirs(root)) {
    const m = readManifest(dir);
    if (m.server.id === serverId) return m;
  }
  return null;
}

/** The reload job: every running Postfix under the data plane root (none configured: nothing to do). */
export function followJobs(root: string | undefined): Record<string, JobHandler> {
  return {
    [POSTFIX_RELOAD_JOB]: {
      async run() {
        for (const dir of renderedDirs(root)) await reloadPostfix(dir);
      },
    },
  };
}
