import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_HEAD_BYTES, joinFields, parseFields, splitHead, unsplit, withHead } from './message-head.js';
import { checkStamp, makeStamp } from './stamp.js';

async function* chunked(buf: Buffer, sizes: number[]): AsyncIterable<Buffer> {
  let at = 0;
  for (let i = 0; at < buf.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]!);
    yield buf.subarray(at, at + n);
    at += n;
  }
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

const fieldLine = fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/), fc.stringMatching(/^[ -~]{0,40}$/), fc.boolean())
  .map(([n, v, fold]) => (fold ? `${n}: ${v}\r\n\t${v}` : `${n}: ${v}`));

test('a message split at any chunk boundaries comes back byte for byte when its head is rewritten unchanged', async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(fieldLine, { minLength: 1, maxLength: 12 }),
    fc.uint8Array({ maxLength: 400 }),
    fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 8 }),
    async (lines, body, sizes) => {
      const head = lines.join('\r\n');
      const message = Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), Buffer.from(body)]);
      const split = await splitHead(chunked(message, sizes));
      assert.equal(split.head!.toString('latin1'), head);
      const fields = parseFields(split.head!);
      assert.equal(fields.length, lines.length);
      assert.deepEqual(await collect(withHead(joinFields(fields), split.rest)), message);
    },
  ), { numRuns: 300 });
});

test('LF-only messages, a message without a body, and a head too large to look at', async () => {
  const lf = Buffer.from('Subject: x\nX-Hmc-Stamp: v=1\n\nbody\n');
  const s1 = await splitHead(chunked(lf, [3]));
  const kept = parseFields(s1.head!).filter((f) => f.name !== 'x-hmc-stamp');
  assert.equal((await collect(withHead(joinFields(kept), s1.rest))).toString(), 'Subject: x\r\n\r\nbody\n');
  const headOnly = await splitHead(chunked(Buffer.from('Subject: y\r\n'), [100]));
  assert.equal(headOnly.head!.toString(), 'Subject: y');
  const huge = Buffer.concat([Buffer.from('X-Big: '), Buffer.alloc(MAX_HEAD_BYTES + 10, 0x61), Buffer.from('\r\n\r\nbody')]);
  const s3 = await splitHead(chunked(huge, [4096]));
  assert.equal(s3.head, null);
  assert.deepEqual(await collect(s3.rest), huge, 'passed on untouched');
});

test('parseFields: names are lower-cased, folding is unfolded in value and kept in raw', () => {
  const f = parseFields(Buffer.from('Subject: a\r\n b\r\nList-Id: <x>'));
  assert.deepEqual(f.map((x) => [x.name, x.value]), [['subject', 'a b'], ['list-id', '<x>']]);
  assert.equal(f[0]!.raw, 'Subject: a\r\n b');
});

test('stamps: bound to key, sender (any case) and Message-ID; expire after a day', () => {
  const key = Buffer.from('k'.repeat(40));
  const now = Date.UTC(2026, 11, 2, 12);
  const s = makeStamp(key, 'Bob@A.example', '<m1@x>', now);
  assert.deepEqual(checkStamp(key, s, 'bob@a.example', '<m1@x>', now + 1000), { ok: true });
  assert.deepEqual(checkStamp(key, s, 'eve@a.example', '<m1@x>', now), { ok: false, reason: 'forged' });
  assert.deepEqual(checkStamp(key, s, 'bob@a.example', '<m2@x>', now), { ok: false, reason: 'forged' });
  assert.deepEqual(checkStamp(Buffer.from('j'.repeat(40)), s, 'bob@a.example', '<m1@x>', now), { ok: false, reason: 'forged' });
  assert.deepEqual(checkStamp(key, s, 'bob@a.example', '<m1@x>', now + 25 * 3600_000), { ok: false, reason: 'expired' });
  assert.deepEqual(checkStamp(key, 'v=1; t=abc; s=x', 'bob@a.example', '<m1@x>', now), { ok: false, reason: 'malformed' });
});

test('a message passed through untouched (unsplit) comes back byte for byte, CRLF or LF, with or without a body', async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(fieldLine, { minLength: 1, maxLength: 12 }),
    fc.uint8Array({ maxLength: 400 }),
    fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 8 }),
    fc.constantFrom('\r\n', '\n'),
    async (lines, body, sizes, eol) => {
      const message = Buffer.concat([Buffer.from(`${lines.join(eol)}${eol}${eol}`, 'latin1'), Buffer.from(body)]);
      const split = await splitHead(chunked(message, sizes));
      assert.deepEqual(await collect(unsplit(split.head!, split.rest)), message);
    },
  ), { numRuns: 300 });
});
