import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { GiB, PiB, setupMailOrg, TiB, type MailOrg } from './mail-support.js';

/**
 * Resource Manager placement through the API, on both databases: worked examples of each algorithm on
 * hand-made store layouts (the expected placements are written down next to each), dedicated stores
 * released and taken again (seed RU6), races for one store, and exact figures up to 8 PiB.
 *
 * Each test starts its own platform, so the only stores are the ones it registers (placement considers
 * every store of the platform). Store ids are time-ordered, so "ties by id" means "the one made first".
 */

const ORGS = '/api/v1/organizations';

interface Layout {
  t: TestPlatform;
  server: string;
  /** name → store id */
  id: Record<string, string>;
}

async function layout(t: TestPlatform, stores: [string, number, Record<string, unknown>?][]): Promise<Layout> {
  const srv = await t.ok('POST', '/api/v1/mail-servers', { name: 'mx1', lmtpEndpoint: '127.0.0.1:24', imapEndpoint: '127.0.0.1:143', mailRoot: '/srv/mail' });
  const id: Record<string, string> = {};
  for (const [name, capacityBytes, extra] of stores) id[name] = (await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name, capacityBytes, ...(extra ?? {}) })).id;
  return { t, server: srv.id, id };
}

/** An organization on a provider plan of `storageBytes` (no public-folder pool), subscribed by the provider. */
async function orgOn(t: TestPlatform, name: string, plan: Record<string, unknown>): Promise<{ orgId: string; planId: string }> {
  const rsl = await t.ok('POST', '/api/v1/resellers', { name: `${name}-rsl` });
  const org = await t.ok('POST', ORGS, { resellerId: rsl.id, name: `${name}-org` });
  const p = await t.ok('POST', '/api/v1/plans/organization', { name: `${name}-plan`, publicFolderBytes: 0, ...plan });
  await t.ok('PUT', `${ORGS}/${org.id}/subscription`, { orgPlanId: p.id });
  return { orgId: org.id, planId: p.id };
}

/** The organization's pieces as { storeName: bytes } (mailbox stores). */
async function pieces(l: Layout, orgId: string): Promise<Record<string, number>> {
  const names = Object.fromEntries(Object.entries(l.id).map(([n, i]) => [i, n]));
  const r = await l.t.ok('GET', `${ORGS}/${orgId}/resources`);
  return Object.fromEntries(r.stores.filter((s: any) => s.purpose === 'mailbox').map((s: any) => [names[s.storeId], s.bytes]));
}

async function store(l: Layout, name: string): Promise<any> {
  return l.t.ok('GET', `/api/v1/mailstores/${l.id[name]}`);
}

/** Give the filler organization exactly these bytes per store (explicit sources). */
async function fill(l: Layout, filler: string, bytes: Record<string, number>): Promise<void> {
  const sources = Object.entries(bytes).map(([n, b]) => ({ storeId: l.id[n], bytes: b }));
  const total = Object.values(bytes).reduce((a, b) => a + b, 0);
  await l.t.ok('PUT', `${ORGS}/${filler}/allocation`, { mailboxBytes: total, sources });
}

for (const dialect of DIALECTS) {
  describe(`resource manager placement [${dialect}]`, () => {
    let t: TestPlatform;
    const fresh = async () => {
      if (t) await t.close();
      t = await startTestPlatform(dialect);
      return t;
    };
    after(async () => t?.close());

    test('tightPack: best fit, fullest first when it must split', async () => {
      const l = await layout(await fresh(), [['s1', 10 * TiB], ['s2', 10 * TiB], ['s3', 10 * TiB], ['s4', 10 * TiB], ['s5', 10 * TiB]]);
      // store | capacity | filler holds | free
      // s1    | 10 T     | 9 T          | 1 T
      // s2    | 10 T     | 6 T          | 4 T
      // s3    | 10 T     | 2 T          | 8 T
      // s4    | 10 T     | 0            | 10 T
      // s5    | 10 T     | 3 T          | 7 T   then set draining: takes nothing new
      const filler = await orgOn(t, 'filler', { storageBytes: 0 });
      await fill(l, filler.orgId, { s1: 9 * TiB, s2: 6 * TiB, s3: 2 * TiB, s5: 3 * TiB });
      await t.ok('PATCH', `/api/v1/mail-servers/${l.server}/stores/${l.id.s5}`, { state: 'draining' });
      // org | allocation | expected                  | why
      // A   | 2 T        | s2 2 T                    | least free store that takes it whole (s1 has 1 T)
      // B   | 12 T       | s1 1 T, s2 2 T, s4 9 T    | none has 12 T: fill s1, s2 fullest-first; 9 T then fits only s4
      // C   | 5 T        | s3 5 T                    | s3 (8 T) is the only store left with 5 T
      // D   | 4 T + 1 B  | STORAGE_LIMIT             | 4 T free on active stores (s3 3 T, s4 1 T)
      // E   | 4 T        | s3 3 T, s4 1 T            | no store has 4 T: fill s4 (fullest), the last 3 T fit s3
      const a = await orgOn(t, 'a', { storageBytes: 2 * TiB, placement: 'tightPack' });
      assert.deepEqual(await pieces(l, a.orgId), { s2: 2 * TiB });
      const b = await orgOn(t, 'b', { storageBytes: 12 * TiB, placement: 'tightPack' });
      assert.deepEqual(await pieces(l, b.orgId), { s1: 1 * TiB, s2: 2 * TiB, s4: 9 * TiB });
      const c = await orgOn(t, 'c', { storageBytes: 5 * TiB, placement: 'tightPack' });
      assert.deepEqual(await pieces(l, c.orgId), { s3: 5 * TiB });
      // left: s3 3 T, s4 1 T (s5's 7 T is draining): 4 T fits split, 4 T + 1 byte does not
      const rsl = await t.ok('POST', '/api/v1/resellers', { name: 'd-rsl' });
      const d = await t.ok('POST', ORGS, { resellerId: rsl.id, name: 'd-org' });
      const big = await t.ok('POST', '/api/v1/plans/organization', { name: 'd-plan', publicFolderBytes: 0, storageBytes: 4 * TiB + 1 });
      const refused = await t.call('PUT', `${ORGS}/${d.id}/subscription`, { body: { orgPlanId: big.id } });
      assert.equal(refused.statusCode, 422, refused.body);
      assert.equal(refused.json().code, 'STORAGE_LIMIT');
      assert.equal((await t.ok('GET', `${ORGS}/${d.id}/subscription`).catch(() => null)), null, 'a refused subscription leaves nothing');
      const e = await orgOn(t, 'e', { storageBytes: 4 * TiB, placement: 'tightPack' });
      assert.deepEqual(await pieces(l, e.orgId), { s3: 3 * TiB, s4: 1 * TiB });
      for (const n of ['s1', 's2', 's3', 's4']) assert.equal((await store(l, n)).freeBytes, 0, `${n} is full`);
      assert.equal((await store(l, 's5')).allocatedBytes, 3 * TiB, 'the draining store took nothing');
    });

    test('level: lowest fill ratio after placement; minStoreCount: fewest stores for the organization', async () => {
      const l = await layout(await fresh(), [['s1', 10 * TiB], ['s2', 20 * TiB], ['s3', 10 * TiB]]);
      const filler = await orgOn(t, 'filler', { storageBytes: 0 });
      // store | capacity | filler | ratio
      // s1    | 10 T     | 5 T    | 0.50
      // s2    | 20 T     | 4 T    | 0.20
      // s3    | 10 T     | 1 T    | 0.10
      await fill(l, filler.orgId, { s1: 5 * TiB, s2: 4 * TiB, s3: 1 * TiB });
      // level org | allocation | ratios after (s1, s2, s3) | expected
      // A         | 3 T        | .80, .35, .40             | s2
      // B         | 3 T        | .80, .50, .40             | s3
      // C         | 14 T       | none fits (5, 13, 6 free) | fill most free s2 13 T; 1 T by ratio: s1 .60, s3 .50 → s3
      const a = await orgOn(t, 'a', { storageBytes: 3 * TiB, placement: 'level' });
      assert.deepEqual(await pieces(l, a.orgId), { s2: 3 * TiB });
      const b = await orgOn(t, 'b', { storageBytes: 3 * TiB, placement: 'level' });
      assert.deepEqual(await pieces(l, b.orgId), { s3: 3 * TiB });
      const c = await orgOn(t, 'c', { storageBytes: 14 * TiB, placement: 'level' });
      assert.deepEqual(await pieces(l, c.orgId), { s2: 13 * TiB, s3: 1 * TiB });
      // free now: s1 5 T, s2 0, s3 5 T
      // minStoreCount org M: 1 T → most free store: s1 (tied with s3, made first); grow to 4 T (+3 T) → its own store first: s1 again (one store)
      //                      grow to 9 T (+5 T): s1 has 1 T left → fill it, then the other stores most-free-first: s3 4 T
      const m = await orgOn(t, 'm', { storageBytes: 1 * TiB, placement: 'minStoreCount' });
      assert.deepEqual(await pieces(l, m.orgId), { s1: 1 * TiB });
      await t.ok('PUT', `${ORGS}/${m.orgId}/allocation`, { mailboxBytes: 4 * TiB });
      assert.deepEqual(await pieces(l, m.orgId), { s1: 4 * TiB });
      await t.ok('PUT', `${ORGS}/${m.orgId}/allocation`, { mailboxBytes: 9 * TiB });
      assert.deepEqual(await pieces(l, m.orgId), { s1: 5 * TiB, s3: 4 * TiB });
      // shrinking across two stores needs sources; with them it is exact
      const r = await t.call('PUT', `${ORGS}/${m.orgId}/allocation`, { body: { mailboxBytes: 8 * TiB } });
      assert.equal(r.json().code, 'shrink_needs_sources', r.body);
      await t.ok('PUT', `${ORGS}/${m.orgId}/allocation`, { mailboxBytes: 5 * TiB, sources: [{ storeId: l.id.s3, bytes: 4 * TiB }] });
      assert.deepEqual(await pieces(l, m.orgId), { s1: 5 * TiB });
      assert.equal((await store(l, 's3')).allocatedBytes, 1 * TiB + 3 * TiB + 1 * TiB, 'filler + B + C');
    });

    test('dedicated: one owner; released and allocated again to the same organization (seed RU6); another is refused while held', async () => {
      const l = await layout(await fresh(), [['d1', 1 * TiB, { sharing: 'dedicated' }], ['sh', 10 * TiB]]);
      const x = await orgOn(t, 'x', { storageBytes: 500 * GiB, mailstoreKind: 'dedicated' });
      assert.deepEqual(await pieces(l, x.orgId), { d1: 500 * GiB });
      assert.equal((await store(l, 'd1')).ownerOrgId, x.orgId);
      // Y wants a dedicated store too: the only one is held (the shared one is not for it)
      const rsl = await t.ok('POST', '/api/v1/resellers', { name: 'y-rsl' });
      const y = await t.ok('POST', ORGS, { resellerId: rsl.id, name: 'y-org' });
      const yPlan = await t.ok('POST', '/api/v1/plans/organization', { name: 'y-plan', publicFolderBytes: 0, storageBytes: 100 * GiB, mailstoreKind: 'dedicated' });
      const refused = await t.call('PUT', `${ORGS}/${y.id}/subscription`, { body: { orgPlanId: yPlan.id } });
      assert.equal(refused.json().code, 'STORAGE_LIMIT', refused.body);
      const yEmpty = await t.ok('POST', '/api/v1/plans/organization', { name: 'y-empty', publicFolderBytes: 0, storageBytes: 0, mailstoreKind: 'dedicated' });
      await t.ok('PUT', `${ORGS}/${y.id}/subscription`, { orgPlanId: yEmpty.id });
      const named = await t.call('PUT', `${ORGS}/${y.id}/allocation`, { body: { mailboxBytes: 100 * GiB, sources: [{ storeId: l.id.d1, bytes: 100 * GiB }] } });
      assert.equal(named.json().code, 'dedicated_store_held', named.body);
      // X releases its allocation: the store is free (no owner, nothing allocated)
      await t.ok('PUT', `${ORGS}/${x.orgId}/allocation`, { mailboxBytes: 0 });
      assert.deepEqual(await pieces(l, x.orgId), {});
      let d1 = await store(l, 'd1');
      assert.deepEqual([d1.ownerOrgId, d1.allocatedBytes], [null, 0]);
      // RU6: the same organization takes it again
      await t.ok('PUT', `${ORGS}/${x.orgId}/allocation`, { mailboxBytes: 200 * GiB });
      assert.deepEqual(await pieces(l, x.orgId), { d1: 200 * GiB });
      assert.equal((await store(l, 'd1')).ownerOrgId, x.orgId);
      // and grows on its own store
      await t.ok('PUT', `${ORGS}/${x.orgId}/allocation`, { mailboxBytes: 1 * TiB });
      assert.deepEqual(await pieces(l, x.orgId), { d1: 1 * TiB });
      // released again, another organization may take it
      await t.ok('PUT', `${ORGS}/${x.orgId}/allocation`, { mailboxBytes: 0 });
      await t.ok('PUT', `${ORGS}/${y.id}/allocation`, { mailboxBytes: 100 * GiB });
      d1 = await store(l, 'd1');
      assert.deepEqual([d1.ownerOrgId, d1.allocatedBytes], [y.id, 100 * GiB]);
      assert.equal((await store(l, 'sh')).allocatedBytes, 0, 'dedicated plans never touch shared stores');
      const consumers = await t.ok('GET', `/api/v1/mailstores/${l.id.d1}/consumers`);
      assert.deepEqual(consumers.items.map((c: any) => [c.orgId, c.bytes]), [[y.id, 100 * GiB]]);
    });

    test('deleting an organization frees its stores: counts at once, allocation and dedicated ownership at the purge', async () => {
      const l = await layout(await fresh(), [['d1', 100 * GiB, { sharing: 'dedicated' }]]);
      const o = await setupMailOrg(t, 'gone', { storageBytes: 10 * GiB, publicFolderBytes: 0, defaultStores: false, orgPlan: { mailstoreKind: 'dedicated' } });
      await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `gone@${o.domainName}`, planId: o.mailboxPlanId });
      assert.deepEqual([(await store(l, 'd1')).ownerOrgId, (await store(l, 'd1')).mailboxCount], [o.org.id, 1]);
      const r = await t.call('DELETE', `${ORGS}/${o.org.id}?force=true`);
      assert.ok([200, 202].includes(r.statusCode), r.body);
      assert.equal((await t.settle(r.headers['hmc-request-id'] as string)).state, 'succeeded');
      const d1 = await store(l, 'd1');
      assert.deepEqual([d1.ownerOrgId, d1.allocatedBytes, d1.mailboxCount, d1.chargedBytes], [null, 0, 0, 0]);
      assert.deepEqual((await t.ok('GET', `/api/v1/mailstores/${l.id.d1}/consumers`)).items, []);
      // and another organization can take the store
      const next = await orgOn(t, 'next', { storageBytes: 50 * GiB, mailstoreKind: 'dedicated' });
      assert.equal((await store(l, 'd1')).ownerOrgId, next.orgId);
    });

    test('50 parallel mailbox creations against a store with room for 20: exactly 20 placed, never over capacity', async () => {
      const l = await layout(await fresh(), [['small', 20 * GiB]]);
      // a dynamic organization: each 1 GiB mailbox grows its allocation on the one store by 1 GiB
      const o = await setupMailOrg(t, 'race', { storageBytes: 0, dynamicStorage: true, publicFolderBytes: 0, defaultStores: false });
      const results = await createMany(t, o, 50);
      assert.equal(results.filter((r) => r === 201).length, 20, JSON.stringify(results));
      assert.equal(results.filter((r) => r === 422).length, 30);
      const s = await store(l, 'small');
      assert.deepEqual([s.allocatedBytes, s.chargedBytes, s.mailboxCount, s.freeBytes], [20 * GiB, 20 * GiB, 20, 0]);
      const sub = await t.ok('GET', `${o.orgUrl}/subscription`);
      assert.equal(sub.usage.mailboxes, 20);
      assert.equal(sub.allocation.mailboxBytes, 20 * GiB);
      const on = await t.ok('GET', `/api/v1/mailstores/${l.id.small}/recipients?limit=100`);
      assert.equal(on.items.length, 20);
    });

    test('50 parallel creations with a second store: 20 fill the small store, the rest go to the other (tightPack)', async () => {
      const l = await layout(await fresh(), [['small', 20 * GiB, { maxMailboxes: 20 }], ['large', 100 * GiB]]);
      const o = await setupMailOrg(t, 'spill', { storageBytes: 0, dynamicStorage: true, publicFolderBytes: 0, defaultStores: false });
      const results = await createMany(t, o, 50);
      assert.deepEqual(results.filter((r) => r !== 201), []);
      const [small, large] = [await store(l, 'small'), await store(l, 'large')];
      assert.equal(small.mailboxCount, 20);
      assert.equal(large.mailboxCount, 30);
      assert.ok(small.allocatedBytes <= small.capacityBytes && large.allocatedBytes <= large.capacityBytes);
      assert.equal(small.allocatedBytes + large.allocatedBytes, 50 * GiB);
    });

    test('organization allocations racing for one store: exactly as many as fit', async () => {
      const l = await layout(await fresh(), [['one', 20 * TiB]]);
      const plan = await t.ok('POST', '/api/v1/plans/organization', { name: 'tib', publicFolderBytes: 0, storageBytes: 1 * TiB });
      const rsl = await t.ok('POST', '/api/v1/resellers', { name: 'racers' });
      const orgs: string[] = [];
      for (let i = 0; i < 50; i++) orgs.push((await t.ok('POST', ORGS, { resellerId: rsl.id, name: `racer-${i}` })).id);
      const codes = await Promise.all(orgs.map((id) => t.call('PUT', `${ORGS}/${id}/subscription`, { body: { orgPlanId: plan.id } }).then((r) => r.statusCode)));
      assert.equal(codes.filter((c) => c === 200 || c === 201).length, 20, JSON.stringify(codes));
      assert.equal(codes.filter((c) => c === 422).length, 30);
      const s = await store(l, 'one');
      assert.deepEqual([s.allocatedBytes, s.freeBytes], [20 * TiB, 0]);
      const consumers = await t.ok('GET', `/api/v1/mailstores/${l.id.one}/consumers?limit=100`);
      assert.equal(consumers.items.length, 20);
    });

    test('exact figures: 2 TiB, 16 TiB, 8 PiB per organization on stores of 1 PiB', async () => {
      const names = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9'];
      const l = await layout(await fresh(), names.map((n) => [n, PiB] as [string, number]));
      const o = await orgOn(t, 'huge', { storageBytes: 2 * TiB, placement: 'tightPack' });
      // 2 TiB: all stores equally free → the first; 16 TiB: the same store (least free that fits);
      // 8 PiB: p1 filled, then p2..p8 whole (7 PiB): exactly 8 × 2^50 = 2^53 bytes, p9 untouched
      assert.deepEqual(await pieces(l, o.orgId), { p1: 2 * TiB });
      assert.equal(2 * TiB, 2_199_023_255_552);
      await t.ok('PUT', `${ORGS}/${o.orgId}/allocation`, { mailboxBytes: 16 * TiB });
      assert.deepEqual(await pieces(l, o.orgId), { p1: 16 * TiB });
      const r = await t.ok('PUT', `${ORGS}/${o.orgId}/allocation`, { mailboxBytes: 8 * PiB });
      assert.equal(r.mailboxBytes, 2 ** 53);
      assert.deepEqual(await pieces(l, o.orgId), Object.fromEntries(names.slice(0, 8).map((n) => [n, PiB])));
      for (const n of names.slice(0, 8)) assert.deepEqual([(await store(l, n)).allocatedBytes, (await store(l, n)).freeBytes], [2 ** 50, 0]);
      assert.equal((await store(l, 'p9')).allocatedBytes, 0);
      const sub = await t.ok('GET', `${ORGS}/${o.orgId}/subscription`);
      assert.equal(sub.allocation.mailboxBytes, 9_007_199_254_740_992);
      // 8 PiB is the most an organization holds (2^53 + 1 is not even a JSON number a client can send exactly);
      // another organization finds one store of 1 PiB left
      const other = await t.call('PUT', `${ORGS}/${(await orgOn(t, 'other', { storageBytes: 0 })).orgId}/allocation`, { body: { mailboxBytes: PiB + 1 } });
      assert.equal(other.json().code, 'STORAGE_LIMIT', other.body);
      // back down exactly, from the stores named
      await t.ok('PUT', `${ORGS}/${o.orgId}/allocation`, { mailboxBytes: 2 * TiB, sources: [
        { storeId: l.id.p1, bytes: PiB - 2 * TiB }, ...names.slice(1, 8).map((n) => ({ storeId: l.id[n], bytes: PiB })),
      ] });
      assert.deepEqual(await pieces(l, o.orgId), { p1: 2 * TiB });
      const list = await t.ok('GET', '/api/v1/mailstores?limit=1000');
      assert.equal(list.items.reduce((s: number, x: any) => s + x.allocatedBytes, 0), 2 * TiB);
    });

    test('a mailbox stays on its store when its quota changes and fits; deleting returns its charge; restore goes back', async () => {
      const l = await layout(await fresh(), [['a', 10 * GiB], ['b', 10 * GiB]]);
      const o = await setupMailOrg(t, 'life', { storageBytes: 12 * GiB, publicFolderBytes: 0, defaultStores: false, orgPlan: { placement: 'level' } });
      // 12 GiB with level: a 10 GiB... none fits 12: fill most free (a, first by id) 10 GiB, then b 2 GiB
      assert.deepEqual(await pieces(l, o.org.id), { a: 10 * GiB, b: 2 * GiB });
      const m = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `box@${o.domainName}`, planId: o.mailboxPlanId });
      // level inside the allocation: charge ratio after (1/10 on a, 1/2 on b) → a
      const res = async () => (await t.ok('GET', `${ORGS}/${o.org.id}/resources`)).stores.map((s: any) => [s.storeId, s.chargedBytes, s.mailboxCount]);
      assert.deepEqual(await res(), [[l.id.a, GiB, 1], [l.id.b, 0, 0]]);
      await t.ok('PATCH', `${o.orgUrl}/mailboxes/${m.id}`, { overrides: { issueWarningQuota: GiB, prohibitSendQuota: GiB, prohibitSendReceiveQuota: 3 * GiB } });
      assert.deepEqual(await res(), [[l.id.a, 3 * GiB, 1], [l.id.b, 0, 0]], 'the quota grew in place');
      await t.ok('DELETE', `${o.orgUrl}/mailboxes/${m.id}`);
      assert.deepEqual(await res(), [[l.id.a, 0, 0], [l.id.b, 0, 0]]);
      assert.equal((await store(l, 'a')).mailboxCount, 0);
      const on = await t.ok('GET', `/api/v1/mailstores/${l.id.a}/recipients`);
      assert.deepEqual(on.items.map((r: any) => [r.id, r.state]), [[m.id, 'deleted']], 'its data stays on the store until the purge');
      await t.ok('POST', `${o.orgUrl}/mailboxes/${m.id}/restore`);
      assert.deepEqual(await res(), [[l.id.a, 3 * GiB, 1], [l.id.b, 0, 0]], 'restored where its data is');
    });

    test('moves: a mailbox moves with its charge (and allocation when the target lacks room), its data copied by the files provider', async () => {
      const l = await layout(await fresh(), [['a', 10 * GiB], ['b', 10 * GiB]]);
      const o = await setupMailOrg(t, 'mover', { storageBytes: 4 * GiB, publicFolderBytes: 0, defaultStores: false });
      assert.deepEqual(await pieces(l, o.org.id), { a: 4 * GiB });
      const m = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `mover@${o.domainName}`, planId: o.mailboxPlanId });
      const dataOf = (store: string) => join(t.config.mailstoreFilesRoot, l.id[store]!, o.org.id, m.id);
      // mail the data plane delivered (Dovecot makes the maildir on first delivery)
      mkdirSync(join(dataOf('a'), 'cur'), { recursive: true });
      writeFileSync(join(dataOf('a'), 'cur', '1.eml'), 'Subject: kept\r\n\r\nhello');
      // the org has no piece on b: 1 GiB of allocation moves with the mailbox; the total stays 4 GiB
      const r = await t.call('POST', `${o.orgUrl}/mailboxes/${m.id}/move`, { body: { storeId: l.id.b } });
      assert.ok([200, 202].includes(r.statusCode), r.body);
      const done = await t.settle(r.headers['hmc-request-id'] as string);
      assert.equal(done.state, 'succeeded', JSON.stringify(done));
      assert.deepEqual(await pieces(l, o.org.id), { a: 3 * GiB, b: 1 * GiB });
      const res = (await t.ok('GET', `${ORGS}/${o.org.id}/resources`)).stores.map((x: any) => [x.storeId, x.chargedBytes, x.mailboxCount]);
      assert.deepEqual(res, [[l.id.a, 0, 0], [l.id.b, GiB, 1]]);
      assert.equal(readFileSync(join(dataOf('b'), 'cur', '1.eml'), 'utf8'), 'Subject: kept\r\n\r\nhello', 'every message arrives');
      assert.equal(existsSync(dataOf('a')), false, 'nothing stays behind');
      assert.deepEqual([(await store(l, 'a')).mailboxCount, (await store(l, 'b')).mailboxCount], [0, 1]);
      const onB = await t.ok('GET', `/api/v1/mailstores/${l.id.b}/recipients`);
      assert.deepEqual(onB.items.map((x: any) => x.id), [m.id]);
      // moving it again where it is changes nothing; a tenant cannot move mailboxes at all
      assert.equal((await t.ok('POST', `${o.orgUrl}/mailboxes/${m.id}/move`, { storeId: l.id.b })).moved, false);
      assert.equal((await t.call('POST', `${o.orgUrl}/mailboxes/${m.id}/move`, { token: o.orgAdmin, body: { storeId: l.id.a } })).statusCode, 404);
      // a target without room refuses and changes nothing
      const full = await layout2(t, l.server, 'tiny', GiB - 1);
      const refused = await t.call('POST', `${o.orgUrl}/mailboxes/${m.id}/move`, { body: { storeId: full } });
      assert.equal(refused.json().code, 'STORAGE_LIMIT', refused.body);
      assert.deepEqual(await pieces(l, o.org.id), { a: 3 * GiB, b: 1 * GiB });
    });

    test('a quota that no longer fits its store moves the mailbox, and its data follows', async () => {
      const l = await layout(await fresh(), [['a', 2 * GiB], ['b', 10 * GiB]]);
      // 12 GiB fits no single store: a (the fuller, least free) is filled, b takes the rest
      const o = await setupMailOrg(t, 'grow', { storageBytes: 12 * GiB, publicFolderBytes: 0, defaultStores: false });
      assert.deepEqual(await pieces(l, o.org.id), { a: 2 * GiB, b: 10 * GiB });
      const m = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `grow@${o.domainName}`, planId: o.mailboxPlanId });
      const dataOf = (store: string) => join(t.config.mailstoreFilesRoot, l.id[store]!, o.org.id, m.id);
      mkdirSync(join(dataOf('a'), 'new'), { recursive: true });
      writeFileSync(join(dataOf('a'), 'new', '1.eml'), 'x');
      // tightPack inside the allocation put it on a (fewest uncharged bytes that fit); 3 GiB does not fit a
      const r = await t.call('PATCH', `${o.orgUrl}/mailboxes/${m.id}`, { body: { overrides: { issueWarningQuota: GiB, prohibitSendQuota: GiB, prohibitSendReceiveQuota: 3 * GiB } } });
      assert.ok([200, 202].includes(r.statusCode), r.body);
      assert.equal((await t.settle(r.headers['hmc-request-id'] as string)).state, 'succeeded');
      const res = (await t.ok('GET', `${ORGS}/${o.org.id}/resources`)).stores.map((x: any) => [x.storeId, x.chargedBytes, x.mailboxCount]);
      assert.deepEqual(res, [[l.id.a, 0, 0], [l.id.b, 3 * GiB, 1]]);
      assert.equal(readFileSync(join(dataOf('b'), 'new', '1.eml'), 'utf8'), 'x');
      assert.equal(existsSync(dataOf('a')), false);
    });

    test('moves: a copy that fails for good puts the mailbox back where its data is, charge and allocation included', async () => {
      const l = await layout(await fresh(), [['a', 10 * GiB], ['b', 10 * GiB]]);
      const o = await setupMailOrg(t, 'stuck', { storageBytes: 4 * GiB, publicFolderBytes: 0, defaultStores: false });
      const m = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `stuck@${o.domainName}`, planId: o.mailboxPlanId });
      const dataOf = (store: string) => join(t.config.mailstoreFilesRoot, l.id[store]!, o.org.id, m.id);
      mkdirSync(dataOf('a'), { recursive: true });
      writeFileSync(join(dataOf('a'), 'keep.eml'), 'x');
      // a file where store b's directory belongs: the copy cannot succeed, whatever the retries
      mkdirSync(t.config.mailstoreFilesRoot, { recursive: true });
      writeFileSync(join(t.config.mailstoreFilesRoot, l.id.b!), 'in the way');
      const r = await t.call('POST', `${o.orgUrl}/mailboxes/${m.id}/move`, { body: { storeId: l.id.b } });
      const done = await t.settle(r.headers['hmc-request-id'] as string);
      assert.notEqual(done.state, 'succeeded', JSON.stringify(done));
      assert.deepEqual(await pieces(l, o.org.id), { a: 4 * GiB }, 'the allocation went back');
      const res = (await t.ok('GET', `${ORGS}/${o.org.id}/resources`)).stores.map((x: any) => [x.storeId, x.chargedBytes, x.mailboxCount]);
      assert.deepEqual(res, [[l.id.a, GiB, 1]]);
      assert.deepEqual([(await store(l, 'a')).mailboxCount, (await store(l, 'b')).mailboxCount, (await store(l, 'b')).allocatedBytes], [1, 0, 0]);
      assert.equal(readFileSync(join(dataOf('a'), 'keep.eml'), 'utf8'), 'x', 'the data never left');
      assert.deepEqual((await t.ok('GET', `/api/v1/mailstores/${l.id.a}/recipients`)).items.map((x: any) => x.id), [m.id]);
      // the undo brought back whatever had reached b (a move b → a, marked in flight until its job finished)
      const row = await t.platform.store.db.selectFrom('mailboxes').select(['store_id', 'moving_from']).where('id', '=', m.id).executeTakeFirstOrThrow();
      assert.deepEqual([row.store_id, row.moving_from], [l.id.a, null]);
      const jobs = await t.platform.store.db.selectFrom('jobs').select(['kind', 'phase', 'state']).where('request_id', '=', r.headers['hmc-request-id'] as string).execute();
      assert.ok(jobs.some((j: any) => j.phase === 'compensation' && j.kind === 'mailstore.move_mailbox' && j.state === 'done'), JSON.stringify(jobs));
    });

    test('moves: all of an organization\'s mailboxes in one batch request, one item per mailbox', async () => {
      const l = await layout(await fresh(), [['a', 10 * GiB], ['b', 10 * GiB]]);
      const o = await setupMailOrg(t, 'bulk', { storageBytes: 5 * GiB, publicFolderBytes: 0, defaultStores: false });
      for (let i = 0; i < 5; i++) await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `b${i}@${o.domainName}`, planId: o.mailboxPlanId });
      const started = await t.ok('POST', `${ORGS}/${o.org.id}/move-mailboxes`, { storeId: l.id.b });
      assert.equal(started.mailboxes, 5);
      const batch = await t.settle(started.batchRequestId, 60_000);
      assert.equal(batch.state, 'succeeded', JSON.stringify(batch));
      assert.deepEqual(await pieces(l, o.org.id), { b: 5 * GiB }, 'the allocation followed, the empty piece on a is gone');
      assert.deepEqual([(await store(l, 'a')).allocatedBytes, (await store(l, 'b')).mailboxCount], [0, 5]);
      const again = await t.ok('POST', `${ORGS}/${o.org.id}/move-mailboxes`, { storeId: l.id.b });
      assert.deepEqual([again.mailboxes, again.batchRequestId], [0, null]);
    });
  });
}

async function layout2(t: TestPlatform, server: string, name: string, capacityBytes: number): Promise<string> {
  return (await t.ok('POST', `/api/v1/mail-servers/${server}/stores`, { name, capacityBytes })).id;
}

async function createMany(t: TestPlatform, o: MailOrg, n: number): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => t.call('POST', `${o.orgUrl}/mailboxes`, {
    token: o.orgAdmin, body: { kind: 'shared', primaryAddress: `box${i}@${o.domainName}`, planId: o.mailboxPlanId },
  }).then((r) => r.statusCode)));
}
