import { mkdirSync, readFileSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import type { CachedDomain, CachedDomainType } from './domain-cache-source.js';

/**
 * The domain cache's snapshot file: what the cache held after its last successful refresh, so a transport agent
 * starts and keeps placing senders while the database is unreachable. JSON, one array per domain (a third of the
 * size of objects: ~110 bytes a domain), written to a temporary file, fsynced, then renamed over the old one, so a
 * reader (or a crash mid-write) only ever sees a whole snapshot. The file holds no secrets, only names and ids.
 */

export const SNAPSHOT_FORMAT = 'hmc-domain-cache';
export const SNAPSHOT_VERSION = 1;

export interface Snapshot {
  /** When the data was read from the database (epoch ms). */
  refreshedAt: number;
  domains: CachedDomain[];
}

type Row = [string, string, string, string, 0 | 1, string, string, string | null, string | null];

const TYPES = new Set(['authoritative', 'internal_relay', 'external_relay']);

/** Rows encoded between two yields to the event loop (one JSON.stringify of 100,000 held it ~150 ms). */
const ENCODE_CHUNK = 5_000;

/** The file's text for `domains` read at `refreshedAt` (the same text as one JSON.stringify, made in chunks). */
export async function encodeSnapshot(s: Snapshot): Promise<string> {
  const parts: string[] = [];
  for (let i = 0; i < s.domains.length; i += ENCODE_CHUNK) {
    if (i > 0) await new Promise((r) => setImmediate(r));
    const rows: Row[] = s.domains.slice(i, i + ENCODE_CHUNK).map((d) => [d.name, d.domainId, d.orgId, d.resellerId, d.live ? 1 : 0, d.orgState, d.type, d.aliasOfId, d.aliasOfName]);
    parts.push(JSON.stringify(rows).slice(1, -1));
  }
  const head = JSON.stringify({ format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, refreshedAt: new Date(s.refreshedAt).toISOString(), count: s.domains.length });
  return `${head.slice(0, -1)},"domains":[${parts.join(',')}]}`;
}

/** Why a snapshot file cannot be used (corrupt, truncated, another format or version). */
export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isStrOrNull = (v: unknown): v is string | null => v === null || isStr(v);

/** Parse and check a snapshot's text; every field of every row is checked (the file comes from outside). */
export function decodeSnapshot(text: string): Snapshot {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SnapshotError(`not JSON (${(e as Error).message})`);
  }
  if (!raw || typeof raw !== 'object') throw new SnapshotError('not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o.format !== SNAPSHOT_FORMAT) throw new SnapshotError(`format is ${JSON.stringify(o.format)}, not ${SNAPSHOT_FORMAT}`);
  if (o.version !== SNAPSHOT_VERSION) throw new SnapshotError(`version ${JSON.stringify(o.version)} is not ${SNAPSHOT_VERSION}`);
  const refreshedAt = typeof o.refreshedAt === 'string' ? Date.parse(o.refreshedAt) : NaN;
  if (!Number.isFinite(refreshedAt)) throw new SnapshotError('refreshedAt is not a timestamp');
  if (!Array.isArray(o.domains)) throw new SnapshotError('domains is not an array');
  if (o.count !== o.domains.length) throw new SnapshotError(`count ${JSON.stringify(o.count)} does not match ${o.domains.length} domains`);
  const domains: CachedDomain[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < o.domains.length; i++) {
    const r = o.domains[i] as unknown;
    if (!Array.isArray(r) || r.length !== 9) throw new SnapshotError(`domain #${i} is not a 9-field row`);
    const [name, domainId, orgId, resellerId, live, orgState, type, aliasOfId, aliasOfName] = r as unknown[];
    if (!isStr(name) || name !== name.toLowerCase() || !isStr(domainId) || !isStr(orgId) || !isStr(resellerId) || (live !== 0 && live !== 1)
      || !isStr(orgState) || typeof type !== 'string' || !TYPES.has(type) || !isStrOrNull(aliasOfId) || !isStrOrNull(aliasOfName)
      || (aliasOfId === null) !== (aliasOfName === null)) {
      throw new SnapshotError(`domain #${i} has invalid fields`);
    }
    if (seen.has(name)) throw new SnapshotError(`domain ${name} appears twice`);
    seen.add(name);
    domains.push({ name, domainId, orgId, resellerId, live: live === 1, orgState, type: type as CachedDomainType, aliasOfId, aliasOfName });
  }
  return { refreshedAt, domains };
}

/** Read the snapshot at `path`: null when there is none, SnapshotError when it cannot be used. */
export function readSnapshot(path: string): Snapshot | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SnapshotError(`cannot read it (${(e as Error).message})`);
  }
  return decodeSnapshot(text);
}

/**
 * Write `text` to `path` atomically: a temporary file beside it (same filesystem, so rename is atomic), fsync,
 * rename, then fsync of the directory so the rename itself survives a power cut.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const f = await open(tmp, 'w', 0o640);
    try {
      await f.writeFile(text, 'utf8');
      await f.sync();
    } finally {
      await f.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } catch {
    // some filesystems refuse fsync on a directory; the rename is still atomic there
  } finally {
    await d.close();
  }
}
