import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The transport agent's internal stamp: proof, carried in a header, that a message was submitted by an
 * authenticated member of an organization, for when it reaches an agent again through an MX listener (another
 * platform node relaying it). The agent adds it only to mail from the authenticated submission listener, and
 * removes every stamp field from every message it passes on, after reading it: a stamp that reaches a
 * mailbox or the internet is never one that mail from outside could have brought in.
 *
 *   X-HMC-Stamp: v=1; t=<unix seconds>; s=<base64url HMAC-SHA256>
 *
 * The MAC covers the version, time, envelope sender (lower case) and Message-ID, under a secret shared by the
 * platform's agents (HMC_TRANSPORT_SECRET); the sender's organization is the domain cache's, so the stamp names
 * no tenant (submitted mail carries it to the internet, like a signature). A stamp copied from a received
 * message proves nothing for another sender or another message, and one older than `maxAgeMs` (default one
 * day) is void. A copied stamp replayed with the same sender and Message-ID can at most make the agent send
 * the internal reply to that same sender, the organization's own address.
 */

export const STAMP_FIELD = 'x-hmc-stamp';
export const STAMP_HEADER = 'X-HMC-Stamp';
export const STAMP_MAX_AGE_MS = 24 * 3600_000;

function mac(secret: Buffer, t: number, sender: string, messageId: string): string {
  return createHmac('sha256', secret).update(`v1\n${t}\n${sender.toLowerCase()}\n${messageId}`).digest('base64url');
}

/** The value of a stamp for a message of an authenticated sender (without the field name). */
export function makeStamp(secret: Buffer, sender: string, messageId: string, now = Date.now()): string {
  const t = Math.floor(now / 1000);
  return `v=1; t=${t}; s=${mac(secret, t, sender, messageId)}`;
}

export type StampCheck = { ok: true } | { ok: false; reason: 'malformed' | 'expired' | 'forged' };

/** Whether a stamp value is genuine for this sender and message. */
export function checkStamp(secret: Buffer, value: string, sender: string, messageId: string, now = Date.now(), maxAgeMs = STAMP_MAX_AGE_MS): StampCheck {
  const m = /^v=1;\s*t=(\d{1,12});\s*s=([A-Za-z0-9_-]{43})$/.exec(value.trim());
  if (!m) return { ok: false, reason: 'malformed' };
  const [, ts, sig] = m;
  const t = Number(ts);
  // a little clock skew between nodes is tolerated in the future direction
  if (now - t * 1000 > maxAgeMs || t * 1000 - now > 5 * 60_000) return { ok: false, reason: 'expired' };
  const want = Buffer.from(mac(secret, t, sender, messageId));
  const got = Buffer.from(sig!);
  return want.length === got.length && timingSafeEqual(want, got) ? { ok: true } : { ok: false, reason: 'forged' };
}
