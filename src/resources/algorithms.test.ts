import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  allocateOrganization,
  placeMailbox,
  shrinkOrganization,
  PlacementError,
  ORG_MAX_BYTES,
  type AllocationRequest,
  type OrgPiece,
  type Piece,
  type StoreState,
} from './algorithms.js';

const G = 2 ** 30;
const T = 2 ** 40;
const P = 2 ** 50;

function store(id: string, capacityBytes: number, allocatedBytes: number, over: Partial<StoreState> = {}): StoreState {
  return { id, capacityBytes, allocatedBytes, sharing: 'shared', state: 'active', ownerOrgId: null, maxMailboxes: null, mailboxCount: 0, ...over };
}

function grow(stores: StoreState[], req: Partial<AllocationRequest> & { bytes: number }, current: Piece[] = []) {
  return allocateOrganization(stores, { orgId: 'orgA', sharing: 'shared', algorithm: 'tightPack', ...req }, current);
}

/** The PlacementError code `fn` throws (fails the test if it returns or throws anything else). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PlacementError, `expected a PlacementError, got ${String(e)}`);
    return e.code;
  }
  assert.fail('expected a refusal');
}

/** Apply an allocation to the store rows the way the engine will (add bytes, take dedicated stores). */
function apply(stores: StoreState[], orgId: string, a: { pieces: Piece[]; claims: string[] }): StoreState[] {
  return stores.map((s) => {
    const add = a.pieces.find((p) => p.storeId === s.id)?.bytes ?? 0;
    return { ...s, allocatedBytes: s.allocatedBytes + add, ownerOrgId: a.claims.includes(s.id) ? orgId : s.ownerOrgId };
  });
}

test('tightPack: best fit by free bytes, fullest first when it must split', () => {
  // store | capacity | allocated | free | note
  // s1    | 10 T     | 9 T       | 1 T  |
  // s2    | 10 T     | 6 T       | 4 T  |
  // s3    | 10 T     | 2 T       | 8 T  |
  // s4    | 10 T     | 0         | 10 T | empty
  // s5    | 10 T     | 7 T       | 3 T  | draining: never receives new bytes
  // s6    | 10 T     | 5 T       | 5 T  | dedicated: not for a shared allocation
  //
  // request | expected                    | why
  // 3 T     | s2 +3 T                     | least free that takes it whole (s1 too small; s5 draining)
  // 1 T     | s1 +1 T                     | exact fit closes the hole in s1
  // 12 T    | s1 +1 T, s2 +4 T, s3 +7 T   | no store has 12 T: fill s1, s2 fullest-first; the last 7 T fit s3 (best fit)
  // 26 T    | STORAGE_LIMIT               | eligible free is 1+4+8+10 = 23 T
  const stores = [
    store('s1', 10 * T, 9 * T),
    store('s2', 10 * T, 6 * T),
    store('s3', 10 * T, 2 * T),
    store('s4', 10 * T, 0),
    store('s5', 10 * T, 7 * T, { state: 'draining' }),
    store('s6', 10 * T, 5 * T, { sharing: 'dedicated', ownerOrgId: 'orgZ' }),
  ];
  assert.deepEqual(grow(stores, { bytes: 3 * T }).pieces, [{ storeId: 's2', bytes: 3 * T }]);
  assert.deepEqual(grow(stores, { bytes: 1 * T }).pieces, [{ storeId: 's1', bytes: 1 * T }]);
  assert.deepEqual(grow(stores, { bytes: 12 * T }), {
    pieces: [{ storeId: 's1', bytes: 1 * T }, { storeId: 's2', bytes: 4 * T }, { storeId: 's3', bytes: 7 * T }],
    claims: [],
  });
  assert.deepEqual(grow(stores, { bytes: 23 * T }).pieces.map((p) => p.storeId), ['s1', 's2', 's3', 's4']);
  assert.equal(codeOf(() => grow(stores, { bytes: 23 * T + 1 })), 'STORAGE_LIMIT');
});

test('level: lowest fill ratio after placement, most free first when it must split', () => {
  // store | capacity | allocated | ratio now
  // a     | 10 T     | 5 T       | 0.50
  // b     | 20 T     | 8 T       | 0.40
  // c     | 4 T      | 1 T       | 0.25
  // d     | 2 T      | 0         | 0
  //
  // request | ratio after on a / b / c / d     | expected             | why
  // 2 T     | 0.70 / 0.50 / 0.75 / 1.00        | b +2 T               | lowest ratio after; "lowest ratio now" would fill d to 100 %
  // 1 T     | 0.60 / 0.45 / 0.50 / 0.50        | b +1 T               |
  // 3 T     | 0.80 / 0.55 / 1.00 / (no fit)    | b +3 T               |
  // 13 T    | no store has 13 T free            | b +12 T, c +1 T     | fill b (most free); 1 T left: a 0.6, c 0.5, d 0.5 → c (tie by id)
  const stores = [store('a', 10 * T, 5 * T), store('b', 20 * T, 8 * T), store('c', 4 * T, 1 * T), store('d', 2 * T, 0)];
  const level = (bytes: number) => grow(stores, { bytes, algorithm: 'level' }).pieces;
  assert.deepEqual(level(2 * T), [{ storeId: 'b', bytes: 2 * T }]);
  assert.deepEqual(level(1 * T), [{ storeId: 'b', bytes: 1 * T }]);
  assert.deepEqual(level(3 * T), [{ storeId: 'b', bytes: 3 * T }]);
  assert.deepEqual(level(13 * T), [{ storeId: 'b', bytes: 12 * T }, { storeId: 'c', bytes: 1 * T }]);
  // once b has drifted up, the even spread moves elsewhere: b at 18/20 → a (0.7) beats c (0.75), d (1.0), b (1.0)
  const later = stores.map((s) => (s.id === 'b' ? { ...s, allocatedBytes: 18 * T } : s));
  assert.deepEqual(grow(later, { bytes: 2 * T, algorithm: 'level' }).pieces, [{ storeId: 'a', bytes: 2 * T }]);
});

test('minStoreCount: the organization\'s own stores first, then most free space', () => {
  // store | capacity | allocated | free | orgA has a piece
  // m1    | 10 T     | 8 T       | 2 T  | yes
  // m2    | 10 T     | 7 T       | 3 T  | yes
  // m3    | 10 T     | 1 T       | 9 T  | no
  // m4    | 10 T     | 4 T       | 6 T  | no
  //
  // request | expected                      | why
  // 2 T     | m2 +2 T                       | both own stores fit; most free (tightPack would pick m1, level m3)
  // 4 T     | m2 +3 T, m1 +1 T              | no single own store fits; filling own stores keeps orgA on 2 stores (m3 alone would make 3)
  // 12 T    | m2 +3 T, m1 +2 T, m3 +7 T     | own stores full; the 7 T left go to the one store with most free
  // 15 T    | m2 +3, m1 +2, m3 +9, m4 +1 T  | still fewest: m3 then m4
  const stores = [store('m1', 10 * T, 8 * T), store('m2', 10 * T, 7 * T), store('m3', 10 * T, 1 * T), store('m4', 10 * T, 4 * T)];
  const current = [{ storeId: 'm1', bytes: 3 * T }, { storeId: 'm2', bytes: 2 * T }];
  const msc = (bytes: number) => grow(stores, { bytes, algorithm: 'minStoreCount' }, current).pieces;
  assert.deepEqual(msc(2 * T), [{ storeId: 'm2', bytes: 2 * T }]);
  assert.deepEqual(msc(4 * T), [{ storeId: 'm2', bytes: 3 * T }, { storeId: 'm1', bytes: 1 * T }]);
  assert.deepEqual(msc(12 * T), [{ storeId: 'm2', bytes: 3 * T }, { storeId: 'm1', bytes: 2 * T }, { storeId: 'm3', bytes: 7 * T }]);
  assert.deepEqual(msc(15 * T), [
    { storeId: 'm2', bytes: 3 * T }, { storeId: 'm1', bytes: 2 * T }, { storeId: 'm3', bytes: 9 * T }, { storeId: 'm4', bytes: 1 * T },
  ]);
  // a new organization (no pieces): most free store that fits
  assert.deepEqual(grow(stores, { bytes: 5 * T, algorithm: 'minStoreCount' }).pieces, [{ storeId: 'm3', bytes: 5 * T }]);
  assert.equal(codeOf(() => msc(20 * T + 1)), 'STORAGE_LIMIT');
});

test('stores that cannot take a mailbox get no new bytes from the algorithms, only when named', () => {
  const stores = [store('full', 10 * T, 0, { maxMailboxes: 5, mailboxCount: 5 }), store('ok', 10 * T, 8 * T)];
  assert.deepEqual(grow(stores, { bytes: 1 * T }).pieces, [{ storeId: 'ok', bytes: 1 * T }]);
  assert.deepEqual(grow(stores, { bytes: 1 * T, sources: [{ storeId: 'full', bytes: 1 * T }] }).pieces, [{ storeId: 'full', bytes: 1 * T }]);
});

test('dedicated: only free stores or the org\'s own; the org\'s own stores are used first', () => {
  // store | capacity | allocated | owner | for orgA
  // d1    | 4 T      | 0         | -     | free
  // d2    | 8 T      | 0         | -     | free
  // d3    | 8 T      | 3 T       | orgB  | held by orgB
  // d4    | 8 T      | 0         | orgB  | held by orgB (owned, empty)
  // sh    | 99 T     | 0         | -     | shared: never for a dedicated allocation
  //
  // orgA 2 T tightPack  → d1 +2 T, claims d1 (best fit among free dedicated stores)
  // orgA 10 T tightPack → d1 +4 T, d2 +6 T, claims both
  // orgA 13 T           → STORAGE_LIMIT (d3/d4 are orgB's; only 12 T free for orgA)
  // orgB 2 T level      → d4 +2 T, no claim (orgB's own stores come first: d4 0.25 after beats d3 0.625)
  // orgA naming d3 / d4 → dedicated_store_held
  const stores = [
    store('d1', 4 * T, 0, { sharing: 'dedicated' }),
    store('d2', 8 * T, 0, { sharing: 'dedicated' }),
    store('d3', 8 * T, 3 * T, { sharing: 'dedicated', ownerOrgId: 'orgB' }),
    store('d4', 8 * T, 0, { sharing: 'dedicated', ownerOrgId: 'orgB' }),
    store('sh', 99 * T, 0),
  ];
  const ded = { sharing: 'dedicated' as const };
  assert.deepEqual(grow(stores, { ...ded, bytes: 2 * T }), { pieces: [{ storeId: 'd1', bytes: 2 * T }], claims: ['d1'] });
  assert.deepEqual(grow(stores, { ...ded, bytes: 10 * T }), {
    pieces: [{ storeId: 'd1', bytes: 4 * T }, { storeId: 'd2', bytes: 6 * T }],
    claims: ['d1', 'd2'],
  });
  assert.equal(codeOf(() => grow(stores, { ...ded, bytes: 13 * T })), 'STORAGE_LIMIT');
  const b = allocateOrganization(stores, { orgId: 'orgB', bytes: 2 * T, sharing: 'dedicated', algorithm: 'level' }, [{ storeId: 'd3', bytes: 3 * T }]);
  assert.deepEqual(b, { pieces: [{ storeId: 'd4', bytes: 2 * T }], claims: [] });
  // orgB's own stores first even though free d2 could take 9 T whole: d3 +5 T (fullest) then d4 +4 T, no store taken
  const b9 = allocateOrganization(stores, { orgId: 'orgB', bytes: 9 * T, sharing: 'dedicated', algorithm: 'tightPack' }, []);
  assert.deepEqual(b9, { pieces: [{ storeId: 'd3', bytes: 5 * T }, { storeId: 'd4', bytes: 4 * T }], claims: [] });
  assert.equal(codeOf(() => grow(stores, { ...ded, bytes: 1 * T, sources: [{ storeId: 'd3', bytes: 1 * T }] })), 'dedicated_store_held');
  assert.equal(codeOf(() => grow(stores, { ...ded, bytes: 1 * T, sources: [{ storeId: 'd4', bytes: 1 * T }] })), 'dedicated_store_held');
});

test('dedicated release → re-allocate to the same org works; to another org only once released (HMC RU6)', () => {
  let stores = [store('d1', 4 * T, 0, { sharing: 'dedicated' })];
  const ded = { sharing: 'dedicated' as const };
  const first = grow(stores, { ...ded, bytes: 4 * T });
  assert.deepEqual(first, { pieces: [{ storeId: 'd1', bytes: 4 * T }], claims: ['d1'] });
  stores = apply(stores, 'orgA', first);
  assert.equal(stores[0]?.ownerOrgId, 'orgA');

  // while orgA holds it: another org naming it is refused, the algorithm finds nothing
  const asB = (r: Partial<AllocationRequest>) => () =>
    allocateOrganization(stores, { orgId: 'orgB', bytes: 1 * T, sharing: 'dedicated', algorithm: 'tightPack', ...r }, []);
  assert.equal(codeOf(asB({ sources: [{ storeId: 'd1', bytes: 1 * T }] })), 'dedicated_store_held');
  assert.equal(codeOf(asB({})), 'STORAGE_LIMIT');

  // orgA releases everything: the piece empties, the engine clears allocation and owner
  const release = shrinkOrganization([{ storeId: 'd1', bytes: 4 * T, chargedBytes: 0 }], 4 * T);
  assert.deepEqual(release, { pieces: [{ storeId: 'd1', bytes: 4 * T }], emptied: ['d1'] });
  stores = stores.map((s) => ({ ...s, allocatedBytes: 0, ownerOrgId: null }));

  // the same org gets it back, by name and by algorithm
  assert.deepEqual(grow(stores, { ...ded, bytes: 4 * T, sources: [{ storeId: 'd1', bytes: 4 * T }] }), {
    pieces: [{ storeId: 'd1', bytes: 4 * T }], claims: ['d1'],
  });
  assert.deepEqual(grow(stores, { ...ded, bytes: 3 * T }).claims, ['d1']);
  // an owner that kept the store with nothing on it also re-allocates it
  const kept = stores.map((s) => ({ ...s, ownerOrgId: 'orgA' }));
  assert.deepEqual(grow(kept, { ...ded, bytes: 4 * T, sources: [{ storeId: 'd1', bytes: 4 * T }] }), {
    pieces: [{ storeId: 'd1', bytes: 4 * T }], claims: [],
  });
  // released, it may go to another org too
  assert.deepEqual(asB({ sources: [{ storeId: 'd1', bytes: 1 * T }] })(), { pieces: [{ storeId: 'd1', bytes: 1 * T }], claims: ['d1'] });
});

test('explicit sources are used as given and checked', () => {
  const stores = [store('x', 10 * T, 4 * T), store('y', 10 * T, 9 * T), store('z', 10 * T, 0, { state: 'offline' }), store('q', 10 * T, 0, { sharing: 'dedicated' })];
  const src = (sources: Piece[], bytes = 3 * T) => () => grow(stores, { bytes, sources });
  assert.deepEqual(src([{ storeId: 'x', bytes: 2 * T }, { storeId: 'y', bytes: 1 * T }])(), {
    pieces: [{ storeId: 'x', bytes: 2 * T }, { storeId: 'y', bytes: 1 * T }], claims: [],
  });
  assert.equal(codeOf(src([{ storeId: 'x', bytes: 2 * T }])), 'invalid_sources'); // sums to 2 T, not 3 T
  assert.equal(codeOf(src([{ storeId: 'x', bytes: 2 * T }, { storeId: 'x', bytes: 1 * T }])), 'invalid_sources');
  assert.equal(codeOf(src([{ storeId: 'nope', bytes: 3 * T }])), 'invalid_sources');
  assert.equal(codeOf(src([{ storeId: 'z', bytes: 3 * T }])), 'invalid_sources'); // offline
  assert.equal(codeOf(src([{ storeId: 'q', bytes: 3 * T }])), 'invalid_sources'); // dedicated store for a shared allocation
  assert.equal(codeOf(src([])), 'invalid_sources');
  assert.equal(codeOf(src([{ storeId: 'y', bytes: 3 * T }])), 'STORAGE_LIMIT'); // y has 1 T free
  assert.equal(codeOf(src([{ storeId: 'x', bytes: 0 }], 0)), 'invalid_request');
});

test('shrink: one store needs no sources; several need them; never below the charge', () => {
  const one: OrgPiece[] = [{ storeId: 's1', bytes: 10 * G, chargedBytes: 4 * G, mailboxCount: 2 }];
  assert.deepEqual(shrinkOrganization(one, 6 * G), { pieces: [{ storeId: 's1', bytes: 6 * G }], emptied: [] });
  assert.equal(codeOf(() => shrinkOrganization(one, 6 * G + 1)), 'STORAGE_LIMIT');

  const two: OrgPiece[] = [...one, { storeId: 's2', bytes: 5 * G, chargedBytes: 0, mailboxCount: 0 }];
  assert.equal(codeOf(() => shrinkOrganization(two, 1 * G)), 'shrink_needs_sources');
  assert.deepEqual(shrinkOrganization(two, 7 * G, [{ storeId: 's1', bytes: 2 * G }, { storeId: 's2', bytes: 5 * G }]), {
    pieces: [{ storeId: 's1', bytes: 2 * G }, { storeId: 's2', bytes: 5 * G }], emptied: ['s2'],
  });
  assert.equal(codeOf(() => shrinkOrganization(two, 7 * G, [{ storeId: 's1', bytes: 7 * G }])), 'STORAGE_LIMIT');
  assert.equal(codeOf(() => shrinkOrganization(two, 7 * G, [{ storeId: 's2', bytes: 5 * G }])), 'invalid_sources');
  assert.equal(codeOf(() => shrinkOrganization(two, 1 * G, [{ storeId: 's9', bytes: 1 * G }])), 'invalid_sources');
  assert.equal(codeOf(() => shrinkOrganization([], 1)), 'STORAGE_LIMIT');
});

test('mailbox placement inside the organization\'s allocation: tightPack and level', () => {
  // piece | piece bytes | charged | uncharged | org mailboxes | store
  // p1    | 10 G        | 9 G     | 1 G       | 9             | active
  // p2    | 10 G        | 4 G     | 6 G       | 4             | active
  // p3    | 20 G        | 6 G     | 14 G      | 6             | active
  // p4    | 10 G        | 0       | 10 G      | 0             | draining → skipped
  // p5    | 10 G        | 0       | 10 G      | 0             | store at maxMailboxes → skipped
  //
  // charge | tightPack (least uncharged that fits) | level (lowest (charged+charge)/bytes)
  // 1 G    | p1 (1 G exact)                        | p3 (0.35; p2 0.5, p1 1.0)
  // 2 G    | p2 (6 G)                              | p3 (0.40; p2 0.6)
  // 7 G    | p3 (only p3 has 7 G)                  | p3
  // 15 G   | STORAGE_LIMIT                         | STORAGE_LIMIT
  const stores = [
    store('p1', 100 * G, 0), store('p2', 100 * G, 0), store('p3', 100 * G, 0),
    store('p4', 100 * G, 0, { state: 'draining' }), store('p5', 100 * G, 0, { maxMailboxes: 10, mailboxCount: 10 }),
  ];
  const pieces: OrgPiece[] = [
    { storeId: 'p1', bytes: 10 * G, chargedBytes: 9 * G, mailboxCount: 9 },
    { storeId: 'p2', bytes: 10 * G, chargedBytes: 4 * G, mailboxCount: 4 },
    { storeId: 'p3', bytes: 20 * G, chargedBytes: 6 * G, mailboxCount: 6 },
    { storeId: 'p4', bytes: 10 * G, chargedBytes: 0, mailboxCount: 0 },
    { storeId: 'p5', bytes: 10 * G, chargedBytes: 0, mailboxCount: 0 },
  ];
  assert.equal(placeMailbox(pieces, stores, 1 * G, 'tightPack'), 'p1');
  assert.equal(placeMailbox(pieces, stores, 1 * G, 'level'), 'p3');
  assert.equal(placeMailbox(pieces, stores, 2 * G, 'tightPack'), 'p2');
  assert.equal(placeMailbox(pieces, stores, 2 * G, 'level'), 'p3');
  assert.equal(placeMailbox(pieces, stores, 7 * G, 'tightPack'), 'p3');
  assert.equal(codeOf(() => placeMailbox(pieces, stores, 15 * G, 'tightPack')), 'STORAGE_LIMIT');
  assert.equal(codeOf(() => placeMailbox(pieces, stores, 15 * G, 'level')), 'STORAGE_LIMIT');
  // level ties on ratio go to the store with fewer of the org's mailboxes
  const tie: OrgPiece[] = [
    { storeId: 'p1', bytes: 10 * G, chargedBytes: 5 * G, mailboxCount: 5 },
    { storeId: 'p2', bytes: 10 * G, chargedBytes: 5 * G, mailboxCount: 1 },
  ];
  assert.equal(placeMailbox(tie, stores, 1 * G, 'level'), 'p2');

  // explicit store
  assert.equal(placeMailbox(pieces, stores, 2 * G, 'tightPack', 'p2'), 'p2');
  assert.equal(codeOf(() => placeMailbox(pieces, stores, 7 * G, 'tightPack', 'p2')), 'STORAGE_LIMIT');
  assert.equal(codeOf(() => placeMailbox(pieces, stores, 1 * G, 'tightPack', 'p5')), 'STORAGE_LIMIT'); // mailbox count
  assert.equal(codeOf(() => placeMailbox(pieces, stores, 1 * G, 'tightPack', 'p4')), 'invalid_sources'); // draining
  assert.equal(codeOf(() => placeMailbox(pieces, stores, 1 * G, 'tightPack', 'elsewhere')), 'invalid_sources');

  // dynamic: on STORAGE_LIMIT the caller grows by the shortfall and asks again
  const shortfall = 15 * G - 14 * G; // p3 has the most uncharged bytes (14 G)
  const grown = allocateOrganization(stores, { orgId: 'orgA', bytes: shortfall, sharing: 'shared', algorithm: 'minStoreCount' }, pieces);
  assert.deepEqual(grown.pieces, [{ storeId: 'p1', bytes: shortfall }]); // own stores, most free (all 100 G stores equal → id)
  const onP3 = allocateOrganization(stores, { orgId: 'orgA', bytes: shortfall, sharing: 'shared', algorithm: 'minStoreCount', sources: [{ storeId: 'p3', bytes: shortfall }] }, pieces);
  const after = pieces.map((p) => ({ ...p, bytes: p.bytes + (onP3.pieces.find((x) => x.storeId === p.storeId)?.bytes ?? 0) }));
  assert.equal(placeMailbox(after, stores, 15 * G, 'tightPack'), 'p3');
});

test('figures stay exact at 2 TiB, 16 TiB and 8 PiB per organization and stores of 1 PiB', () => {
  const TiB = 2 ** 40;
  // 2 TiB is 2^31 KiB: HMC's Int32 overflowed there (RU6). One 1 PiB store, one odd byte already allocated.
  const pb = [store('pb', P, 1)];
  assert.deepEqual(grow(pb, { bytes: 2 * TiB }).pieces, [{ storeId: 'pb', bytes: 2 ** 41 }]);
  assert.deepEqual(grow(pb, { bytes: 16 * TiB, algorithm: 'level' }).pieces, [{ storeId: 'pb', bytes: 2 ** 44 }]);
  assert.deepEqual(grow(pb, { bytes: P - 1, algorithm: 'minStoreCount' }).pieces, [{ storeId: 'pb', bytes: P - 1 }]);
  assert.equal(codeOf(() => grow(pb, { bytes: P })), 'STORAGE_LIMIT'); // one byte short

  // 8 PiB = 2^53 over nine 1 PiB stores, s0 holding 1 byte: tightPack fills s0 (2^50 − 1) first,
  // then seven empty stores whole (ties by id), and the last single byte lands on s8.
  const nine = Array.from({ length: 9 }, (_, i) => store(`s${i}`, P, i === 0 ? 1 : 0));
  const big = grow(nine, { bytes: ORG_MAX_BYTES });
  assert.deepEqual(big.pieces, [
    { storeId: 's0', bytes: P - 1 },
    ...Array.from({ length: 7 }, (_, i) => ({ storeId: `s${i + 1}`, bytes: P })),
    { storeId: 's8', bytes: 1 },
  ]);
  assert.equal(big.pieces.reduce((sum, p) => sum + BigInt(p.bytes), 0n), 2n ** 53n);
  for (const p of big.pieces) assert.ok(Number.isSafeInteger(p.bytes) || p.bytes === 2 ** 53);
  // level and minStoreCount put 8 PiB on the eight empty stores, exactly 1 PiB each
  for (const algorithm of ['level', 'minStoreCount'] as const) {
    const r = grow(nine, { bytes: ORG_MAX_BYTES, algorithm });
    assert.equal(r.pieces.length, 8, algorithm);
    assert.ok(r.pieces.every((p) => p.bytes === P && p.storeId !== 's0'), algorithm);
  }
  // an organization holds at most 2^53: one byte more is refused without rounding it away
  assert.equal(codeOf(() => grow(nine, { bytes: 1 }, [{ storeId: 's1', bytes: ORG_MAX_BYTES }])), 'STORAGE_LIMIT');
  assert.deepEqual(grow(nine, { bytes: 1 }, [{ storeId: 's1', bytes: ORG_MAX_BYTES - 1 }]).pieces, [{ storeId: 's0', bytes: 1 }]);
  assert.equal(codeOf(() => grow(nine, { bytes: ORG_MAX_BYTES + 2 })), 'invalid_request');

  // a mailbox charge at the top of the range: (2^53 − 2^41 + 1) + 2^41 would round in doubles
  const top: OrgPiece[] = [{ storeId: 's1', bytes: ORG_MAX_BYTES, chargedBytes: ORG_MAX_BYTES - 2 ** 41 + 1, mailboxCount: 1 }];
  assert.equal(codeOf(() => placeMailbox(top, nine, 2 ** 41, 'tightPack')), 'STORAGE_LIMIT');
  assert.equal(placeMailbox(top, nine, 2 ** 41 - 1, 'level'), 's1');
  assert.deepEqual(shrinkOrganization(top, 2 ** 41 - 1), { pieces: [{ storeId: 's1', bytes: 2 ** 41 - 1 }], emptied: [] });
  assert.equal(codeOf(() => shrinkOrganization(top, 2 ** 41)), 'STORAGE_LIMIT');
});

// --- properties ---------------------------------------------------------------------------------------

const bytesArb = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.constantFrom(P, P - 1, 2 ** 41, 2 ** 53),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);
const storeArb = fc.record({
  capacityBytes: bytesArb,
  allocFrac: fc.oneof(fc.constant(0), fc.constant(1), fc.constant(1.5), fc.double({ min: 0, max: 1.2, noNaN: true })),
  sharing: fc.constantFrom('shared' as const, 'dedicated' as const),
  state: fc.constantFrom('active' as const, 'active' as const, 'draining' as const, 'offline' as const),
  ownerOrgId: fc.constantFrom(null, null, 'orgA', 'orgB'),
  maxMailboxes: fc.constantFrom(null, null, 3),
  mailboxCount: fc.integer({ min: 0, max: 4 }),
  mine: fc.nat({ max: 2 ** 45 }),
});
const layoutArb = fc.array(storeArb, { minLength: 0, maxLength: 8 }).map((xs) => ({
  stores: xs.map((x, i): StoreState => ({
    id: `s${i}`,
    capacityBytes: x.capacityBytes,
    // mostly within capacity, sometimes over-committed (drift): such a store must get nothing
    allocatedBytes: Math.min(Number.MAX_SAFE_INTEGER, Math.floor(x.capacityBytes * x.allocFrac)),
    sharing: x.sharing,
    state: x.state,
    ownerOrgId: x.sharing === 'dedicated' ? x.ownerOrgId : null,
    maxMailboxes: x.maxMailboxes,
    mailboxCount: x.mailboxCount,
  })),
  current: xs.flatMap((x, i) => (x.mine > 0 && i % 2 === 0 ? [{ storeId: `s${i}`, bytes: x.mine }] : [])),
}));

test('property: an allocation never over-commits a store and places exactly the request, or refuses', () => {
  let placed = 0;
  fc.assert(
    fc.property(
      layoutArb,
      // absolute sizes, or a share of what the eligible stores have free (to hit "exactly fits" often)
      fc.oneof(fc.integer({ min: 1, max: 2 ** 53 }), fc.constantFrom(-1, -2), fc.double({ min: -1, max: 0, noNaN: true })),
      fc.constantFrom('shared' as const, 'dedicated' as const),
      fc.constantFrom('tightPack' as const, 'level' as const, 'minStoreCount' as const),
      ({ stores, current }, size, sharing, algorithm) => {
        const eligible = (s: StoreState) =>
          s.state === 'active' && s.sharing === sharing && (s.maxMailboxes === null || s.mailboxCount < s.maxMailboxes) &&
          (sharing === 'shared' || s.ownerOrgId === 'orgA' || (s.ownerOrgId === null && s.allocatedBytes === 0));
        const room = (s: StoreState) => (BigInt(s.capacityBytes) > BigInt(s.allocatedBytes) ? BigInt(s.capacityBytes) - BigInt(s.allocatedBytes) : 0n);
        const totalFree = stores.filter(eligible).reduce((t, s) => t + room(s), 0n);
        // -1: exactly the free total; -2: one byte more; -f: that share of it
        const share = size === -1 ? totalFree : size === -2 ? totalFree + 1n : size <= 0 ? (totalFree * BigInt(Math.round(-size * 1e6))) / 1000000n : BigInt(size);
        const bytes = Number(share < 1n ? 1n : share > 2n ** 53n ? 2n ** 53n : share);
        const held = current.reduce((t, p) => t + BigInt(p.bytes), 0n);
        const fits = totalFree >= BigInt(bytes) && held + BigInt(bytes) <= 2n ** 53n;
        let r;
        try {
          r = allocateOrganization(stores, { orgId: 'orgA', bytes, sharing, algorithm }, current);
        } catch (e) {
          assert.ok(e instanceof PlacementError && e.code === 'STORAGE_LIMIT', String(e));
          assert.equal(fits, false, 'refused although the eligible stores have room');
          return;
        }
        assert.ok(fits);
        placed++;
        assert.equal(r.pieces.reduce((t, p) => t + BigInt(p.bytes), 0n), BigInt(bytes));
        assert.equal(new Set(r.pieces.map((p) => p.storeId)).size, r.pieces.length);
        for (const p of r.pieces) {
          const s = stores.find((x) => x.id === p.storeId);
          assert.ok(s && eligible(s), `placed on ineligible store ${p.storeId}`);
          assert.ok(Number.isInteger(p.bytes) && p.bytes > 0);
          assert.ok(BigInt(s.allocatedBytes) + BigInt(p.bytes) <= BigInt(s.capacityBytes), `over-committed ${p.storeId}`);
        }
        for (const id of r.claims) assert.equal(stores.find((x) => x.id === id)?.ownerOrgId, null);
      },
    ),
    { numRuns: 3000 },
  );
  assert.ok(placed > 300, `only ${placed} of 3000 runs placed anything`); // the property must not pass by refusing
});

test('property: explicit sources are placed exactly as given or refused with a stable code', () => {
  fc.assert(
    fc.property(
      layoutArb,
      fc.array(fc.record({ i: fc.nat({ max: 9 }), bytes: bytesArb }), { maxLength: 4 }),
      fc.constantFrom('shared' as const, 'dedicated' as const),
      ({ stores }, srcs, sharing) => {
        const sources = srcs.map((s) => ({ storeId: `s${s.i}`, bytes: s.bytes }));
        const bytes = sources.reduce((t, s) => t + s.bytes, 0);
        try {
          const r = allocateOrganization(stores, { orgId: 'orgA', bytes, sharing, algorithm: 'level', sources }, []);
          assert.deepEqual(r.pieces, sources);
          for (const p of r.pieces) {
            const s = stores.find((x) => x.id === p.storeId)!;
            assert.ok(BigInt(s.allocatedBytes) + BigInt(p.bytes) <= BigInt(s.capacityBytes));
            assert.ok(sharing === 'shared' || s.ownerOrgId === null || s.ownerOrgId === 'orgA');
          }
        } catch (e) {
          assert.ok(e instanceof PlacementError, String(e));
          assert.ok(['STORAGE_LIMIT', 'invalid_sources', 'dedicated_store_held', 'invalid_request'].includes(e.code), e.code);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

test('property: a placed mailbox fits its piece; a shrink never goes below the charge', () => {
  const pieceArb = fc.record({ bytes: bytesArb, chargedFrac: fc.double({ min: 0, max: 1, noNaN: true }), mailboxCount: fc.nat(5) });
  fc.assert(
    fc.property(
      layoutArb,
      fc.array(pieceArb, { maxLength: 8 }),
      bytesArb,
      fc.constantFrom('tightPack' as const, 'level' as const),
      ({ stores }, ps, charge, algorithm) => {
        const pieces: OrgPiece[] = ps.slice(0, stores.length).map((p, i) => ({
          storeId: `s${i}`, bytes: p.bytes, chargedBytes: Math.floor(p.bytes * p.chargedFrac), mailboxCount: p.mailboxCount,
        }));
        try {
          const id = placeMailbox(pieces, stores, charge, algorithm);
          const p = pieces.find((x) => x.storeId === id)!;
          const s = stores.find((x) => x.id === id)!;
          assert.ok(BigInt(p.bytes) - BigInt(p.chargedBytes) >= BigInt(charge));
          assert.equal(s.state, 'active');
          assert.ok(s.maxMailboxes === null || s.mailboxCount < s.maxMailboxes);
        } catch (e) {
          assert.ok(e instanceof PlacementError && e.code === 'STORAGE_LIMIT', String(e));
        }
        if (charge === 0 || pieces.length === 0) return;
        const sources = pieces.map((p) => ({ storeId: p.storeId, bytes: Math.max(1, Math.min(charge, p.bytes)) }));
        const total = sources.reduce((t, s) => t + s.bytes, 0);
        try {
          const r = shrinkOrganization(pieces, total, sources);
          for (const x of r.pieces) {
            const p = pieces.find((y) => y.storeId === x.storeId)!;
            assert.ok(BigInt(p.bytes) - BigInt(x.bytes) >= BigInt(p.chargedBytes));
          }
        } catch (e) {
          assert.ok(e instanceof PlacementError && ['STORAGE_LIMIT', 'invalid_sources', 'invalid_request'].includes(e.code), String(e));
        }
      },
    ),
    { numRuns: 1000 },
  );
});
