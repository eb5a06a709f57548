import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform, type Tenant } from './support.js';
import { mailEnable } from './mail-support.js';

/**
 * Tenant isolation, walked over every operation of the OpenAPI document, so a new route is covered
 * without editing this file. Objects are found generically: a path parameter's schema pattern
 * (`^usr_...`) tells its kind, and its value is taken from the collection the path prefix names
 * (`/organizations/{orgId}/users` for `{userId}`), listed with the owner's token.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

interface Param { name: string; kind: string | null; re: RegExp | null; schema: any }
interface Op { id: string; method: string; path: string; params: Param[]; query: Param[]; body: any | undefined }

const ANY_ID = /^[a-z]{3}_[0-9A-HJKMNP-TV-Z]{26}$/;
const kindOf = (schema: any): string | null => /^\^([a-z]{3})_/.exec(typeof schema?.pattern === 'string' ? schema.pattern : '')?.[1] ?? null;

function toParam(p: any): Param {
  const schema = p.schema ?? {};
  return { name: p.name, kind: kindOf(schema), re: typeof schema.pattern === 'string' ? new RegExp(schema.pattern) : null, schema };
}

function operations(doc: any): Op[] {
  const ops: Op[] = [];
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      const all = [...(item.parameters ?? []), ...(op.parameters ?? [])];
      ops.push({
        id: `${method.toUpperCase()} ${path}`, method: method.toUpperCase(), path,
        params: all.filter((p) => p.in === 'path').map(toParam),
        query: all.filter((p) => p.in === 'query').map(toParam),
        body: op.requestBody?.content?.['application/json']?.schema,
      });
    }
  }
  return ops;
}

const fill = (path: string, values: Record<string, string>) => path.replace(/\{(\w+)\}/g, (_, n: string) => encodeURIComponent(values[n] ?? `{${n}}`));

/** Every string under an `id` key (and `userId` of memberships) anywhere in a JSON value. */
function collectIds(v: unknown, out: Set<string>): Set<string> {
  if (Array.isArray(v)) for (const x of v) collectIds(x, out);
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if ((k === 'id' || k === 'userId') && typeof x === 'string' && ANY_ID.test(x)) out.add(x);
      else collectIds(x, out);
    }
  }
  return out;
}

/** The first id in a list answer that matches `re`: an item's `id`, else any of its top-level values. */
function firstMatching(body: any, re: RegExp): string | undefined {
  for (const item of Array.isArray(body?.items) ? body.items : []) {
    if (typeof item?.id === 'string' && re.test(item.id)) return item.id;
    for (const v of Object.values(item ?? {})) if (typeof v === 'string' && re.test(v)) return v;
  }
  return undefined;
}

/** A value for a schema that passes its checks; id fields take the object of that kind from `ids`. */
function plausible(schema: any, n: number, ids: Record<string, string> = {}): unknown {
  if (!schema) return {};
  if (schema.enum) return schema.enum[0];
  if (schema.const !== undefined) return schema.const;
  if (schema.anyOf) return plausible(schema.anyOf[0], n, ids);
  switch (schema.type) {
    case 'boolean': return true;
    case 'integer': case 'number': return schema.minimum ?? 1;
    case 'array': return Array.from({ length: schema.minItems ?? 0 }, () => plausible(schema.items, n, ids));
    case 'object': {
      // the required fields, and optional ones in order until minProperties is met
      const keys: string[] = [...(schema.required ?? [])];
      for (const k of Object.keys(schema.properties ?? {})) if (keys.length < (schema.minProperties ?? 0) && !keys.includes(k)) keys.push(k);
      return Object.fromEntries(keys.map((k) => [k, plausible(schema.properties?.[k], n, ids)]));
    }
    case 'string': {
      if (schema.format === 'date-time') return new Date(Date.now() + 86_400_000).toISOString();
      const kind = kindOf(schema);
      if (kind && ids[kind]) return ids[kind];
      const re = typeof schema.pattern === 'string' ? new RegExp(schema.pattern, 'u') : null;
      return [`walk${n}`, `Walk ${n}`, `walk${n}@walk.example`].find((s) => !re || re.test(s)) ?? `walk${n}`;
    }
    default: return null;
  }
}

/** The values an enumerated schema allows (enum, const, anyOf of those), or null. */
function choices(schema: any): unknown[] | null {
  if (schema?.enum) return schema.enum;
  if (schema?.anyOf && schema.anyOf.every((s: any) => s.enum || s.const !== undefined)) return schema.anyOf.flatMap((s: any) => s.enum ?? [s.const]);
  return null;
}

for (const dialect of DIALECTS) {
  describe(`tenant isolation over every API operation [${dialect}]`, () => {
    let t: TestPlatform;
    let ops: Op[];
    let seq = 0;
    before(async () => {
      t = await startTestPlatform(dialect);
      ops = operations((await t.ok('GET', '/api/v1/openapi.json')));
      assert.ok(ops.length > 20, `the OpenAPI document lists only ${ops.length} operations`);
    });
    after(async () => { await t?.close(); });

    const as = (method: string, url: string, token: string, body?: unknown) => t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });

    /** A tenant with an object of every kind: user, group (with the user as member), an extra token, a request. */
    async function richTenant(name: string) {
      const base: Tenant = await t.tenant(`${name}${++seq}`);
      const orgUrl = `/api/v1/organizations/${base.org.id}`;
      const u = await t.call('POST', `${orgUrl}/users?wait=true`, { body: { login: `someone@${base.domain.name}`, password: 'walk-pass-123' } });
      assert.equal(u.statusCode, 201, u.body);
      const user = u.json();
      const requestId = u.headers['hmc-request-id'] as string;
      const group = await t.ok('POST', `${orgUrl}/groups`, { name: 'staff', members: [user.id] });
      const extra = await t.ok('POST', '/api/v1/tokens', { name: `${name} helpdesk`, role: 'organization_helpdesk', orgId: base.org.id });
      const userToken = await t.ok('POST', '/api/v1/tokens', { name: `${name} user`, role: 'user', orgId: base.org.id, userId: user.id });
      // Hosted Email objects: plans of its own (a provider ceiling plan for its reseller, reseller plans), a user
      // mailbox, a contact, the group mail-enabled, a public folder, and a shared domain of the provider's
      const mail = await mailEnable(t, base, `${name}${seq}`);
      const mbx = await t.ok('POST', `${orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: user.id, planId: mail.mailboxPlanId });
      const contact = await t.ok('POST', `${orgUrl}/contacts`, { displayName: 'Outside Contact', externalAddress: `contact${seq}@elsewhere.example` });
      await t.ok('PUT', `${orgUrl}/groups/${group.id}/mail`, { primaryAddress: `staff@${base.domain.name}` });
      const folder = await t.ok('POST', `${orgUrl}/public-folders`, { name: 'projects', issueWarningQuota: 1024, prohibitPostQuota: 2048, maxItemSize: 1024 });
      const shared = await t.ok('POST', '/api/v1/shared-domains', { name: `${name}${seq}.shared.example` });
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: `${name}${seq}`, lmtpEndpoint: '127.0.0.1:24', imapEndpoint: '127.0.0.1:143', mailRoot: '/srv/mail' });
      const mst = await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'store1', capacityBytes: 2 ** 40 });
      const known: Record<string, string> = {
        rsl: base.reseller.id, org: base.org.id, dom: base.domain.id, usr: user.id, grp: group.id, tok: extra.id, req: requestId,
        opl: mail.orgPlanId, mpl: mail.mailboxPlanId, mbx: mbx.id, con: contact.id, pfd: folder.id,
      };
      // provider objects (a shared domain any organization may use, a mail server and store): found for paths, never "another tenant's"
      const provider: Record<string, string> = { sdm: shared.id, srv: srv.id, mst: mst.id };
      return { ...base, user, group, extra, userToken, requestId, known: { ...provider, ...known }, owned: known };
    }
    type Rich = Awaited<ReturnType<typeof richTenant>>;

    /**
     * Values for an operation's path parameters, owned by `owner`: each from the collection its path prefix
     * names, listed with `token`; `known` (by id prefix) when that list is not there or has no match;
     * `override` (by id prefix) wins over both.
     */
    async function discover(op: Op, token: string, known: Record<string, string>, override: Record<string, string> = {}): Promise<Record<string, string>> {
      const values: Record<string, string> = {};
      const segs = op.path.split('/');
      for (let i = 0; i < segs.length; i++) {
        const m = /^\{(\w+)\}$/.exec(segs[i]!);
        if (!m) continue;
        const p = op.params.find((x) => x.name === m[1]);
        assert.ok(p, `${op.id}: path parameter ${m[1]} is not described in the OpenAPI document`);
        if (p.kind && override[p.kind]) {
          values[p.name] = override[p.kind]!;
          continue;
        }
        const list = await as('GET', fill(segs.slice(0, i).join('/'), values), token);
        const found = list.statusCode === 200 && p.re ? firstMatching(list.json(), p.re) : undefined;
        const value = found ?? (p.kind ? known[p.kind] : undefined);
        assert.ok(value, `${op.id}: no object found for {${p.name}} (GET ${segs.slice(0, i).join('/')} -> ${list.statusCode}; pattern ${p.schema.pattern ?? 'none'})`);
        values[p.name] = value;
      }
      return values;
    }

    /** What the owner sees through every GET: the answers, to prove later that nothing changed. */
    async function snapshot(owner: Rich): Promise<Map<string, { status: number; body: string }>> {
      const out = new Map<string, { status: number; body: string }>();
      for (const op of ops.filter((o) => o.method === 'GET')) {
        const url = fill(op.path, await discover(op, owner.resellerAdmin, owner.known));
        const r = await as('GET', url, owner.resellerAdmin);
        out.set(url, { status: r.statusCode, body: r.body });
      }
      return out;
    }

    async function assertUnchanged(owner: Rich, before: Map<string, { status: number; body: string }>, what: string) {
      const now = await snapshot(owner);
      for (const [url, was] of before) {
        const is = now.get(url);
        assert.deepEqual(is, was, `${what}: GET ${url} as the owner changed:\n was ${was.status} ${was.body.slice(0, 400)}\n now ${is?.status} ${is?.body.slice(0, 400)}`);
      }
      // the owner's tokens still work
      for (const token of [owner.orgAdmin, owner.resellerAdmin, owner.userToken.token]) {
        const r = await as('GET', `/api/v1/organizations/${owner.org.id}`, token);
        assert.equal(r.statusCode, 200, `${what}: a token of the owner stopped working: ${r.body}`);
      }
    }

    /** Every id the owner's GETs show, plus its known objects. */
    async function idsOf(owner: Rich): Promise<Set<string>> {
      const ids = new Set(Object.values(owner.known));
      for (const v of (await snapshot(owner)).values()) {
        if (v.status !== 200) continue;
        let parsed: unknown;
        try { parsed = JSON.parse(v.body); } catch { parsed = undefined; }
        // JSON: the ids of objects (`id`, `userId` keys); other answers (CSV exports): every id-shaped value
        if (parsed !== undefined) collectIds(parsed, ids);
        else for (const m of v.body.matchAll(/\b[a-z]{3}_[0-9A-HJKMNP-TV-Z]{26}\b/g)) ids.add(m[0]);
      }
      return ids;
    }

    function assertNotFound(r: { statusCode: number; headers: Record<string, unknown>; body: string }, label: string, failures: string[]) {
      const ct = String(r.headers['content-type'] ?? '');
      let code: unknown;
      try { code = JSON.parse(r.body).code; } catch { /* reported below */ }
      if (r.statusCode !== 404 || !ct.startsWith('application/problem+json') || code !== 'not_found') {
        failures.push(`${label}: expected 404 problem+json not_found, got ${r.statusCode} ${ct} ${r.body.slice(0, 300)}`);
      }
    }

    test('every operation on another tenant\'s objects answers 404 and changes nothing', async () => {
      const a = await richTenant('walka');
      const b = await richTenant('walkb');
      const callers = { 'A organization_admin': a.orgAdmin, 'A reseller_admin': a.resellerAdmin, 'A user': a.userToken.token };
      const before = await snapshot(b);
      const failures: string[] = [];
      let walked = 0;
      for (const op of ops.filter((o) => o.params.length > 0)) {
        const values = await discover(op, b.resellerAdmin, b.known);
        const url = fill(op.path, values);
        for (const [who, token] of Object.entries(callers)) {
          const r = await as(op.method, url, token, op.body ? {} : undefined);
          assertNotFound(r, `${op.id} as ${who} on B's ${url}`, failures);
        }
        walked++;
      }
      assert.equal(failures.length, 0, `tenant A reached tenant B's objects:\n${failures.join('\n')}`);
      assert.ok(walked >= 20, `only ${walked} operations with path parameters were walked`);
      await assertUnchanged(b, before, 'after the walk');
    });

    test('an Idempotency-Key the caller already used opens nothing of another tenant', async () => {
      const a = await richTenant('keya');
      const b = await richTenant('keyb');
      const callers = { 'A organization_admin': a.orgAdmin, 'A reseller_admin': a.resellerAdmin, 'A user': a.userToken.token };
      const KEY = 'walk-used-key';
      for (const [who, token] of Object.entries(callers)) {
        const r = await t.call('POST', '/api/v1/tokens', { token, headers: { 'idempotency-key': KEY }, body: { name: `${who} self`, role: 'user', orgId: a.org.id, userId: a.user.id } });
        assert.equal(r.statusCode, 201, `${who} could not make its keyed request: ${r.body}`);
      }
      const before = await snapshot(b);
      const failures: string[] = [];
      for (const op of ops.filter((o) => o.params.length > 0 && o.method !== 'GET')) {
        const url = fill(op.path, await discover(op, b.resellerAdmin, b.known));
        for (const [who, token] of Object.entries(callers)) {
          // a body that passes validation, so the call reaches the engine and its key lookup
          const r = await t.call(op.method, url, { token, headers: { 'idempotency-key': KEY }, ...(op.body ? { body: plausible(op.body.anyOf?.find((s: any) => s.type === 'object') ?? op.body, ++seq, a.known) } : {}) });
          if (r.statusCode < 400 || r.statusCode >= 500 || !String(r.headers['content-type']).startsWith('application/problem+json')) {
            failures.push(`${op.id} as ${who} on B's ${url} with a used Idempotency-Key: ${r.statusCode} ${r.body.slice(0, 300)}`);
          }
        }
      }
      assert.equal(failures.length, 0, `a used Idempotency-Key let tenant A act on tenant B:\n${failures.join('\n')}`);
      await assertUnchanged(b, before, 'after the keyed calls');
    });

    test('lists show none of another tenant\'s objects, even when filtered by its ids', async () => {
      const a = await richTenant('lista');
      const b = await richTenant('listb');
      const bIds = await idsOf(b);
      const aIds = await idsOf(a);
      const shared = [...bIds].filter((id) => aIds.has(id));
      assert.equal(shared.length, 0, `both tenants see ${shared.join(', ')}: one sees the other's objects`);
      const callers = { 'A organization_admin': a.orgAdmin, 'A reseller_admin': a.resellerAdmin, 'A user': a.userToken.token };
      const failures: string[] = [];
      let lists = 0;
      for (const op of ops.filter((o) => o.method === 'GET')) {
        // parameterless lists as they are, and with every id filter set to B's object of that kind;
        // lists under a path (users of an org) with A's own objects in the path and B's ids as filters
        const own = op.params.length > 0 ? await discover(op, a.resellerAdmin, a.known) : {};
        const urls = [fill(op.path, own)];
        for (const q of op.query) if (q.kind && b.known[q.kind]) urls.push(`${fill(op.path, own)}?${q.name}=${b.known[q.kind]}`);
        for (const url of urls) {
          for (const [who, token] of Object.entries(callers)) {
            const r = await as('GET', url, token);
            if (r.statusCode >= 500) failures.push(`${op.id} as ${who}: GET ${url} -> ${r.statusCode} ${r.body.slice(0, 300)}`);
            if (r.statusCode !== 200) continue;
            const leaked = [...bIds].filter((id) => r.body.includes(id));
            if (leaked.length > 0) failures.push(`${op.id} as ${who}: GET ${url} shows B's ${leaked.join(', ')}`);
            lists++;
          }
        }
      }
      assert.equal(failures.length, 0, `tenant A saw tenant B's objects:\n${failures.join('\n')}`);
      assert.ok(lists > 20, `only ${lists} list answers were checked`);
    });

    test('bodies naming another tenant\'s objects are refused and change nothing', async () => {
      const a = await richTenant('bodya');
      const b = await richTenant('bodyb');
      const before = await snapshot(b);
      const failures: string[] = [];
      let tried = 0;
      for (const op of ops.filter((o) => o.body && o.method !== 'GET')) {
        const variants = op.body.anyOf ?? [op.body];
        for (const schema of variants) {
          const props: Record<string, any> = schema?.properties ?? {};
          // fields that name an object by id: `resellerId: ^rsl_`, `members: [^usr_]`
          const refs = Object.entries(props)
            .map(([k, s]) => ({ k, kind: kindOf(s) ?? kindOf(s?.items), array: s?.type === 'array' }))
            .filter((f) => f.kind && b.owned[f.kind]);
          if (refs.length === 0) continue;
          const enums = (schema.required ?? []).map((k: string) => ({ k, values: choices(props[k]) })).filter((e: any) => e.values);
          const own = op.params.length > 0 ? await discover(op, a.resellerAdmin, a.known) : {};
          const url = fill(op.path, own);
          for (const ref of refs) {
            // one body per value of each required enumerated field (a token's role), so the reference is reached
            const bodies: Record<string, unknown>[] = [];
            const base = { ...(plausible(schema, ++seq) as object), [ref.k]: ref.array ? [b.known[ref.kind!]] : b.known[ref.kind!] };
            for (const k of Object.keys(base)) if (k !== ref.k && refs.some((r) => r.k === k)) delete (base as any)[k];
            if (enums.length === 0) bodies.push(base);
            for (const e of enums) for (const v of e.values) bodies.push({ ...base, [e.k]: v });
            for (const body of bodies) {
              for (const [who, token] of Object.entries({ 'A organization_admin': a.orgAdmin, 'A reseller_admin': a.resellerAdmin })) {
                const r = await as(op.method, url, token, body);
                tried++;
                if (r.statusCode < 400 || r.statusCode >= 500) {
                  failures.push(`${op.id} as ${who}: ${op.method} ${url} ${JSON.stringify(body)} -> ${r.statusCode} ${r.body.slice(0, 300)}`);
                }
              }
            }
          }
        }
      }
      assert.equal(failures.length, 0, `tenant A used tenant B's objects in a body:\n${failures.join('\n')}`);
      assert.ok(tried > 10, `only ${tried} bodies with references were tried`);
      await assertUnchanged(b, before, 'after the bodies');
    });

    test('a user-role token sees and touches no other user of its own organization', async () => {
      const a = await richTenant('usera');
      const orgUrl = `/api/v1/organizations/${a.org.id}`;
      const other = await t.call('POST', `${orgUrl}/users?wait=true`, { token: a.orgAdmin, body: { login: `other@${a.domain.name}`, password: 'walk-pass-456' } });
      assert.equal(other.statusCode, 201, other.body);
      const victim = other.json();
      const victimToken = await t.ok('POST', '/api/v1/tokens', { name: 'victim self', role: 'user', orgId: a.org.id, userId: victim.id }, a.orgAdmin);
      const victimIds: Record<string, string> = { usr: victim.id, tok: victimToken.id, req: other.headers['hmc-request-id'] as string };
      const me = a.userToken.token;
      const victimView = async () => (await as('GET', `${orgUrl}/users/${victim.id}`, a.orgAdmin)).body;
      const was = await victimView();

      const failures: string[] = [];
      for (const op of ops) {
        const touchesVictim = op.params.some((p) => p.kind && victimIds[p.kind]);
        if (!touchesVictim && op.method !== 'GET') continue; // the user's own writes are not what this test is about
        const values = op.params.length > 0 ? await discover(op, a.resellerAdmin, a.known, victimIds) : {};
        const url = fill(op.path, values);
        const r = await as(op.method, url, me, op.body ? {} : undefined);
        if (touchesVictim) assertNotFound(r, `${op.id} as A user on ${url}`, failures);
        else if (r.statusCode === 200) {
          const seen = Object.values(victimIds).filter((id) => r.body.includes(id));
          if (seen.length > 0) failures.push(`${op.id} as A user: GET ${url} shows another user's ${seen.join(', ')}`);
        } else if (r.statusCode >= 500) failures.push(`${op.id} as A user: GET ${url} -> ${r.statusCode} ${r.body.slice(0, 300)}`);
      }
      assert.equal(failures.length, 0, `a user reached another user of its organization:\n${failures.join('\n')}`);
      assert.equal(await victimView(), was, 'the other user changed');
      const still = await as('GET', `${orgUrl}/users/${victim.id}`, victimToken.token);
      assert.equal(still.statusCode, 200, `the other user's own token stopped working: ${still.body}`);
      const mine = await as('GET', `${orgUrl}/users`, me);
      assert.equal(mine.statusCode, 200, mine.body);
      assert.deepEqual(mine.json().items.map((u: any) => u.id), [a.user.id], 'a user lists only itself');
    });
  });
}
