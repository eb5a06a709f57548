import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSnapshot, encodeSnapshot, readSnapshot, SnapshotError, writeFileAtomic } from './domain-cache-snapshot.js';
import type { CachedDomain } from './domain-cache-source.js';
import { domainKey } from './domain-cache.js';

const domains: CachedDomain[] = [
  { name: 'a.example', domainId: 'dom_1', orgId: 'org_1', resellerId: 'rsl_1', live: true, orgState: 'active', type: 'authoritative', aliasOfId: null, aliasOfName: null },
  { name: 'xn--bcher-kva.example', domainId: 'dom_2', orgId: 'org_1', resellerId: 'rsl_1', live: false, orgState: 'suspended', type: 'internal_relay', aliasOfId: 'dom_1', aliasOfName: 'a.example' },
];

test('a snapshot round-trips every field, in chunks as in one piece', async () => {
  const at = Date.parse('2024-05-01T10:00:00.000Z');
  const back = decodeSnapshot(await encodeSnapshot({ refreshedAt: at, domains }));
  assert.equal(back.refreshedAt, at);
  assert.deepEqual(back.domains, domains);
  const many = Array.from({ length: 12_345 }, (_, i) => ({ ...domains[i % 2]!, name: `d${i}.example` }));
  assert.deepEqual(decodeSnapshot(await encodeSnapshot({ refreshedAt: at, domains: many })).domains, many);
  assert.deepEqual(decodeSnapshot(await encodeSnapshot({ refreshedAt: at, domains: [] })).domains, []);
});

test('a damaged snapshot is refused with the reason, whatever the damage', async () => {
  const text = await encodeSnapshot({ refreshedAt: 0, domains });
  const good = JSON.parse(text);
  const bad: Array<[string, string, RegExp]> = [
    ['truncated', text.slice(0, 80), /not JSON/],
    ['empty file', '', /not JSON/],
    ['not an object', '[1,2]', /format/],
    ['another format', JSON.stringify({ ...good, format: 'x' }), /format/],
    ['a later version', JSON.stringify({ ...good, version: 2 }), /version/],
    ['no time', JSON.stringify({ ...good, refreshedAt: 'yesterday' }), /refreshedAt/],
    ['count off', JSON.stringify({ ...good, count: 3 }), /count/],
    ['short row', JSON.stringify({ ...good, domains: [good.domains[0].slice(0, 8), good.domains[1]] }), /#0/],
    ['unknown type', JSON.stringify({ ...good, domains: [good.domains[0], [...good.domains[1].slice(0, 6), 'mx', 'dom_1', 'a.example']] }), /#1/],
    ['upper case name', JSON.stringify({ ...good, domains: [['A.example', ...good.domains[0].slice(1)], good.domains[1]] }), /#0/],
    ['alias id without name', JSON.stringify({ ...good, domains: [good.domains[0], [...good.domains[1].slice(0, 8), null]] }), /#1/],
    ['a name twice', JSON.stringify({ ...good, domains: [good.domains[0], good.domains[0]] }), /twice/],
  ];
  for (const [what, text, reason] of bad) {
    assert.throws(() => decodeSnapshot(text), (e: unknown) => e instanceof SnapshotError && reason.test(e.message), what);
  }
});

test('snapshot files: absent is null, written atomically with nothing left beside', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hmc-snap-'));
  try {
    const path = join(dir, 'sub', 'cache.json');
    assert.equal(readSnapshot(path), null);
    await writeFileAtomic(path, await encodeSnapshot({ refreshedAt: 1, domains }));
    await writeFileAtomic(path, await encodeSnapshot({ refreshedAt: 2, domains: domains.slice(0, 1) }));
    assert.equal(readSnapshot(path)!.domains.length, 1);
    assert.deepEqual(readdirSync(join(dir, 'sub')), ['cache.json'], 'no temporary file left');
    writeFileSync(path, 'garbage');
    assert.throws(() => readSnapshot(path), SnapshotError);
    assert.equal(readFileSync(path, 'utf8'), 'garbage', 'reading never changes the file');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('domainKey: case, trailing dot, IDN to A-label; what cannot be a domain finds nothing', () => {
  assert.equal(domainKey('Example.COM'), 'example.com');
  assert.equal(domainKey('example.com.'), 'example.com');
  assert.equal(domainKey(' example.com '), 'example.com');
  assert.equal(domainKey('BÜCHER.example'), 'xn--bcher-kva.example');
  assert.equal(domainKey('xn--bcher-kva.example'), 'xn--bcher-kva.example');
  assert.equal(domainKey('bad domain.example'), '');
});
