import { createHash } from 'node:crypto';

// Keys whose values are secrets wherever they appear (exact names: `tokenId` is not a secret, `token` is).
const SECRET_KEY_RE = /^(password|passwordHash|newPassword|currentPassword|token|secret|tokenHash|passwordHashes)$/i;
export const REDACTED = '[redacted]';

/** A copy of `value` with secret fields replaced, for logs, audit entries and request records. */
export function redact(value: unknown, secrets: readonly string[] = []): unknown {
  if (Array.isArray(value)) return value.map((v) => redact(v, secrets));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = secrets.includes(k) || SECRET_KEY_RE.test(k) ? (v === undefined || v === null ? v : REDACTED) : redact(v, secrets);
    }
    return out;
  }
  return value;
}

/** Split an object into its public part and its secret fields. */
export function splitSecrets(value: Record<string, unknown>, secrets: readonly string[] = []): { open: Record<string, unknown>; secret: Record<string, unknown> | null } {
  const open: Record<string, unknown> = {};
  const secret: Record<string, unknown> = {};
  let any = false;
  for (const [k, v] of Object.entries(value)) {
    if (secrets.includes(k) || SECRET_KEY_RE.test(k)) {
      secret[k] = v;
      any = true;
    } else open[k] = v;
  }
  return { open, secret: any ? secret : null };
}

/** Canonical JSON (sorted keys) so equal inputs hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
