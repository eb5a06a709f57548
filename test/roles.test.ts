import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';

/** Roles: grant only what you hold, only inside your scope; helpdesk reads and resets, never deletes; users see themselves. */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  assert.equal(r.json().code, code, r.body);
}

for (const dialect of DIALECTS) {
  describe(`roles [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    async function createUser(orgId: string, body: Record<string, unknown>): Promise<any> {
      const r = await t.call('POST', `/api/v1/organizations/${orgId}/users?wait=true`, { body });
      assert.equal(r.statusCode, 201, r.body);
      return r.json();
    }

    async function token(body: Record<string, unknown>, by?: string): Promise<{ id: string; token: string }> {
      const r = await t.call('POST', '/api/v1/tokens', { body: { name: `${body.role} token`, ...body }, token: by });
      assert.equal(r.statusCode, 201, r.body);
      const v = r.json();
      assert.match(v.token, /^hmc_/);
      return { id: v.id, token: v.token };
    }

    test('an organization admin grants only roles it holds, only in its organization', async () => {
      const a = await t.tenant('grant-a');
      const b = await t.tenant('grant-b');
      const u = await createUser(a.org.id, { login: 'self@grant-a.example' });

      const admin2 = await token({ role: 'organization_admin', orgId: a.org.id }, a.orgAdmin);
      const helpdesk = await token({ role: 'organization_helpdesk', orgId: a.org.id }, a.orgAdmin);
      const user = await token({ role: 'user', orgId: a.org.id, userId: u.id }, a.orgAdmin);
      // each works, at its own strength
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a.org.id}`, undefined, admin2.token)).id, a.org.id);
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a.org.id}/users`, undefined, helpdesk.token)).items.length, 1);
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a.org.id}/users/${u.id}`, undefined, user.token)).id, u.id);
      const shown = await t.ok('GET', `/api/v1/tokens/${helpdesk.id}`, undefined, a.orgAdmin);
      assert.equal(shown.role, 'organization_helpdesk');
      assert.equal(shown.orgId, a.org.id);
      assert.equal(shown.token, undefined, 'a token is shown once, at creation');

      // not a stronger role, wherever it would sit
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'up', role: 'reseller_admin', resellerId: a.reseller.id }, token: a.orgAdmin }), 403, 'role_not_grantable');
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'up', role: 'provider_admin' }, token: a.orgAdmin }), 403, 'role_not_grantable');
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'up', role: 'reseller_helpdesk', resellerId: a.reseller.id }, token: a.orgAdmin }), 403, 'role_not_grantable');
      // not in another organization: that organization does not exist for it
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'out', role: 'organization_admin', orgId: b.org.id }, token: a.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'out', role: 'user', orgId: b.org.id, userId: u.id }, token: a.orgAdmin }), 404, 'not_found');
      // the helpdesk it made cannot make an admin either, neither as a token nor as a user's role
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'up', role: 'organization_admin', orgId: a.org.id }, token: helpdesk.token }), 403, 'role_not_grantable');
      assertProblem(await t.call('POST', `/api/v1/organizations/${a.org.id}/users`, { body: { login: 'boss@grant-a.example', role: 'organization_admin' }, token: helpdesk.token }), 403, 'forbidden');
      // the user token cannot grant anything above itself
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'up', role: 'organization_helpdesk', orgId: a.org.id }, token: user.token }), 403, 'role_not_grantable');
      const self2 = await token({ role: 'user', orgId: a.org.id, userId: u.id }, user.token);
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a.org.id}/users/${u.id}`, undefined, self2.token)).id, u.id);
    });

    test('a reseller helpdesk cannot make admins', async () => {
      const a = await t.tenant('rhd');
      const hd = await token({ role: 'reseller_helpdesk', resellerId: a.reseller.id });
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'x', role: 'organization_admin', orgId: a.org.id }, token: hd.token }), 403, 'role_not_grantable');
      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'x', role: 'reseller_admin', resellerId: a.reseller.id }, token: hd.token }), 403, 'role_not_grantable');
      // a helpdesk role it covers is fine
      const ohd = await token({ role: 'organization_helpdesk', orgId: a.org.id }, hd.token);
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a.org.id}/users`, undefined, ohd.token)).items.length, 0);
      // it reads, but does not change or delete
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a.org.id}`, undefined, hd.token)).id, a.org.id);
      assertProblem(await t.call('DELETE', `/api/v1/organizations/${a.org.id}`, { token: hd.token }), 403, 'forbidden');
      assertProblem(await t.call('POST', `/api/v1/organizations/${a.org.id}/suspend`, { token: hd.token }), 403, 'forbidden');
      assert.equal((await t.ok('GET', `/api/v1/organizations/${a.org.id}`)).state, 'active');
    });

    test('an organization helpdesk reads and resets passwords, never creates or deletes', async () => {
      const a = await t.tenant('ohd');
      const u = await createUser(a.org.id, { login: 'worker@ohd.example', password: 'first-pass-1' });
      const boss = await createUser(a.org.id, { login: 'boss@ohd.example', password: 'boss-pass-1', role: 'organization_admin' });
      const hd = (await token({ role: 'organization_helpdesk', orgId: a.org.id }, a.orgAdmin)).token;
      const base = `/api/v1/organizations/${a.org.id}/users`;

      assert.deepEqual((await t.ok('GET', base, undefined, hd)).items.map((x: any) => x.id).sort(), [u.id, boss.id].sort());
      assert.equal((await t.ok('GET', `${base}/${u.id}`, undefined, hd)).login, 'worker@ohd.example');
      const before = (await t.ok('GET', `${base}/${u.id}`)).updatedAt;
      const pw = await t.call('POST', `${base}/${u.id}/password`, { body: { password: 'reset-by-helpdesk' }, token: hd });
      assert.equal(pw.statusCode, 200, pw.body);
      assert.equal(pw.json().hasPassword, true);
      assert.ok(!pw.body.includes('reset-by-helpdesk'));
      const audit = (await t.ok('GET', `/api/v1/audit?request=${pw.headers['hmc-request-id']}`)).items;
      assert.ok(audit.some((e: any) => e.procedure === 'directory.set_password' && e.role === 'organization_helpdesk'));
      assert.ok((await t.ok('GET', `${base}/${u.id}`)).updatedAt >= before);

      assertProblem(await t.call('DELETE', `${base}/${u.id}`, { token: hd }), 403, 'forbidden');
      assertProblem(await t.call('POST', base, { body: { login: 'new@ohd.example' }, token: hd }), 403, 'forbidden');
      assertProblem(await t.call('PATCH', `${base}/${u.id}`, { body: { displayName: 'Nope' }, token: hd }), 403, 'forbidden');
      assertProblem(await t.call('POST', `/api/v1/organizations/${a.org.id}/groups`, { body: { name: 'nope' }, token: hd }), 403, 'forbidden');
      const still = await t.ok('GET', `${base}/${u.id}`);
      assert.equal(still.state, 'active');
      assert.equal(still.displayName, 'worker');
      assert.deepEqual((await t.ok('GET', `${base}?q=new`)).items, []);

      // an admin's password is out of a helpdesk's reach
      assertProblem(await t.call('POST', `${base}/${boss.id}/password`, { body: { password: 'hijacked-pass' }, token: hd }), 403, 'role_not_grantable');
      assert.equal((await t.call('POST', `${base}/${boss.id}/password`, { body: { password: 'admin-did-this' }, token: a.orgAdmin })).statusCode, 200);
    });

    test('a user token sees and changes only itself', async () => {
      const a = await t.tenant('self');
      const me = await createUser(a.org.id, { login: 'me@self.example', password: 'my-first-pass' });
      const other = await createUser(a.org.id, { login: 'other@self.example', password: 'other-pass-1' });
      const tok = (await token({ role: 'user', orgId: a.org.id, userId: me.id }, a.orgAdmin)).token;
      const base = `/api/v1/organizations/${a.org.id}/users`;

      const got = await t.ok('GET', `${base}/${me.id}`, undefined, tok);
      assert.equal(got.login, 'me@self.example');
      assertProblem(await t.call('GET', `${base}/${other.id}`, { token: tok }), 404, 'not_found');
      assert.deepEqual((await t.ok('GET', base, undefined, tok)).items.map((x: any) => x.id), [me.id]);
      assertProblem(await t.call('POST', `${base}/${other.id}/password`, { body: { password: 'not-mine-123' }, token: tok }), 404, 'not_found');

      const pw = await t.call('POST', `${base}/${me.id}/password`, { body: { password: 'my-second-pass' }, token: tok });
      assert.equal(pw.statusCode, 200, pw.body);
      assert.equal(pw.json().id, me.id);
      // the user's own request is visible to it; nothing else is
      assert.equal((await t.ok('GET', `/api/v1/requests/${pw.headers['hmc-request-id']}`, undefined, tok)).procedure, 'directory.set_password');

      assertProblem(await t.call('DELETE', `${base}/${me.id}`, { token: tok }), 403, 'forbidden');
      assertProblem(await t.call('PATCH', `${base}/${me.id}`, { body: { role: 'organization_admin' }, token: tok }), 403, 'forbidden');
      assertProblem(await t.call('GET', `/api/v1/organizations/${a.org.id}/groups/grp_00000000000000000000000000`, { token: tok }), 404, 'not_found');
      assertProblem(await t.call('GET', '/api/v1/events', { token: tok }), 403, 'forbidden');
      assert.equal((await t.ok('GET', `${base}/${me.id}`)).role, 'user');

      // a disabled user's token stops working
      await t.ok('PATCH', `${base}/${me.id}`, { enabled: false });
      assertProblem(await t.call('GET', `${base}/${me.id}`, { token: tok }), 401, 'unauthorized');
    });

    test('revoked and expired tokens are refused', async () => {
      const a = await t.tenant('revoke');
      const url = `/api/v1/organizations/${a.org.id}`;
      const tk = await token({ role: 'organization_helpdesk', orgId: a.org.id }, a.orgAdmin);
      assert.equal((await t.call('GET', url, { token: tk.token })).statusCode, 200);
      const rv = await t.call('DELETE', `/api/v1/tokens/${tk.id}`, { token: a.orgAdmin });
      assert.equal(rv.statusCode, 200, rv.body);
      assert.equal(typeof rv.json().revokedAt, 'string');
      assertProblem(await t.call('GET', url, { token: tk.token }), 401, 'unauthorized');
      assertProblem(await t.call('GET', url, { token: 'hmc_not-a-real-token' }), 401, 'unauthorized');
      assertProblem(await t.call('GET', url, { token: '' }), 401, 'unauthorized');

      assertProblem(await t.call('POST', '/api/v1/tokens', { body: { name: 'past', role: 'organization_helpdesk', orgId: a.org.id, expiresAt: new Date(Date.now() - 1000).toISOString() }, token: a.orgAdmin }), 400, 'invalid_request');
      const expiresAt = new Date(Date.now() + 2000).toISOString();
      const ex = await t.call('POST', '/api/v1/tokens', { body: { name: 'short', role: 'organization_helpdesk', orgId: a.org.id, expiresAt }, token: a.orgAdmin });
      assert.equal(ex.statusCode, 201, ex.body);
      assert.equal(ex.json().expiresAt, expiresAt);
      const short = ex.json().token as string;
      assert.equal((await t.call('GET', url, { token: short })).statusCode, 200);
      // poll until it expires (no fixed sleep); it must never come back
      const deadline = Date.now() + 15_000;
      let r = await t.call('GET', url, { token: short });
      while (r.statusCode === 200 && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 100));
        r = await t.call('GET', url, { token: short });
      }
      assertProblem(r, 401, 'unauthorized');
      assert.ok(Date.now() >= Date.parse(expiresAt), 'refused only after its expiry');
      assertProblem(await t.call('GET', url, { token: short }), 401, 'unauthorized');
    });

    test('the token list shows only tokens in scope', async () => {
      const a = await t.tenant('tl-a');
      const b = await t.tenant('tl-b');
      const u = await createUser(a.org.id, { login: 'u@tl-a.example' });
      const aHd = await token({ role: 'organization_helpdesk', orgId: a.org.id }, a.orgAdmin);
      const aUser = await token({ role: 'user', orgId: a.org.id, userId: u.id }, a.orgAdmin);
      const bHd = await token({ role: 'organization_helpdesk', orgId: b.org.id }, b.orgAdmin);
      const aRslHd = await token({ role: 'reseller_helpdesk', resellerId: a.reseller.id });

      const list = async (tok: string) => (await t.ok('GET', '/api/v1/tokens?limit=1000', undefined, tok)).items as any[];
      const ofOrgAdmin = await list(a.orgAdmin);
      assert.ok(ofOrgAdmin.length >= 3);
      assert.ok(ofOrgAdmin.every((x) => x.orgId === a.org.id), 'only tokens of its organization');
      assert.ok(ofOrgAdmin.some((x) => x.id === aHd.id) && ofOrgAdmin.some((x) => x.id === aUser.id));
      assert.ok(!ofOrgAdmin.some((x) => x.id === bHd.id || x.id === aRslHd.id));
      assert.ok(ofOrgAdmin.every((x) => x.token === undefined), 'token strings are never listed');

      const ofReseller = await list(a.resellerAdmin);
      assert.ok(ofReseller.every((x) => x.resellerId === a.reseller.id));
      assert.ok(ofReseller.some((x) => x.id === aHd.id) && ofReseller.some((x) => x.id === aRslHd.id));
      assert.ok(!ofReseller.some((x) => x.id === bHd.id));

      const ofUser = await list(aUser.token);
      assert.deepEqual(ofUser.map((x) => x.id), [aUser.id]);

      const all = await list(t.adminToken);
      for (const id of [aHd.id, aUser.id, bHd.id, aRslHd.id]) assert.ok(all.some((x) => x.id === id));

      assertProblem(await t.call('GET', `/api/v1/tokens/${bHd.id}`, { token: a.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('DELETE', `/api/v1/tokens/${bHd.id}`, { token: a.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('DELETE', `/api/v1/tokens/${aRslHd.id}`, { token: a.orgAdmin }), 404, 'not_found');
      assert.equal((await t.call('GET', `/api/v1/organizations/${b.org.id}`, { token: bHd.token })).statusCode, 200, 'untouched');

      // revoked tokens drop out of the list unless asked for
      await t.ok('DELETE', `/api/v1/tokens/${aHd.id}`, undefined, a.orgAdmin);
      assert.ok(!(await list(a.orgAdmin)).some((x) => x.id === aHd.id));
      const withRevoked = (await t.ok('GET', '/api/v1/tokens?includeRevoked=true&limit=1000', undefined, a.orgAdmin)).items;
      assert.ok(withRevoked.some((x: any) => x.id === aHd.id && x.revokedAt !== null));
    });
  });
}
