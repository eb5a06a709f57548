import { test } from 'node:test';
import assert from 'node:assert/strict';
import bcrypt from 'bcryptjs';
import { checkImportedHash, checkPasswordPolicy, createPasswordHasher } from './passwords.js';
import { HmcError } from '../core/errors.js';

test('new passwords become {BLF-CRYPT} hashes made off the event loop, verifiable by bcrypt', async () => {
  const h = createPasswordHasher({ cost: 4, threads: 2 });
  try {
    const hashes = await Promise.all(['correct horse', 'battery staple'].map((p) => h.hash(p)));
    assert.match(hashes[0]!, /^\{BLF-CRYPT\}\$2[ab]\$04\$/);
    assert.ok(bcrypt.compareSync('correct horse', hashes[0]!.slice('{BLF-CRYPT}'.length)));
    assert.ok(!bcrypt.compareSync('wrong', hashes[1]!.slice('{BLF-CRYPT}'.length)));
  } finally {
    await h.close();
  }
});

test('password policy refuses short, over-long (bcrypt truncates at 72 bytes) and control characters', () => {
  const code = (f: () => void) => { try { f(); return 'ok'; } catch (e) { return (e as HmcError).code; } };
  assert.equal(code(() => checkPasswordPolicy('short')), 'password_too_short');
  assert.equal(code(() => checkPasswordPolicy('é'.repeat(37))), 'password_too_long');
  assert.equal(code(() => checkPasswordPolicy('abc\ndefgh')), 'invalid_request');
  assert.equal(code(() => checkPasswordPolicy('long enough')), 'ok');
});

test('imported hashes must be in a Dovecot scheme; plain text is refused', () => {
  const blf = `{BLF-CRYPT}${bcrypt.hashSync('x', 4)}`;
  assert.equal(checkImportedHash(blf), blf);
  const sha512 = '{SHA512-CRYPT}$6$saltsalt$' + 'a'.repeat(86);
  assert.equal(checkImportedHash(sha512), sha512);
  for (const bad of ['{PLAIN}secret', 'nohash', '{BLF-CRYPT}$2b$10$short', '{CLEAR}x']) {
    assert.throws(() => checkImportedHash(bad), (e: unknown) => e instanceof HmcError && e.code === 'invalid_password_hash');
  }
});
