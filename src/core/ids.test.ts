import { test } from 'node:test';
import assert from 'node:assert/strict';
import { idKind, isId, newId, ulid } from './ids.js';

test('ids are strictly increasing within a millisecond and carry their kind', () => {
  const ids = Array.from({ length: 5000 }, () => newId('user'));
  const sorted = [...ids].sort();
  assert.deepEqual(ids, sorted);
  assert.equal(new Set(ids).size, ids.length);
  assert.ok(ids.every(isId));
  assert.equal(idKind(ids[0]!), 'user');
  assert.equal(idKind('usr_notanid'), undefined);
});

test('ulid encodes the time in its first ten characters', () => {
  const a = ulid(1_700_000_000_000);
  const b = ulid(1_700_000_000_001 + 10_000);
  assert.ok(a < b);
  assert.equal(a.length, 26);
});
