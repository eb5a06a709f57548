import { UsageError } from './errors.js';

/**
 * Sizes on the command line: plain bytes (`1073741824`) or a number with a binary unit (`50GiB`, `2TiB`,
 * `8PiB`, `1.5GiB`). Computed in BigInt so `8PiB` is exactly 2^53 and a fraction is accepted only when it
 * is a whole number of bytes (`0.5KiB` = 512, `0.1KiB` is refused). Decimal units (GB) are refused rather
 * than guessed: Exchange's "GB" means GiB while disks' means 10^9, and a quota off by 7% is a support call.
 */

/** The largest size the API accepts: 2^53 bytes (8 PiB), exact as a JSON number. */
export const MAX_SIZE = 2 ** 53;

const UNITS: Record<string, bigint> = {
  b: 1n,
  kib: 1n << 10n,
  mib: 1n << 20n,
  gib: 1n << 30n,
  tib: 1n << 40n,
  pib: 1n << 50n,
};

const SIZE = /^(\d+)(?:\.(\d+))?\s*([a-z]*)$/i;

/** Bytes of a size text; throws a UsageError naming `what` (e.g. `--storage`) when it is not a whole size. */
export function parseSize(text: string, what = 'size'): number {
  const m = SIZE.exec(text.trim());
  if (!m) throw new UsageError(`${what} must be bytes or a number with a unit (KiB, MiB, GiB, TiB, PiB), got "${text}"`);
  const [, whole, frac = '', unitText = ''] = m;
  const unit = unitText === '' ? 1n : UNITS[unitText.toLowerCase()];
  if (unit === undefined) {
    const hint = /^[kmgtp]b?$/i.test(unitText) ? ` (did you mean ${unitText[0]!.toUpperCase()}iB? sizes are binary)` : '';
    throw new UsageError(`${what}: unknown unit "${unitText}"${hint}`);
  }
  const scale = 10n ** BigInt(frac.length);
  const scaled = BigInt(whole! + frac) * unit;
  if (scaled % scale !== 0n) throw new UsageError(`${what}: ${text} is not a whole number of bytes`);
  const bytes = scaled / scale;
  if (bytes > BigInt(MAX_SIZE)) throw new UsageError(`${what}: ${text} is more than 8PiB (2^53 bytes), the largest size HMC stores`);
  return Number(bytes);
}

/** A size that may also be `unlimited` (the API's null). */
export function parseLimitSize(text: string, what = 'size'): number | null {
  return /^(unlimited|none)$/i.test(text.trim()) ? null : parseSize(text, what);
}

/** Readable size for tables: exact binary unit when it divides, else bytes (`53687091200` → `50GiB`). */
export function formatSize(bytes: number): string {
  const b = BigInt(bytes);
  for (const [name, mult] of [['PiB', UNITS.pib!], ['TiB', UNITS.tib!], ['GiB', UNITS.gib!], ['MiB', UNITS.mib!], ['KiB', UNITS.kib!]] as const) {
    if (b >= mult && b % mult === 0n) return `${b / mult}${name}`;
  }
  return `${bytes}`;
}
