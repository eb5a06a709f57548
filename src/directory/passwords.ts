import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Errors } from '../core/errors.js';

/**
 * Passwords are stored only as hashes Dovecot verifies itself. New passwords become `{BLF-CRYPT}`
 * (bcrypt via bcryptjs); hashing is slow on purpose, so it runs on worker threads, never on the
 * event loop. Imports may bring existing hashes in the Dovecot schemes below.
 */

export const MIN_PASSWORD_LENGTH = 8;
/** bcrypt reads only the first 72 bytes; longer passwords would be silently truncated, so refuse them. */
export const MAX_PASSWORD_BYTES = 72;

export function checkPasswordPolicy(plain: string): void {
  if ([...plain].length < MIN_PASSWORD_LENGTH) throw Errors.passwordTooShort(`a password needs at least ${MIN_PASSWORD_LENGTH} characters`);
  if (Buffer.byteLength(plain, 'utf8') > MAX_PASSWORD_BYTES) throw Errors.passwordTooLong(`a password may have at most ${MAX_PASSWORD_BYTES} bytes (bcrypt ignores the rest)`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(plain)) throw Errors.invalidRequest('a password may not contain control characters');
}

const SCHEMES: Record<string, RegExp> = {
  'BLF-CRYPT': /^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$/,
  'SHA512-CRYPT': /^\$6\$(rounds=\d+\$)?[^$]{1,16}\$[./A-Za-z0-9]{86}$/,
  'SHA256-CRYPT': /^\$5\$(rounds=\d+\$)?[^$]{1,16}\$[./A-Za-z0-9]{43}$/,
  'ARGON2ID': /^\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/,
  'ARGON2I': /^\$argon2i\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/,
  SSHA512: /^[A-Za-z0-9+/]{88,}={0,2}$/,
  SSHA256: /^[A-Za-z0-9+/]{44,}={0,2}$/,
  PBKDF2: /^\$1\$[^$]+\$\d+\$[0-9a-f]+$/,
};
export const ACCEPTED_SCHEMES = Object.keys(SCHEMES);

/** Validate an imported `{SCHEME}hash` string; plain-text schemes are refused. */
export function checkImportedHash(hash: string): string {
  const m = /^\{([A-Z0-9-]+)\}(.+)$/.exec(hash);
  const re = m ? SCHEMES[m[1]!] : undefined;
  // eslint-disable-next-line no-control-regex
  if (!m || !re || !re.test(m[2]!) || /[\u0000-\u001f\u007f]/.test(hash)) {
    throw Errors.invalidPasswordHash(`passwordHash must be {SCHEME}hash with a scheme Dovecot verifies: ${ACCEPTED_SCHEMES.join(', ')}`);
  }
  return hash;
}

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const bcrypt = require(${JSON.stringify(createRequire(import.meta.url).resolve('bcryptjs'))});
parentPort.on('message', ({ id, plain, cost }) => {
  try { parentPort.postMessage({ id, hash: bcrypt.hashSync(plain, cost) }); }
  catch (e) { parentPort.postMessage({ id, error: String(e && e.message || e) }); }
});
`;

export interface PasswordHasher {
  hash(plain: string): Promise<string>;
  close(): Promise<void>;
}

/** A small pool of worker threads making `{BLF-CRYPT}` hashes at the given bcrypt cost. */
export function createPasswordHasher(opts: { cost: number; threads?: number }): PasswordHasher {
  const size = opts.threads ?? Math.max(1, Math.min(4, availableParallelism()));
  const workers: Worker[] = [];
  const pending = new Map<number, { resolve(h: string): void; reject(e: Error): void }>();
  let seq = 0;
  let next = 0;
  function spawn(): Worker {
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.unref();
    w.on('message', (m: { id: number; hash?: string; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (!p) return;
      if (m.hash) p.resolve(`{BLF-CRYPT}${m.hash}`);
      else p.reject(new Error(m.error ?? 'hashing failed'));
    });
    return w;
  }
  return {
    hash(plain) {
      if (workers.length < size) workers.push(spawn());
      const w = workers[next++ % workers.length]!;
      const id = ++seq;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        w.postMessage({ id, plain, cost: opts.cost });
      });
    },
    async close() {
      await Promise.all(workers.splice(0).map((w) => w.terminate()));
    },
  };
}
