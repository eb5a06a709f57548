import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg } from './mail-support.js';

/** Accepted domains (authoritative, relays, aliases), shared domains, and their limits, through the HTTP API. */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  assert.equal(r.json().code, code, r.body);
}

for (const dialect of DIALECTS) {
  describe(`accepted domains [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    const usage = async (orgUrl: string) => (await t.ok('GET', `${orgUrl}/subscription`)).usage;
    /** A directory domain of the organization, made by its admin. */
    const addDomain = (orgUrl: string, name: string, token: string) => t.ok('POST', `${orgUrl}/domains`, { name }, token);

    test('accept, change type, alias, count toward maxDomains, refuse removal while in use', async () => {
      const o = await setupMailOrg(t, 'ad-basic', { maxDomains: 2 });
      const primaryUrl = `${o.orgUrl}/domains/${o.domainId}/accepted`;
      const got = await t.ok('GET', primaryUrl, undefined, o.orgAdmin);
      assert.equal(got.type, 'authoritative');
      assert.equal(got.aliasOf, null);
      assert.equal((await usage(o.orgUrl)).domains, 1);

      const alias = await addDomain(o.orgUrl, 'ad-basic-alias.example', o.orgAdmin);
      const aliasUrl = `${o.orgUrl}/domains/${alias.id}/accepted`;
      const accepted = await t.ok('PUT', aliasUrl, { aliasOf: o.domainId }, o.orgAdmin);
      assert.equal(accepted.aliasOf, o.domainId);
      assert.equal(accepted.name, 'ad-basic-alias.example');
      assert.equal((await usage(o.orgUrl)).domains, 2);

      // the plan allows 2 accepted domains
      const third = await addDomain(o.orgUrl, 'ad-basic-third.example', o.orgAdmin);
      assertProblem(await t.call('PUT', `${o.orgUrl}/domains/${third.id}/accepted`, { token: o.orgAdmin, body: {} }), 422, 'PLAN_LIMIT');
      assert.equal((await usage(o.orgUrl)).domains, 2);

      // changing an accepted domain does not count again
      const relay = await t.ok('PUT', primaryUrl, { type: 'internal_relay' }, o.orgAdmin);
      assert.equal(relay.type, 'internal_relay');
      assert.equal((await usage(o.orgUrl)).domains, 2);

      // an alias has no addresses of its own: mail to x@alias reaches x@primary
      const box = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `info@${o.domainName}`, planId: o.mailboxPlanId }, o.orgAdmin);
      assertProblem(await t.call('POST', `${o.orgUrl}/mailboxes/${box.id}/aliases`, { token: o.orgAdmin, body: { address: 'info@ad-basic-alias.example' } }), 400, 'domain_is_alias');
      assertProblem(await t.call('POST', `${o.orgUrl}/mailboxes`, { token: o.orgAdmin, body: { kind: 'room', primaryAddress: 'room@ad-basic-alias.example', planId: o.mailboxPlanId } }), 400, 'domain_is_alias');

      // no alias of an alias, no alias of itself, no alias to a domain that is not accepted
      assertProblem(await t.call('PUT', aliasUrl, { token: o.orgAdmin, body: { aliasOf: alias.id } }), 400, 'invalid_request');
      assertProblem(await t.call('PUT', `${o.orgUrl}/domains/${third.id}/accepted`, { token: o.orgAdmin, body: { aliasOf: alias.id } }), 400, 'domain_is_alias');
      assertProblem(await t.call('PUT', aliasUrl, { token: o.orgAdmin, body: { aliasOf: third.id } }), 400, 'domain_not_accepted');

      // a domain holding addresses cannot become an alias, nor can one that is aliased
      await t.ok('PUT', aliasUrl, { aliasOf: null }, o.orgAdmin);
      assertProblem(await t.call('PUT', primaryUrl, { token: o.orgAdmin, body: { aliasOf: alias.id } }), 409, 'domain_in_use');
      await t.ok('PUT', aliasUrl, { aliasOf: o.domainId }, o.orgAdmin);

      // removal: refused while aliased or holding addresses; the directory refuses to drop an accepted domain
      assertProblem(await t.call('DELETE', primaryUrl, { token: o.orgAdmin }), 409, 'domain_in_use');
      assertProblem(await t.call('DELETE', `${o.orgUrl}/domains/${alias.id}`, { token: o.orgAdmin }), 409, 'domain_in_use');
      const removed = await t.ok('DELETE', aliasUrl, undefined, o.orgAdmin);
      assert.equal(removed.domainId, alias.id);
      assertProblem(await t.call('GET', aliasUrl, { token: o.orgAdmin }), 404, 'not_found');
      assert.equal((await usage(o.orgUrl)).domains, 1);
      assertProblem(await t.call('DELETE', primaryUrl, { token: o.orgAdmin }), 409, 'domain_in_use'); // info@ lives there
      await t.ok('DELETE', `${o.orgUrl}/domains/${alias.id}`, undefined, o.orgAdmin); // no longer accepted: the directory lets it go

      const list = await t.ok('GET', `${o.orgUrl}/accepted-domains`, undefined, o.orgAdmin);
      assert.deepEqual(list.items.map((d: any) => d.domainId), [o.domainId]);
      assert.equal((await t.ok('GET', `${o.orgUrl}/accepted-domains?type=authoritative`, undefined, o.orgAdmin)).items.length, 0);
      assert.equal((await t.ok('GET', `${o.orgUrl}/accepted-domains?type=internal_relay`, undefined, o.orgAdmin)).items.length, 1);
    });

    test('cross-tenant: another organization\'s domain is neither an alias target nor a home for addresses', async () => {
      const a = await setupMailOrg(t, 'ad-xa');
      const b = await setupMailOrg(t, 'ad-xb');
      const extra = await addDomain(a.orgUrl, 'ad-xa-extra.example', a.orgAdmin);
      assertProblem(await t.call('PUT', `${a.orgUrl}/domains/${extra.id}/accepted`, { token: a.orgAdmin, body: { aliasOf: b.domainId } }), 400, 'domain_not_accepted');
      // B's domain through A's path: 404 before anything else
      assertProblem(await t.call('PUT', `${a.orgUrl}/domains/${b.domainId}/accepted`, { token: a.orgAdmin, body: {} }), 404, 'not_found');
      assertProblem(await t.call('POST', `${a.orgUrl}/mailboxes`, { token: a.orgAdmin, body: { kind: 'shared', primaryAddress: `steal@${b.domainName}`, planId: a.mailboxPlanId } }), 400, 'domain_not_accepted');
      const box = await t.ok('POST', `${a.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `own@${a.domainName}`, planId: a.mailboxPlanId }, a.orgAdmin);
      assertProblem(await t.call('POST', `${a.orgUrl}/mailboxes/${box.id}/aliases`, { token: a.orgAdmin, body: { address: `steal@${b.domainName}` } }), 400, 'domain_not_accepted');
      assertProblem(await t.call('GET', `${b.orgUrl}/accepted-domains`, { token: a.orgAdmin }), 404, 'not_found');
    });

    test('shared domain: organizations get label.<shared>; provider-only management', async () => {
      const a = await setupMailOrg(t, 'ad-sha', { maxDomains: 2 });
      const b = await setupMailOrg(t, 'ad-shb');
      const shared = await t.ok('POST', '/api/v1/shared-domains', { name: 'Hosted-Mail.example' });
      assert.match(shared.id, /^sdm_/);
      assert.equal(shared.name, 'hosted-mail.example');
      assertProblem(await t.call('POST', '/api/v1/shared-domains', { body: { name: 'hosted-mail.example' } }), 409, 'domain_taken');
      assertProblem(await t.call('POST', '/api/v1/shared-domains', { token: a.resellerAdmin, body: { name: 'x.example' } }), 403, 'forbidden');
      // organizations use it by id but do not see the provider's list
      assertProblem(await t.call('GET', `/api/v1/shared-domains/${shared.id}`, { token: a.orgAdmin }), 404, 'not_found');
      assert.equal((await t.ok('GET', '/api/v1/shared-domains', undefined, a.orgAdmin)).items.length, 0);
      assert.ok((await t.ok('GET', '/api/v1/shared-domains')).items.some((s: any) => s.id === shared.id));

      const r = await t.call('POST', `${a.orgUrl}/accepted-domains/shared`, { token: a.orgAdmin, body: { sharedDomainId: shared.id, label: 'Acme' } });
      assert.equal(r.statusCode, 201, r.body);
      const sub = r.json();
      assert.equal(sub.name, 'acme.hosted-mail.example');
      assert.equal(sub.sharedDomainId, shared.id);
      assert.equal(sub.type, 'authoritative');
      assert.equal((await usage(a.orgUrl)).domains, 2);
      // it is a directory domain of the organization too, and takes addresses
      const doms = await t.ok('GET', `${a.orgUrl}/domains`, undefined, a.orgAdmin);
      assert.ok(doms.items.some((d: any) => d.id === sub.domainId && d.name === 'acme.hosted-mail.example'));
      await t.ok('POST', `${a.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: 'office@acme.hosted-mail.example', planId: a.mailboxPlanId }, a.orgAdmin);

      // one label, one organization; a label is one label; the limit holds
      assertProblem(await t.call('POST', `${b.orgUrl}/accepted-domains/shared`, { token: b.orgAdmin, body: { sharedDomainId: shared.id, label: 'acme' } }), 409, 'domain_taken');
      assertProblem(await t.call('POST', `${b.orgUrl}/accepted-domains/shared`, { token: b.orgAdmin, body: { sharedDomainId: shared.id, label: 'a.b' } }), 400, 'invalid_domain');
      assertProblem(await t.call('POST', `${a.orgUrl}/accepted-domains/shared`, { token: a.orgAdmin, body: { sharedDomainId: shared.id, label: 'second' } }), 422, 'PLAN_LIMIT');
      assertProblem(await t.call('POST', `${b.orgUrl}/accepted-domains/shared`, { token: b.orgAdmin, body: { sharedDomainId: 'sdm_00000000000000000000000000', label: 'x' } }), 404, 'not_found');
      // a subdomain of the shared domain comes only through the shared route
      const sneaky = await addDomain(b.orgUrl, 'beta.hosted-mail.example', b.orgAdmin);
      assertProblem(await t.call('PUT', `${b.orgUrl}/domains/${sneaky.id}/accepted`, { token: b.orgAdmin, body: {} }), 409, 'domain_taken');
      // the shared domain stays while an organization uses it
      assertProblem(await t.call('DELETE', `/api/v1/shared-domains/${shared.id}`), 409, 'domain_in_use');
      const other = await t.ok('POST', '/api/v1/shared-domains', { name: 'unused-shared.example' });
      await t.ok('DELETE', `/api/v1/shared-domains/${other.id}`);
      assertProblem(await t.call('GET', `/api/v1/shared-domains/${other.id}`), 404, 'not_found');
    });
  });
}
