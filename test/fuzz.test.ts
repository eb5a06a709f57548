import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sql } from 'kysely';
import { DIALECTS } from '../src/store/testing.js';
import { mailEnable } from './mail-support.js';
import { startTestPlatform, type TestPlatform } from './support.js';

/**
 * Property-based fuzzing of every operation in the OpenAPI document: bodies generated from each
 * operation's request schema and then mutated (unknown fields, wrong types, 10 kB strings, unicode,
 * control characters, extreme numbers, deep nesting, null), path parameters that are the caller's own
 * objects or garbage, and junk query strings. Whatever comes in: never a 5xx, every 4xx is
 * problem+json with a string `code`, and a refused call leaves the database as it was.
 *
 * Deterministic by default (fixed seed); HMC_FUZZ_SEED and HMC_FUZZ_RUNS explore further.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

const RUNS = Number(process.env.HMC_FUZZ_RUNS ?? 50);
const SEED = Number(process.env.HMC_FUZZ_SEED ?? 0x484d43);

interface Param { name: string; kind: string | null; schema: any }
interface Op { id: string; method: string; path: string; params: Param[]; query: Param[]; body: any | undefined }

const kindOf = (schema: any): string | null => /^\^([a-z]{3})_/.exec(typeof schema?.pattern === 'string' ? schema.pattern : '')?.[1] ?? null;

function operations(doc: any): Op[] {
  const ops: Op[] = [];
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      const all = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((p: any) => ({ name: p.name, in: p.in, kind: kindOf(p.schema), schema: p.schema ?? {} }));
      ops.push({
        id: `${method.toUpperCase()} ${path}`, method: method.toUpperCase(), path,
        params: all.filter((p) => p.in === 'path'), query: all.filter((p) => p.in === 'query'),
        body: op.requestBody?.content?.['application/json']?.schema,
      });
    }
  }
  return ops;
}

/** Tables a refused call must leave alone, plus fingerprints of in-place changes (updates, revocations). */
const TABLES = [
  'users', 'organizations', 'resellers', 'domains', 'groups', 'group_members', 'tokens', 'requests', 'request_items', 'jobs', 'billing_events', 'audit_log',
  'org_plans', 'mailbox_plans', 'reseller_plans', 'org_subscriptions', 'org_available_plans', 'shared_domains', 'accepted_domains', 'mailboxes', 'contacts',
  'mail_groups', 'mail_group_members', 'group_managers', 'group_senders', 'public_folders', 'public_folder_permissions', 'send_grants', 'mailbox_access', 'auto_replies',
  'addresses', 'address_quarantine', 'mail_servers', 'mailstores', 'store_allocations',
];
const FINGERPRINTS = [
  sql`(SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL)`.as('tokens_revoked'),
  ...['users', 'organizations', 'resellers', 'groups', 'org_plans', 'mailbox_plans', 'org_subscriptions', 'accepted_domains', 'mailboxes', 'contacts', 'mail_groups', 'public_folders',
    'mail_servers', 'mailstores']
    .map((t) => sql`(SELECT coalesce(max(updated_at), 0) FROM ${sql.table(t)})`.as(`${t}_updated`)),
  sql`(SELECT count(*) FROM users WHERE state <> 'active')`.as('users_not_active'),
  sql`(SELECT count(*) FROM organizations WHERE state <> 'active')`.as('organizations_not_active'),
];

// ---- arbitraries ----

const fakeId = (kind: string) => `${kind}_00000000000000000000000000`;
const CONTROL = fc.constantFrom('\u0000', '\u0001', '\b', '\t', '\n', '\r\n', '\u001b[31m', '\u007f', '\u2028', '\u202e', '\ufeff', '\ud800', '\udfff');
const HUGE = fc.oneof(
  fc.integer({ min: 1, max: 10_240 }).map((n) => 'x'.repeat(n)),
  fc.integer({ min: 1, max: 2_000 }).map((n) => 'é😀\u0000ß'.repeat(n)),
);
const NUMBERS = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-1, 0, -0, 0.5, 1e308, -1e308, 2 ** 53 + 1, 2 ** 63, Number.MIN_VALUE));
/** Values of the wrong kind for any field. */
const JUNK: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null), fc.boolean(), NUMBERS,
  fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 20 }), CONTROL, HUGE,
  fc.jsonValue({ maxDepth: 3 }), fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 5 }),
  fc.integer({ min: 20, max: 400 }).map((d) => nest(d)),
);
function nest(depth: number): unknown {
  let v: unknown = 'deep';
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}

interface Fixture { known: Record<string, string>; domain: string; seq: number }

/** A value for a string field: for ids the caller's own objects (or well-shaped strangers), else plausible or random text. */
function stringArb(schema: any, fx: Fixture): fc.Arbitrary<unknown> {
  const kind = kindOf(schema);
  if (kind) return fc.oneof({ weight: 4, arbitrary: fc.constant(fx.known[kind] ?? fakeId(kind)) }, { weight: 1, arbitrary: fc.constant(fakeId(kind)) });
  if (schema.format === 'date-time') {
    return fc.oneof(fc.date({ min: new Date(0), max: new Date('2200-01-01'), noInvalidDate: true }).map((d) => d.toISOString()), fc.constantFrom('2024-13-45T99:99:99Z', 'tomorrow', '+275760-09-13T00:00:00.000Z'));
  }
  const min = schema.minLength ?? 0;
  const max = Math.min(schema.maxLength ?? 64, 64);
  // the document's descriptions say what a free-text field holds; offer values that pass the server's own checks
  const hint = String(schema.description ?? '').toLowerCase();
  const pools: [boolean, string[]][] = [
    [hint.includes('address'), [`f${fx.seq}@${fx.domain}`, `New.Person${fx.seq}@${fx.domain.toUpperCase()}`, `owner@${fx.domain}`, `x@elsewhere.example`]],
    [hint.includes('domain'), [`fz${fx.seq}.example`, `bücher${fx.seq}.example`, fx.domain, `xn--bcher-kva.example`]],
    [hint.includes('hash'), ['{BLF-CRYPT}$2y$04$abcdefghijklmnopqrstuuJ0cGCPWUBd1AnTeO3k4w0uzq3gPRQR6', '{PLAIN}secret', '{SSHA512}short']],
    [hint.includes('password'), ['correct-horse-battery', 'short', 'p'.repeat(73)]],
    [true, [`fuzz${fx.seq}`, `fuzz-${fx.seq}.x`, `Fuzz Name ${fx.seq}`]],
  ];
  const plausible = fc.constantFrom(...pools.find(([hit]) => hit)![1]);
  const shaped = typeof schema.pattern === 'string'
    ? fc.stringMatching(new RegExp(schema.pattern, 'u')).filter((s) => s.length >= min && s.length <= max)
    : fc.string({ minLength: min, maxLength: max });
  return fc.oneof({ weight: 3, arbitrary: plausible }, { weight: 2, arbitrary: shaped });
}

/** Values that mostly satisfy `schema` (an OpenAPI 3.1 / JSON schema as the document shows it). */
function fromSchema(schema: any, fx: Fixture, depth = 0): fc.Arbitrary<unknown> {
  if (!schema || depth > 4) return fc.jsonValue({ maxDepth: 2 });
  if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (Array.isArray(schema.anyOf ?? schema.oneOf)) return fc.oneof(...(schema.anyOf ?? schema.oneOf).map((s: any) => fromSchema(s, fx, depth + 1)));
  switch (schema.type) {
    case 'object': {
      const props = Object.entries<any>(schema.properties ?? {});
      if (props.length === 0) return fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 4 });
      return fc.record(Object.fromEntries(props.map(([k, s]) => [k, fromSchema(s, fx, depth + 1)])), { requiredKeys: schema.required ?? [] });
    }
    case 'array': return fc.array(fromSchema(schema.items, fx, depth + 1), { minLength: schema.minItems ?? 0, maxLength: Math.min(schema.maxItems ?? 4, 4) });
    case 'boolean': return fc.boolean();
    case 'integer': return fc.integer({ min: schema.minimum ?? -5, max: schema.maximum ?? 5000 });
    case 'number': return fc.double({ noNaN: true });
    case 'null': return fc.constant(null);
    case 'string': return stringArb(schema, fx);
    default: return fc.jsonValue({ maxDepth: 2 });
  }
}

/** A generated body with, often, one mutation: an unknown field, a field of the wrong kind, or a junk body. */
function mutated(base: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  const key = fc.oneof(fc.string({ maxLength: 16 }), fc.constantFrom('__proto__', 'constructor', 'id', 'orgId', 'resellerId', 'state', 'role', ''));
  return fc.oneof(
    { weight: 3, arbitrary: base },
    { weight: 2, arbitrary: fc.tuple(base, key, JUNK).map(([b, k, j]) => (isObject(b) ? JSON.parse(JSON.stringify({ ...b, [k]: j })) : b)) },
    {
      weight: 4,
      arbitrary: fc.tuple(base, fc.nat(), JUNK).map(([b, i, j]) => {
        if (!isObject(b)) return j;
        const keys = Object.keys(b);
        return keys.length === 0 ? j : { ...b, [keys[i % keys.length]!]: j };
      }),
    },
    { weight: 1, arbitrary: JUNK },
  );
}
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** How the body goes on the wire: JSON (generated), none, or raw text with some content type. */
const rawBody = fc.record({
  raw: fc.oneof(fc.constantFrom('{', '{"a":', 'null', '[]', '""', '{"__proto__":{"x":1}}', 'login,password\nx@y.z,p'), fc.string({ maxLength: 200 }), HUGE),
  contentType: fc.constantFrom('application/json', 'text/plain', 'text/csv', 'application/xml', 'application/json; charset=latin1', 'multipart/form-data'),
});

/** Percent-encoding that survives lone surrogates (sent as the UTF-8 of U+FFFD, as a browser would). */
function enc(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  }
}

function queryArb(op: Op, fx: Fixture): fc.Arbitrary<string> {
  const own = Object.values(fx.known);
  const value = fc.oneof(
    fc.constantFrom('-1', 'abc', '0', '1', '1000', '1001', '1e3', '1.5', '99999999999999999999', '', 'true', 'null', '%00', '%', '%zz', '\u0000'),
    fc.constantFrom(...own, fakeId('org')),
    fc.string({ maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 10 }), CONTROL, HUGE.map((s) => s.slice(0, 3000)),
  );
  const cursor = fc.oneof(
    fc.constantFrom('junk', '', '%', Buffer.from('{"after":1}').toString('base64url'), Buffer.from('{"after":""}').toString('base64url'),
      Buffer.from('99999999999999999999').toString('base64url'), Buffer.from('-5').toString('base64url'), Buffer.from('{"after":"\u0000"}').toString('base64url'),
      Buffer.from(`{"after":"${'z'.repeat(64)}"}`).toString('base64url'), 'x'.repeat(300)),
    fc.string({ maxLength: 40 }),
  );
  const names = op.query.map((q) => q.name);
  const pair = fc.oneof(
    fc.tuple(fc.constant('limit'), fc.constantFrom('-1', 'abc', '0', '1', '1000', '1001', '1e3', '99999999999999999999', '', '2.5')),
    fc.tuple(fc.constant('cursor'), cursor),
    fc.tuple(fc.constantFrom('wait', 'force'), fc.constantFrom('true', 'false', 'maybe', '', '1')),
    ...(names.length > 0 ? [fc.tuple(fc.constantFrom(...names), value)] : []),
    fc.tuple(fc.string({ minLength: 1, maxLength: 10 }), value),
  );
  // most runs send no query, so the body and path reach the handler instead of stopping at the query's validation
  return fc.oneof({ weight: 2, arbitrary: fc.constant([] as [string, string][]) }, { weight: 1, arbitrary: fc.array(pair, { minLength: 1, maxLength: 4 }) }).map((pairs) =>
    pairs.length === 0 ? '' : `?${pairs.map(([k, v]) => (/^%/.test(v) ? `${enc(k)}=${v}` : `${enc(k)}=${enc(v)}`)).join('&')}`);
}

function pathArb(op: Op, fx: Fixture): fc.Arbitrary<string> {
  const segment = (p: Param) => {
    const own = p.kind && fx.known[p.kind];
    return fc.oneof(
      ...(own ? [{ weight: 6, arbitrary: fc.constant(own) }] : []),
      { weight: 1, arbitrary: fc.constant(fakeId(p.kind ?? 'xyz')) },
      { weight: 1, arbitrary: fc.constantFrom(...Object.values(fx.known)) }, // an id of another kind
      { weight: 2, arbitrary: fc.oneof(fc.constantFrom('', ' ', '..', 'null', '0', `${p.kind ?? 'x'}_`, 'x'.repeat(300)), fc.string({ maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 10 }), CONTROL).map(enc) },
      { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%E0%A4%A', '%00', '%2F', '..%2F..') }, // raw, possibly broken, percent-encoding
    );
  };
  const segs = op.path.split('/').map((s) => {
    const m = /^\{(\w+)\}$/.exec(s);
    if (!m) return fc.constant(s);
    return segment(op.params.find((p) => p.name === m[1]) ?? { name: m[1]!, kind: null, schema: {} });
  });
  return fc.tuple(...segs).map((parts) => parts.join('/'));
}

for (const dialect of DIALECTS) {
  describe(`fuzz every API operation [${dialect}]`, () => {
    let t: TestPlatform;
    let ops: Op[];
    let n = 0;
    before(async () => {
      t = await startTestPlatform(dialect);
      ops = operations(await t.ok('GET', '/api/v1/openapi.json'));
    });
    after(async () => { await t?.close(); });

    async function counts(): Promise<Record<string, number>> {
      const cols = [...TABLES.map((tb) => sql`(SELECT count(*) FROM ${sql.table(tb)})`.as(tb)), ...FINGERPRINTS];
      const row = (await sql<Record<string, unknown>>`SELECT ${sql.join(cols)}`.execute(t.platform.store.db)).rows[0]!;
      return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)]));
    }

    /** Wait until no job is due: follow-up requests have run (jobs scheduled for later, a purge after retention, stay). */
    async function quiesce(): Promise<void> {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const r = await t.platform.store.db.selectFrom('jobs').select((eb) => eb.fn.countAll().as('n'))
          .where('state', 'in', ['queued', 'running']).where('run_at', '<=', Date.now()).executeTakeFirstOrThrow();
        if (Number(r.n) === 0) return;
        assert.ok(Date.now() < deadline, `${r.n} jobs still open`);
        await new Promise((res) => setTimeout(res, 10));
      }
    }

    /** A fresh tenant per operation with one object of every kind, so a destructive success in one operation starves no other. */
    async function fixture(): Promise<{ fx: Fixture; orgAdmin: string }> {
      const seq = ++n;
      const a = await t.tenant(`fz${seq}`);
      const u = await t.call('POST', `/api/v1/organizations/${a.org.id}/users?wait=true`, { body: { login: `owner@${a.domain.name}`, password: 'fuzz-pass-123' } });
      assert.equal(u.statusCode, 201, u.body);
      const group = await t.ok('POST', `/api/v1/organizations/${a.org.id}/groups`, { name: 'team', members: [u.json().id] });
      const spare = await t.ok('POST', '/api/v1/tokens', { name: 'spare', role: 'organization_helpdesk', orgId: a.org.id });
      // Hosted Email: plans, a subscription, the domain accepted, a mailbox, a contact, the group mail-enabled, a folder
      const mail = await mailEnable(t, a, `fz${seq}`);
      const orgUrl = `/api/v1/organizations/${a.org.id}`;
      const mbx = await t.ok('POST', `${orgUrl}/mailboxes`, { kind: 'user', userId: u.json().id, planId: mail.mailboxPlanId });
      const contact = await t.ok('POST', `${orgUrl}/contacts`, { displayName: 'Fuzz Contact', externalAddress: `contact${seq}@elsewhere.example` });
      await t.ok('PUT', `${orgUrl}/groups/${group.id}/mail`, { primaryAddress: `team@${a.domain.name}` });
      const folder = await t.ok('POST', `${orgUrl}/public-folders`, { name: 'projects', issueWarningQuota: 1024, prohibitPostQuota: 2048, maxItemSize: 1024 });
      const shared = await t.ok('POST', '/api/v1/shared-domains', { name: `fz${seq}.shared.example` });
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: `fz${seq}`, lmtpEndpoint: '127.0.0.1:24', imapEndpoint: '127.0.0.1:143', mailRoot: '/srv/mail' });
      const mst = await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'store1', capacityBytes: 2 ** 40 });
      return {
        orgAdmin: a.orgAdmin,
        fx: {
          seq, domain: a.domain.name,
          known: {
            rsl: a.reseller.id, org: a.org.id, dom: a.domain.id, usr: u.json().id, grp: group.id, tok: spare.id, req: u.headers['hmc-request-id'] as string,
            opl: mail.orgPlanId, mpl: mail.mailboxPlanId, mbx: mbx.id, con: contact.id, pfd: folder.id, sdm: shared.id, srv: srv.id, mst: mst.id,
          },
        },
      };
    }

    test('no 5xx, problem+json on every 4xx, no partial write on a refused call', async (tc) => {
      assert.ok(ops.length > 20, `the OpenAPI document lists only ${ops.length} operations`);
      const started = Date.now();
      let calls = 0;
      for (const op of ops) {
        await tc.test(op.id, async (sub) => {
          const { fx, orgAdmin } = await fixture();
          const statuses = new Map<number, number>();
          const who = fc.oneof(
            { weight: 5, arbitrary: fc.constantFrom({ name: 'provider_admin', token: t.adminToken }, { name: 'organization_admin', token: orgAdmin }) },
            { weight: 1, arbitrary: fc.constantFrom({ name: 'no token', token: '' }, { name: 'unknown token', token: 'hmc_not-a-token' }) },
          );
          const body = op.body
            ? fc.oneof({ weight: 6, arbitrary: mutated(fromSchema(op.body, fx)).map((json) => ({ json })) }, { weight: 1, arbitrary: rawBody })
            : fc.oneof({ weight: 4, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: JUNK.map((json) => ({ json })) }, { weight: 1, arbitrary: rawBody });
          // sometimes an Idempotency-Key: reused across runs and operations, empty, or too long
          const key = fc.option(fc.oneof(fc.constantFrom('k1', 'k2', '', 'x'.repeat(201)), fc.stringMatching(/^[\x21-\x7e]{1,40}$/)), { freq: 4 });
          const property = fc.asyncProperty(who, pathArb(op, fx), queryArb(op, fx), body, key, async (caller, path, query, b: any, idempotencyKey) => {
            const url = path + query;
            const sendsBody = op.method !== 'GET' && ('json' in b || 'raw' in b);
            const before = await counts();
            const r = await t.call(op.method, url, {
              token: caller.token,
              ...(idempotencyKey !== null ? { headers: { 'idempotency-key': idempotencyKey } } : {}),
              ...(sendsBody && 'raw' in b ? { raw: b.raw, contentType: b.contentType } : {}),
              ...(sendsBody && 'json' in b ? { raw: JSON.stringify(b.json) ?? 'null', contentType: 'application/json' } : {}),
            });
            calls++;
            statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
            const what = `${op.method} ${url.slice(0, 300)} as ${caller.name}${idempotencyKey !== null ? ` (Idempotency-Key ${idempotencyKey.slice(0, 40)})` : ''} with ${JSON.stringify(b).slice(0, 300)}\n-> ${r.statusCode} ${r.headers['content-type']} ${r.body.slice(0, 500)}`;
            assert.ok(r.statusCode < 500, `server error: ${what}`);
            if (r.statusCode >= 400) {
              assert.match(String(r.headers['content-type'] ?? ''), /^application\/problem\+json/, `4xx without problem+json: ${what}`);
              let problem: any;
              try { problem = JSON.parse(r.body); } catch { assert.fail(`4xx body is not JSON: ${what}`); }
              assert.equal(typeof problem.code, 'string', `4xx without a string code: ${what}`);
              assert.equal(problem.status, r.statusCode, `problem status differs from the HTTP status: ${what}`);
              assert.deepEqual(await counts(), before, `a refused call wrote to the database: ${what}`);
            } else {
              // an accepted change: let its jobs finish so nothing moves under the next run's counts
              const requestId = r.headers['hmc-request-id'];
              if (typeof requestId === 'string') await t.settle(requestId);
              await quiesce(); // and the requests it started (a plan edit's re-apply batch)
            }
          });
          await fc.assert(property, { numRuns: RUNS, seed: SEED + fx.seq, endOnFailure: true, includeErrorInReport: true });
          sub.diagnostic(`statuses ${[...statuses].sort((x, y) => x[0] - y[0]).map(([s, c]) => `${s}x${c}`).join(' ')}`);
        });
      }
      tc.diagnostic(`${calls} calls over ${ops.length} operations in ${Date.now() - started} ms`);
    });
  });
}
