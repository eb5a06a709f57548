import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';

/** The directory through the HTTP API: resellers, organizations, domains, users, groups, CSV import, audit. */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  assert.equal(r.json().code, code, r.body);
}

const requestId = (r: LightMyRequestResponse): string => {
  const id = r.headers['hmc-request-id'];
  assert.equal(typeof id, 'string', `no HMC-Request-Id on ${r.statusCode} ${r.body}`);
  return id as string;
};

for (const dialect of DIALECTS) {
  describe(`directory [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    const home = (orgId: string, userId: string) => join(t.config.filesRoot, orgId, userId);

    /** Create a user and wait until its request is terminal; returns the user view. */
    async function createUser(orgId: string, body: Record<string, unknown>, token?: string): Promise<any> {
      const r = await t.call('POST', `/api/v1/organizations/${orgId}/users?wait=true`, { body, token });
      assert.equal(r.statusCode, 201, r.body);
      return r.json();
    }

    test('resellers: create, list page by page, get, patch, suspend, resume', async () => {
      const created = [];
      for (const n of ['pag-a', 'pag-b', 'pag-c']) {
        const r = await t.call('POST', '/api/v1/resellers', { body: { name: n } });
        assert.equal(r.statusCode, 201, r.body);
        assert.equal(r.headers['hmc-request-state'], 'succeeded');
        requestId(r);
        const v = r.json();
        assert.match(v.id, /^rsl_/);
        assert.equal(v.name, n);
        assert.equal(v.displayName, n);
        assert.equal(v.state, 'active');
        created.push(v.id as string);
      }
      const p1 = await t.ok('GET', '/api/v1/resellers?q=pag-&limit=2');
      assert.equal(p1.items.length, 2);
      assert.equal(typeof p1.next, 'string');
      const p2 = await t.ok('GET', `/api/v1/resellers?q=pag-&limit=2&cursor=${encodeURIComponent(p1.next)}`);
      assert.equal(p2.items.length, 1);
      assert.equal(p2.next, null);
      assert.deepEqual([...p1.items, ...p2.items].map((x: any) => x.id).sort(), [...created].sort());

      const id = created[0]!;
      const got = await t.ok('GET', `/api/v1/resellers/${id}`);
      assert.equal(got.name, 'pag-a');
      const patched = await t.call('PATCH', `/api/v1/resellers/${id}`, { body: { displayName: 'Pag A, Inc.' } });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.equal(patched.json().displayName, 'Pag A, Inc.');
      assert.equal((await t.ok('GET', `/api/v1/resellers/${id}`)).displayName, 'Pag A, Inc.');

      const s = await t.ok('POST', `/api/v1/resellers/${id}/suspend`);
      assert.equal(s.state, 'suspended');
      assert.equal((await t.ok('GET', `/api/v1/resellers/${id}`)).state, 'suspended');
      assertProblem(await t.call('POST', `/api/v1/resellers/${id}/suspend`), 409, 'state_conflict');
      // a suspended reseller takes no new customers
      assertProblem(await t.call('POST', '/api/v1/organizations', { body: { resellerId: id, name: 'pag-a-org' } }), 409, 'state_conflict');
      const suspendedList = await t.ok('GET', '/api/v1/resellers?q=pag-&state=suspended');
      assert.deepEqual(suspendedList.items.map((x: any) => x.id), [id]);
      const res = await t.ok('POST', `/api/v1/resellers/${id}/resume`);
      assert.equal(res.state, 'active');
      assert.equal((await t.ok('GET', `/api/v1/resellers/${id}`)).state, 'active');

      assertProblem(await t.call('GET', '/api/v1/resellers/rsl_00000000000000000000000000'), 404, 'not_found');
      assertProblem(await t.call('POST', '/api/v1/resellers', { body: { name: 'pag-a' } }), 409, 'name_taken');
    });

    test('a reseller with organizations cannot be deleted; without them it can', async () => {
      const rsl = await t.ok('POST', '/api/v1/resellers', { name: 'del-rsl' });
      const org = await t.ok('POST', '/api/v1/organizations', { resellerId: rsl.id, name: 'del-rsl-org' });
      assertProblem(await t.call('DELETE', `/api/v1/resellers/${rsl.id}`), 409, 'reseller_has_organizations');
      assert.equal((await t.ok('GET', `/api/v1/resellers/${rsl.id}`)).state, 'active');

      const d = await t.call('DELETE', `/api/v1/organizations/${org.id}?wait=true`);
      assert.equal(d.statusCode, 200, d.body);
      assertProblem(await t.call('GET', `/api/v1/organizations/${org.id}`), 404, 'not_found');

      const r = await t.call('DELETE', `/api/v1/resellers/${rsl.id}`);
      assert.equal(r.statusCode, 200, r.body);
      assertProblem(await t.call('GET', `/api/v1/resellers/${rsl.id}`), 404, 'not_found');
      const events = await t.ok('GET', `/api/v1/events?reseller=${rsl.id}&limit=1000`);
      assert.deepEqual(events.items.filter((e: any) => e.objectId === rsl.id).map((e: any) => e.event), ['created', 'deleted']);
    });

    test('organizations: create, list by reseller, patch, suspend, resume', async () => {
      const a = await t.ok('POST', '/api/v1/resellers', { name: 'orgs-a' });
      const b = await t.ok('POST', '/api/v1/resellers', { name: 'orgs-b' });
      const r = await t.call('POST', '/api/v1/organizations', { body: { resellerId: a.id, name: 'orgs-a-1', displayName: 'Alpha One' } });
      assert.equal(r.statusCode, 201, r.body);
      const a1 = r.json();
      assert.match(a1.id, /^org_/);
      assert.equal(a1.resellerId, a.id);
      assert.equal(a1.displayName, 'Alpha One');
      const a2 = await t.ok('POST', '/api/v1/organizations', { resellerId: a.id, name: 'orgs-a-2' });
      const b1 = await t.ok('POST', '/api/v1/organizations', { resellerId: b.id, name: 'orgs-b-1' });

      const byA = await t.ok('GET', `/api/v1/organizations?reseller=${a.id}`);
      assert.deepEqual(byA.items.map((o: any) => o.id).sort(), [a1.id, a2.id].sort());
      assert.equal(byA.next, null);
      const byB = await t.ok('GET', `/api/v1/organizations?reseller=${b.id}`);
      assert.deepEqual(byB.items.map((o: any) => o.id), [b1.id]);
      // a reseller admin sees its own organizations and nothing else
      const aAdmin = (await t.ok('POST', '/api/v1/tokens', { name: 'orgs a admin', role: 'reseller_admin', resellerId: a.id })).token;
      const mine = await t.ok('GET', '/api/v1/organizations?limit=1000', undefined, aAdmin);
      assert.deepEqual(mine.items.map((o: any) => o.id).sort(), [a1.id, a2.id].sort());
      assertProblem(await t.call('GET', `/api/v1/organizations/${b1.id}`, { token: aAdmin }), 404, 'not_found');

      const p = await t.call('PATCH', `/api/v1/organizations/${a1.id}`, { body: { displayName: 'Alpha Uno' }, token: aAdmin });
      assert.equal(p.statusCode, 200, p.body);
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a1.id}`)).displayName, 'Alpha Uno');

      assert.equal((await t.ok('POST', `/api/v1/organizations/${a1.id}/suspend`, undefined, aAdmin)).state, 'suspended');
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a1.id}`)).state, 'suspended');
      assertProblem(await t.call('POST', `/api/v1/organizations/${a1.id}/suspend`), 409, 'state_conflict');
      assert.equal((await t.ok('POST', `/api/v1/organizations/${a1.id}/resume`, undefined, aAdmin)).state, 'active');
      const events = await t.ok('GET', `/api/v1/events?org=${a1.id}`);
      assert.deepEqual(events.items.map((e: any) => e.event), ['created', 'suspended', 'resumed']);
    });

    test('moving an organization moves who may see it', async () => {
      const from = await t.tenant('mv-from');
      const to = await t.tenant('mv-to');
      const user = await createUser(from.org.id, { login: 'mover@mv-from.example', password: 'moving-pass-1' });

      const m = await t.call('POST', `/api/v1/organizations/${from.org.id}/move`, { body: { resellerId: to.reseller.id } });
      assert.equal(m.statusCode, 200, m.body);
      assert.equal(m.json().resellerId, to.reseller.id);
      assert.equal((await t.ok('GET', `/api/v1/organizations/${from.org.id}`)).resellerId, to.reseller.id);
      const listed = await t.ok('GET', `/api/v1/organizations?reseller=${to.reseller.id}`);
      assert.deepEqual(listed.items.map((o: any) => o.id).sort(), [from.org.id, to.org.id].sort());

      // the new reseller's admin now sees the organization, its users and domains
      const base = `/api/v1/organizations/${from.org.id}`;
      assert.equal((await t.ok('GET', base, undefined, to.resellerAdmin)).id, from.org.id);
      assert.deepEqual((await t.ok('GET', `${base}/users`, undefined, to.resellerAdmin)).items.map((u: any) => u.id), [user.id]);
      assert.equal((await t.ok('GET', `${base}/users/${user.id}`, undefined, to.resellerAdmin)).login, 'mover@mv-from.example');
      assert.deepEqual((await t.ok('GET', `${base}/domains`, undefined, to.resellerAdmin)).items.map((d: any) => d.id), [from.domain.id]);
      // ...and the old one's admin sees nothing of it any more
      for (const url of [base, `${base}/users`, `${base}/users/${user.id}`, `${base}/domains`, `${base}/domains/${from.domain.id}`]) {
        assertProblem(await t.call('GET', url, { token: from.resellerAdmin }), 404, 'not_found');
      }
      const old = await t.ok('GET', '/api/v1/organizations?limit=1000', undefined, from.resellerAdmin);
      assert.deepEqual(old.items, []);
      // the organization's own admin keeps working
      assert.equal((await t.ok('GET', `${base}/users/${user.id}`, undefined, from.orgAdmin)).id, user.id);
      assertProblem(await t.call('POST', `${base}/move`, { body: { resellerId: to.reseller.id } }), 409, 'state_conflict');
    });

    test('an organization with users is deleted only when forced, through the engine', async () => {
      const { org, orgAdmin } = await t.tenant('force-del');
      const users = [];
      for (const n of ['ann', 'bob', 'cy']) users.push(await createUser(org.id, { login: `${n}@force-del.example`, password: 'force-pass-1' }));
      for (const u of users) assert.ok(existsSync(home(org.id, u.id)), 'home exists before');

      assertProblem(await t.call('DELETE', `/api/v1/organizations/${org.id}`), 409, 'organization_has_users');
      assert.equal((await t.ok('GET', `/api/v1/organizations/${org.id}`)).state, 'active');
      assert.equal((await t.ok('GET', `/api/v1/organizations/${org.id}/users`)).items.length, 3);

      const d = await t.call('DELETE', `/api/v1/organizations/${org.id}?force=true`);
      assert.ok(d.statusCode === 200 || d.statusCode === 202, d.body);
      const req = await t.settle(requestId(d));
      assert.equal(req.state, 'succeeded', JSON.stringify(req.error));
      assert.equal(req.procedure, 'directory.delete_organization');
      assert.ok(req.steps.some((s: any) => s.kind === 'files.converge_home'));
      for (const u of users) assert.ok(!existsSync(home(org.id, u.id)), `home of ${u.login} is gone`);
      assert.ok(!existsSync(join(t.config.filesRoot, org.id)), 'the organization folder is gone');
      assertProblem(await t.call('GET', `/api/v1/organizations/${org.id}`), 404, 'not_found');
      assertProblem(await t.call('GET', `/api/v1/organizations/${org.id}/users/${users[0].id}`), 404, 'not_found');
      // its tokens died with it
      assertProblem(await t.call('GET', '/api/v1/tokens', { token: orgAdmin }), 401, 'unauthorized');

      const events = (await t.ok('GET', `/api/v1/events?org=${org.id}&event=deleted&limit=1000`)).items;
      for (const u of users) assert.ok(events.some((e: any) => e.objectType === 'user' && e.objectId === u.id), `deleted event for ${u.login}`);
      assert.ok(events.some((e: any) => e.objectType === 'organization' && e.objectId === org.id), 'deleted event for the organization');
    });

    test('domains: IDN in A-label form, one organization per domain, not removed while in use', async () => {
      const a = await t.tenant('dom-a');
      const b = await t.tenant('dom-b');
      const r = await t.call('POST', `/api/v1/organizations/${a.org.id}/domains`, { body: { name: 'bücher.example' } });
      assert.equal(r.statusCode, 201, r.body);
      const dom = r.json();
      assert.equal(dom.name, 'xn--bcher-kva.example');
      assert.equal(dom.unicodeName, 'bücher.example');
      assert.deepEqual(await t.ok('GET', `/api/v1/organizations/${a.org.id}/domains/${dom.id}`), dom);
      const list = await t.ok('GET', `/api/v1/organizations/${a.org.id}/domains`);
      assert.deepEqual(list.items.map((d: any) => d.name).sort(), ['dom-a.example', 'xn--bcher-kva.example']);

      // the same domain, in either spelling, cannot go to another organization (nor twice to this one)
      for (const name of ['bücher.example', 'XN--BCHER-KVA.example', 'Bücher.Example.']) {
        assertProblem(await t.call('POST', `/api/v1/organizations/${b.org.id}/domains`, { body: { name } }), 409, 'domain_taken');
      }
      assertProblem(await t.call('POST', `/api/v1/organizations/${a.org.id}/domains`, { body: { name: 'bücher.example' } }), 409, 'domain_taken');
      assertProblem(await t.call('POST', `/api/v1/organizations/${a.org.id}/domains`, { body: { name: 'not a domain' } }), 400, 'invalid_domain');

      const u = await createUser(a.org.id, { login: 'Anna@Bücher.example' });
      assert.equal(u.login, 'anna@xn--bcher-kva.example');
      assert.equal(u.domainId, dom.id);
      assertProblem(await t.call('DELETE', `/api/v1/organizations/${a.org.id}/domains/${dom.id}`), 409, 'domain_in_use');
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a.org.id}/domains/${dom.id}`)).id, dom.id);

      const du = await t.call('DELETE', `/api/v1/organizations/${a.org.id}/users/${u.id}?wait=true`);
      assert.equal(du.statusCode, 200, du.body);
      const dd = await t.call('DELETE', `/api/v1/organizations/${a.org.id}/domains/${dom.id}`);
      assert.equal(dd.statusCode, 200, dd.body);
      assertProblem(await t.call('GET', `/api/v1/organizations/${a.org.id}/domains/${dom.id}`), 404, 'not_found');
      // freed, the name can be taken by another organization
      const again = await t.call('POST', `/api/v1/organizations/${b.org.id}/domains`, { body: { name: 'bücher.example' } });
      assert.equal(again.statusCode, 201, again.body);
    });

    test('users: login on an org domain, unique, password never shown, imported hashes, patch and filters', async () => {
      const a = await t.tenant('usr-a');
      const b = await t.tenant('usr-b');
      const base = `/api/v1/organizations/${a.org.id}/users`;
      assertProblem(await t.call('POST', base, { body: { login: 'x@usr-b.example', password: 'long-enough-1' } }), 400, 'domain_not_in_organization');
      assertProblem(await t.call('POST', base, { body: { login: 'x@nowhere.example', password: 'long-enough-1' } }), 400, 'domain_not_in_organization');

      const password = 'Plain-Text-Pa55';
      const r = await t.call('POST', base, { body: { login: 'Jane@USR-A.example', password, givenName: 'Jane', surname: 'Doe' } });
      assert.equal(r.statusCode, 202, r.body);
      const jane = r.json();
      assert.equal(jane.login, 'jane@usr-a.example');
      assert.equal(jane.hasPassword, true);
      assert.equal(jane.displayName, 'jane');
      assert.equal(jane.enabled, true);
      assert.equal(jane.role, 'user');
      assert.equal((await t.settle(requestId(r))).state, 'succeeded');
      for (const res of [r, await t.call('GET', `${base}/${jane.id}`), await t.call('GET', base)]) {
        assert.ok(!res.body.includes(password), 'the password is never returned');
        assert.ok(!/password"|passwordHash|BLF-CRYPT|\$2[aby]\$/.test(res.body), `no password or hash in ${res.body}`);
      }
      assert.equal((await t.ok('GET', `${base}/${jane.id}`)).hasPassword, true);

      // one address, one recipient: a second Jane is refused, in any case, and no other organization can claim it
      assertProblem(await t.call('POST', base, { body: { login: 'JANE@usr-a.example' } }), 409, 'address_taken');
      assertProblem(await t.call('POST', `/api/v1/organizations/${b.org.id}/users`, { body: { login: 'jane@usr-a.example' } }), 400, 'domain_not_in_organization');
      assert.equal((await t.ok('GET', `/api/v1/organizations/${b.org.id}/users`)).items.length, 0);

      // imported Dovecot hash
      const hash = `{BLF-CRYPT}${bcrypt.hashSync('imported-secret', 4).replace(/^\$2[ab]\$/, '$2y$')}`;
      const imp = await createUser(a.org.id, { login: 'imported@usr-a.example', passwordHash: hash, enabled: false });
      assert.equal(imp.hasPassword, true);
      assert.equal(imp.enabled, false);
      assertProblem(await t.call('POST', base, { body: { login: 'plain@usr-a.example', passwordHash: '{PLAIN}x' } }), 400, 'invalid_password_hash');
      assert.equal((await t.ok('GET', `${base}?q=plain`)).items.length, 0);
      const nopw = await createUser(a.org.id, { login: 'nopass@usr-a.example' });
      assert.equal(nopw.hasPassword, false);

      // PATCH
      const p = await t.call('PATCH', `${base}/${jane.id}`, { body: { displayName: 'Jane Doe', surname: 'Smith', enabled: false } });
      assert.equal(p.statusCode, 200, p.body);
      assert.equal(p.json().displayName, 'Jane Doe');
      const jane2 = await t.ok('GET', `${base}/${jane.id}`);
      assert.equal(jane2.displayName, 'Jane Doe');
      assert.equal(jane2.givenName, 'Jane');
      assert.equal(jane2.surname, 'Smith');
      assert.equal(jane2.enabled, false);
      assert.equal(jane2.login, 'jane@usr-a.example');
      assert.equal((await t.ok('PATCH', `${base}/${jane.id}`, { surname: null })).surname, null);

      // filters
      assert.deepEqual((await t.ok('GET', `${base}?q=ja`)).items.map((u: any) => u.id), [jane.id]);
      assert.deepEqual((await t.ok('GET', `${base}?q=JA`)).items.map((u: any) => u.id), [jane.id]);
      assert.deepEqual((await t.ok('GET', `${base}?q=zz`)).items, []);
      assert.deepEqual((await t.ok('GET', `${base}?enabled=false`)).items.map((u: any) => u.id).sort(), [jane.id, imp.id].sort());
      assert.deepEqual((await t.ok('GET', `${base}?enabled=true`)).items.map((u: any) => u.id), [nopw.id]);
      const pg1 = await t.ok('GET', `${base}?limit=2`);
      assert.equal(pg1.items.length, 2);
      const pg2 = await t.ok('GET', `${base}?limit=2&cursor=${encodeURIComponent(pg1.next)}`);
      assert.equal(pg2.items.length, 1);
      assert.equal(pg2.next, null);
    });

    test('groups with members, only from the same organization', async () => {
      const a = await t.tenant('grp-a');
      const b = await t.tenant('grp-b');
      const u1 = await createUser(a.org.id, { login: 'one@grp-a.example' });
      const u2 = await createUser(a.org.id, { login: 'two@grp-a.example' });
      const foreign = await createUser(b.org.id, { login: 'other@grp-b.example' });
      const base = `/api/v1/organizations/${a.org.id}/groups`;

      const r = await t.call('POST', base, { body: { name: 'sales', displayName: 'Sales', members: [u1.id] }, token: a.orgAdmin });
      assert.equal(r.statusCode, 201, r.body);
      const g = r.json();
      assert.equal(g.displayName, 'Sales');
      const members = async () => (await t.ok('GET', `${base}/${g.id}/members`, undefined, a.orgAdmin)).items.map((m: any) => m.userId).sort();
      assert.deepEqual(await members(), [u1.id]);
      const put = await t.call('PUT', `${base}/${g.id}/members/${u2.id}`, { token: a.orgAdmin });
      assert.equal(put.statusCode, 200, put.body);
      assert.deepEqual(await members(), [u1.id, u2.id].sort());
      assert.equal((await t.call('PUT', `${base}/${g.id}/members/${u2.id}`, { token: a.orgAdmin })).statusCode, 200, 'adding twice is harmless');
      assert.deepEqual(await members(), [u1.id, u2.id].sort());
      assert.equal((await t.call('DELETE', `${base}/${g.id}/members/${u1.id}`, { token: a.orgAdmin })).statusCode, 200);
      assert.deepEqual(await members(), [u2.id]);

      // a member of another organization is refused: in the body, and on the member route
      assertProblem(await t.call('POST', base, { body: { name: 'mixed', members: [u1.id, foreign.id] }, token: a.orgAdmin }), 400, 'member_not_in_organization');
      assertProblem(await t.call('PUT', `${base}/${g.id}/members/${foreign.id}`), 400, 'member_not_in_organization');
      assertProblem(await t.call('PUT', `${base}/${g.id}/members/${foreign.id}`, { token: a.orgAdmin }), 404, 'not_found');
      assert.deepEqual(await members(), [u2.id]);
      assert.deepEqual((await t.ok('GET', `${base}?q=mixed`)).items, []);

      assertProblem(await t.call('POST', base, { body: { name: 'sales' }, token: a.orgAdmin }), 409, 'name_taken');
      assert.equal((await t.call('POST', `/api/v1/organizations/${b.org.id}/groups`, { body: { name: 'sales' } })).statusCode, 201, 'group names are per organization');
      const p = await t.ok('PATCH', `${base}/${g.id}`, { description: 'The sales team' }, a.orgAdmin);
      assert.equal(p.description, 'The sales team');
      assert.equal((await t.ok('GET', `${base}/${g.id}`)).description, 'The sales team');
      assert.equal((await t.call('DELETE', `${base}/${g.id}`, { token: a.orgAdmin })).statusCode, 200);
      assertProblem(await t.call('GET', `${base}/${g.id}`), 404, 'not_found');
    });

    test('CSV import: one request, per-row results, bad rows do not stop the batch; audit never holds a password', async () => {
      const { org } = await t.tenant('csv');
      const password = 'Csv-Secret-Pa55word';
      const csv = [
        'login,displayName,password,enabled',
        `alice@csv.example,Alice,${password},true`,
        `bob@csv.example,Bob,${password},yes`,
        `carol@elsewhere.example,Carol,${password},true`,
        `dave@csv.example,"Dave, Jr.",${password},false`,
        `erin@csv.example,Erin,${password},1`,
      ].join('\n');
      const r = await t.call('POST', `/api/v1/organizations/${org.id}/users/import`, { raw: csv, contentType: 'text/csv' });
      assert.equal(r.statusCode, 202, r.body);
      const id = r.json().request.id as string;
      assert.equal(requestId(r), id);
      assert.equal(r.json().request.items, 5);

      const req = await t.settle(id);
      assert.equal(req.state, 'succeeded', JSON.stringify(req.error));
      assert.equal(req.procedure, 'directory.create_user');
      assert.deepEqual(req.result, { items: 5, succeeded: 4, failed: 1 });
      assert.deepEqual(req.items, { total: 5, done: 5, failed: 1 });

      const items = await t.ok('GET', `/api/v1/requests/${id}/items`);
      assert.equal(items.items.length, 5);
      const bad = items.items.filter((i: any) => i.state === 'failed');
      assert.equal(bad.length, 1);
      assert.equal(bad[0].seq, 2);
      assert.equal(bad[0].error.code, 'domain_not_in_organization');
      assert.equal(items.items.filter((i: any) => i.state === 'succeeded').length, 4);
      const failedOnly = await t.ok('GET', `/api/v1/requests/${id}/items?state=failed`);
      assert.deepEqual(failedOnly.items.map((i: any) => i.seq), [2]);

      const users = (await t.ok('GET', `/api/v1/organizations/${org.id}/users`)).items;
      assert.deepEqual(users.map((u: any) => u.login).sort(), ['alice@csv.example', 'bob@csv.example', 'dave@csv.example', 'erin@csv.example']);
      assert.equal(users.find((u: any) => u.login === 'dave@csv.example').displayName, 'Dave, Jr.');
      assert.equal(users.find((u: any) => u.login === 'dave@csv.example').enabled, false);
      for (const u of users) {
        assert.equal(u.hasPassword, true);
        assert.ok(existsSync(home(org.id, u.id)), `home of ${u.login}`);
      }

      // one more, through the single-user route, so both paths are covered by the audit check
      const single = await t.call('POST', `/api/v1/organizations/${org.id}/users?wait=true`, { body: { login: 'frank@csv.example', password } });
      assert.equal(single.statusCode, 201, single.body);
      const pw = await t.call('POST', `/api/v1/organizations/${org.id}/users/${single.json().id}/password`, { body: { password: `${password}-2` } });
      assert.equal(pw.statusCode, 200, pw.body);

      const audit = await t.call('GET', `/api/v1/audit?org=${org.id}&limit=1000`);
      assert.equal(audit.statusCode, 200, audit.body);
      const entries = audit.json().items;
      const ofImport = entries.filter((e: any) => e.requestId === id);
      assert.ok(ofImport.length >= 5, `audit entries of the import: ${ofImport.length}`);
      assert.ok(ofImport.every((e: any) => e.procedure === 'directory.create_user'));
      assert.ok(ofImport.some((e: any) => e.phase === 'execute' && e.target?.type === 'user'));
      assert.ok(ofImport.some((e: any) => e.phase === 'complete' && e.outcome === 'succeeded'));
      assert.ok(entries.some((e: any) => e.procedure === 'directory.set_password'));

      const raw = [
        audit.body,
        (await t.call('GET', `/api/v1/audit?request=${id}&limit=1000`)).body,
        (await t.call('GET', `/api/v1/requests/${id}`)).body,
        (await t.call('GET', `/api/v1/requests/${id}/items?limit=1000`)).body,
        (await t.call('GET', `/api/v1/requests/${requestId(single)}`)).body,
        (await t.call('GET', `/api/v1/requests/${requestId(pw)}`)).body,
        (await t.call('GET', `/api/v1/requests?org=${org.id}&limit=1000`)).body,
        (await t.call('GET', `/api/v1/events?org=${org.id}&limit=1000`)).body,
      ];
      for (const body of raw) {
        assert.ok(!body.includes(password), `the password leaked: ${body.slice(0, 300)}`);
        assert.ok(!/BLF-CRYPT|\$2[aby]\$/.test(body), 'no hash leaked either');
      }
    });
  });
}
