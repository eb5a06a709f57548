import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';

/** Distribution groups through the HTTP API: mail-enabling, members without cycles, one organization only, managers, senders, limits. */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  assert.equal(r.json().code, code, r.body);
}

for (const dialect of DIALECTS) {
  describe(`distribution groups [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    const groupUrl = (o: MailOrg, id: string) => `${o.orgUrl}/groups/${id}`;
    /** A directory group, mail-enabled at `local@<the org's domain>`. */
    async function mailGroup(o: MailOrg, name: string, body: Record<string, unknown> = {}): Promise<any> {
      const g = await t.ok('POST', `${o.orgUrl}/groups`, { name }, o.orgAdmin);
      const r = await t.call('PUT', `${groupUrl(o, g.id)}/mail`, { body: { primaryAddress: `${name}@${o.domainName}`, ...body }, token: o.orgAdmin });
      assert.equal(r.statusCode, 200, r.body);
      return { ...g, mail: r.json() };
    }
    const sharedMailbox = async (o: MailOrg, local: string) =>
      t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind: 'shared', primaryAddress: `${local}@${o.domainName}`, planId: o.mailboxPlanId }, o.orgAdmin);
    const contact = async (o: MailOrg, address: string) => t.ok('POST', `${o.orgUrl}/contacts?wait=true`, { displayName: address, externalAddress: address }, o.orgAdmin);
    const members = async (o: MailOrg, id: string) => (await t.ok('GET', `${groupUrl(o, id)}/mail-members?limit=1000`, undefined, o.orgAdmin)).items;
    const addMember = (o: MailOrg, id: string, memberId: string, token = o.orgAdmin) => t.call('POST', `${groupUrl(o, id)}/mail-members`, { body: { memberId }, token });
    const usage = async (o: MailOrg) => (await t.ok('GET', `${o.orgUrl}/subscription`, undefined, o.orgAdmin)).usage;

    test('mail-enable a group, change it, disable it: address quarantined, count released, then the group can go', async () => {
      const o = await setupMailOrg(t, 'dg-life');
      const g = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'sales', displayName: 'Sales' }, o.orgAdmin);
      assertProblem(await t.call('GET', `${groupUrl(o, g.id)}/mail`, { token: o.orgAdmin }), 404, 'not_found');
      const r = await t.call('PUT', `${groupUrl(o, g.id)}/mail`, { body: { primaryAddress: `Sales@${o.domainName.toUpperCase()}` }, token: o.orgAdmin });
      assert.equal(r.statusCode, 200, r.body);
      const m = r.json();
      assert.equal(m.groupId, g.id);
      assert.equal(m.primaryAddress, `sales@${o.domainName}`);
      assert.equal(m.sendPolicy, 'organization');
      assert.equal(m.hiddenFromAddressBook, false);
      assert.deepEqual(await t.ok('GET', `${groupUrl(o, g.id)}/mail`, undefined, o.orgAdmin), m);
      assert.equal((await usage(o)).groups, 1);

      // settings change in place, the count does not grow; a new address quarantines the old one
      const changed = await t.ok('PUT', `${groupUrl(o, g.id)}/mail`, { primaryAddress: `team@${o.domainName}`, sendPolicy: 'anyone', hiddenFromAddressBook: true }, o.orgAdmin);
      assert.equal(changed.primaryAddress, `team@${o.domainName}`);
      assert.equal(changed.sendPolicy, 'anyone');
      assert.equal(changed.hiddenFromAddressBook, true);
      assert.equal((await t.ok('PUT', `${groupUrl(o, g.id)}/mail`, { primaryAddress: `team@${o.domainName}` }, o.orgAdmin)).sendPolicy, 'anyone', 'absent fields keep their value');
      assert.equal((await usage(o)).groups, 1);
      const other = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'other' }, o.orgAdmin);
      assertProblem(await t.call('PUT', `${groupUrl(o, other.id)}/mail`, { body: { primaryAddress: `sales@${o.domainName}` }, token: o.orgAdmin }), 409, 'address_quarantined');
      assertProblem(await t.call('PUT', `${groupUrl(o, other.id)}/mail`, { body: { primaryAddress: `team@${o.domainName}` }, token: o.orgAdmin }), 409, 'address_taken');
      assertProblem(await t.call('PUT', `${groupUrl(o, other.id)}/mail`, { body: { primaryAddress: 'x@elsewhere.example' }, token: o.orgAdmin }), 400, 'domain_not_accepted');
      assertProblem(await t.call('PUT', `${groupUrl(o, other.id)}/mail`, { body: { primaryAddress: 'not an address' }, token: o.orgAdmin }), 400, 'invalid_address');
      assert.equal((await usage(o)).groups, 1, 'refused enables charge nothing');

      // the directory refuses to delete a group that is still mail-enabled
      assertProblem(await t.call('DELETE', groupUrl(o, g.id), { token: o.orgAdmin }), 409, 'state_conflict');
      const off = await t.ok('DELETE', `${groupUrl(o, g.id)}/mail`, undefined, o.orgAdmin);
      assert.equal(off.primaryAddress, `team@${o.domainName}`);
      assert.equal((await usage(o)).groups, 0);
      assertProblem(await t.call('GET', `${groupUrl(o, g.id)}/mail`, { token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('DELETE', `${groupUrl(o, g.id)}/mail`, { token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${groupUrl(o, other.id)}/mail`, { body: { primaryAddress: `team@${o.domainName}` }, token: o.orgAdmin }), 409, 'address_quarantined');
      assert.equal((await t.call('DELETE', groupUrl(o, g.id), { token: o.orgAdmin })).statusCode, 200);
      const events = (await t.ok('GET', `/api/v1/events?org=${o.org.id}&limit=1000`)).items.filter((e: any) => e.objectId === g.id);
      assert.deepEqual(events.map((e: any) => `${e.objectType}:${e.event}`), ['distribution_group:created', 'distribution_group:deleted']);
    });

    test('PLAN_LIMIT on maxGroups counts mail-enabled groups only', async () => {
      const o = await setupMailOrg(t, 'dg-limit', { maxGroups: 2 });
      const a = await mailGroup(o, 'a');
      await mailGroup(o, 'b');
      const c = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'c' }, o.orgAdmin); // plain directory groups are not counted
      assertProblem(await t.call('PUT', `${groupUrl(o, c.id)}/mail`, { body: { primaryAddress: `c@${o.domainName}` }, token: o.orgAdmin }), 422, 'PLAN_LIMIT');
      assert.equal((await usage(o)).groups, 2);
      // the refused enable claimed no address
      await t.ok('DELETE', `${groupUrl(o, a.id)}/mail`, undefined, o.orgAdmin);
      assert.equal((await t.ok('PUT', `${groupUrl(o, c.id)}/mail`, { primaryAddress: `c@${o.domainName}` }, o.orgAdmin)).primaryAddress, `c@${o.domainName}`);
      assert.equal((await usage(o)).groups, 2);
    });

    test('members: mailboxes, contacts and groups of the same organization; nesting without cycles', async () => {
      const o = await setupMailOrg(t, 'dg-mem');
      const mbx = await sharedMailbox(o, 'info');
      const con = await contact(o, 'partner@outside.example');
      const [a, b, c] = [await mailGroup(o, 'ga'), await mailGroup(o, 'gb'), await mailGroup(o, 'gc')];
      for (const id of [mbx.id, con.id, b.id]) {
        const r = await addMember(o, a.id, id);
        assert.equal(r.statusCode, 200, r.body);
      }
      assert.equal((await addMember(o, a.id, mbx.id)).statusCode, 200, 'adding twice is harmless');
      const list = await members(o, a.id);
      assert.deepEqual(list.map((m: any) => `${m.kind}:${m.memberId}`).sort(), [`mailbox:${mbx.id}`, `contact:${con.id}`, `group:${b.id}`].sort());
      assert.equal(list.find((m: any) => m.memberId === mbx.id).address, `info@${o.domainName}`);
      assert.equal(list.find((m: any) => m.memberId === con.id).address, 'partner@outside.example');
      assert.equal(list.find((m: any) => m.memberId === b.id).address, `gb@${o.domainName}`);

      // a -> b -> c; c -> a would close the circle, and so would a group containing itself
      assert.equal((await addMember(o, b.id, c.id)).statusCode, 200);
      assertProblem(await addMember(o, c.id, a.id), 400, 'group_cycle');
      assertProblem(await addMember(o, c.id, b.id), 400, 'group_cycle');
      assertProblem(await addMember(o, a.id, a.id), 400, 'group_cycle');
      assert.deepEqual(await members(o, c.id), []);
      // once the chain is cut the same nesting is fine
      assert.equal((await t.call('DELETE', `${groupUrl(o, b.id)}/mail-members/groups/${c.id}`, { token: o.orgAdmin })).statusCode, 200);
      assert.equal((await addMember(o, c.id, a.id)).statusCode, 200);
      assertProblem(await addMember(o, b.id, c.id), 400, 'group_cycle');

      // a plain directory group is not a recipient until it is mail-enabled; nor does it take mail members
      const plain = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'plain' }, o.orgAdmin);
      assertProblem(await addMember(o, a.id, plain.id), 409, 'group_not_mail_enabled');
      assertProblem(await addMember(o, plain.id, mbx.id), 409, 'group_not_mail_enabled');

      // removal, one route per kind
      for (const [seg, id] of [['mailboxes', mbx.id], ['contacts', con.id], ['groups', b.id]]) {
        const r = await t.call('DELETE', `${groupUrl(o, a.id)}/mail-members/${seg}/${id}`, { token: o.orgAdmin });
        assert.equal(r.statusCode, 200, r.body);
        assertProblem(await t.call('DELETE', `${groupUrl(o, a.id)}/mail-members/${seg}/${id}`, { token: o.orgAdmin }), 404, 'not_found');
      }
      assert.deepEqual(await members(o, a.id), []);

      // disabling a group's mail takes it out of every group it was in
      assert.deepEqual((await members(o, c.id)).map((m: any) => m.memberId), [a.id]);
      await t.ok('DELETE', `${groupUrl(o, a.id)}/mail`, undefined, o.orgAdmin);
      assert.deepEqual(await members(o, c.id), []);
    });

    test('two concurrent nestings in opposite directions: exactly one succeeds', async () => {
      const o = await setupMailOrg(t, 'dg-race');
      for (let round = 0; round < 5; round++) {
        const [x, y] = [await mailGroup(o, `x${round}`), await mailGroup(o, `y${round}`)];
        const [r1, r2] = await Promise.all([addMember(o, x.id, y.id), addMember(o, y.id, x.id)]);
        const codes = [r1, r2].map((r) => (r.statusCode === 200 ? 'ok' : `${r.statusCode} ${r.json().code}`)).sort();
        assert.deepEqual(codes, ['400 group_cycle', 'ok'], `round ${round}: ${r1.body} / ${r2.body}`);
        const edges = (await members(o, x.id)).length + (await members(o, y.id)).length;
        assert.equal(edges, 1);
      }
    });

    test('a group cannot contain, be managed by or list another organization\'s recipients', async () => {
      const o = await setupMailOrg(t, 'dg-own');
      const x = await setupMailOrg(t, 'dg-foreign');
      const g = await mailGroup(o, 'staff');
      const [fm, fc, fg] = [await sharedMailbox(x, 'theirs'), await contact(x, 'someone@outside.example'), await mailGroup(x, 'their-group')];
      const fu = await t.ok('POST', `${x.orgUrl}/users?wait=true`, { login: `them@${x.domainName}` });
      for (const id of [fm.id, fc.id, fg.id]) {
        assertProblem(await addMember(o, g.id, id), 400, 'recipient_not_in_organization');
        assertProblem(await addMember(o, g.id, id, t.adminToken), 400, 'recipient_not_in_organization');
        assertProblem(await t.call('PUT', `${groupUrl(o, g.id)}/senders`, { body: { senders: [id] }, token: o.orgAdmin }), 400, 'recipient_not_in_organization');
      }
      assertProblem(await addMember(o, g.id, 'mbx_00000000000000000000000000'), 400, 'recipient_not_in_organization');
      // ids of another tenant in the path are 404 for the organization's admin, refused for the provider
      assertProblem(await t.call('DELETE', `${groupUrl(o, g.id)}/mail-members/mailboxes/${fm.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${groupUrl(o, g.id)}/managers/${fu.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${groupUrl(o, g.id)}/managers/${fu.id}`), 400, 'recipient_not_in_organization');
      assertProblem(await t.call('GET', `${x.orgUrl}/groups/${fg.id}/mail-members`, { token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${x.orgUrl}/groups/${fg.id}/mail`, { body: { primaryAddress: `evil@${o.domainName}` }, token: o.orgAdmin }), 404, 'not_found');
      // nor may it take an address on another organization's domain
      const g2 = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'grabber' }, o.orgAdmin);
      assertProblem(await t.call('PUT', `${groupUrl(o, g2.id)}/mail`, { body: { primaryAddress: `grab@${x.domainName}` }, token: o.orgAdmin }), 400, 'domain_not_accepted');
      assert.deepEqual(await members(o, g.id), []);
      assert.deepEqual((await t.ok('GET', `${groupUrl(o, g.id)}/senders`, undefined, o.orgAdmin)).items, []);
      assert.deepEqual((await t.ok('GET', `${groupUrl(o, g.id)}/managers`, undefined, o.orgAdmin)).items, []);
    });

    test('managers and listed senders', async () => {
      const o = await setupMailOrg(t, 'dg-mgr');
      const g = await mailGroup(o, 'board', { sendPolicy: 'listed' });
      assert.equal(g.mail.sendPolicy, 'listed');
      const u1 = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login: `chair@${o.domainName}` });
      const u2 = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login: `clerk@${o.domainName}` });
      for (const u of [u1, u2]) assert.deepEqual(await t.ok('PUT', `${groupUrl(o, g.id)}/managers/${u.id}`, undefined, o.orgAdmin), { groupId: g.id, userId: u.id });
      await t.ok('PUT', `${groupUrl(o, g.id)}/managers/${u1.id}`, undefined, o.orgAdmin);
      const managers = async () => (await t.ok('GET', `${groupUrl(o, g.id)}/managers`, undefined, o.orgAdmin)).items.map((m: any) => m.userId).sort();
      assert.deepEqual(await managers(), [u1.id, u2.id].sort());
      await t.ok('DELETE', `${groupUrl(o, g.id)}/managers/${u2.id}`, undefined, o.orgAdmin);
      assertProblem(await t.call('DELETE', `${groupUrl(o, g.id)}/managers/${u2.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assert.deepEqual(await managers(), [u1.id]);

      const mbx = await sharedMailbox(o, 'assistant');
      const con = await contact(o, 'auditor@outside.example');
      const other = await mailGroup(o, 'execs');
      const set = await t.ok('PUT', `${groupUrl(o, g.id)}/senders`, { senders: [mbx.id, con.id, other.id] }, o.orgAdmin);
      assert.deepEqual(set.senders, [mbx.id, con.id, other.id].sort());
      const senders = async () => (await t.ok('GET', `${groupUrl(o, g.id)}/senders`, undefined, o.orgAdmin)).items.map((s: any) => `${s.kind}:${s.memberId}`).sort();
      assert.deepEqual(await senders(), [`mailbox:${mbx.id}`, `contact:${con.id}`, `group:${other.id}`].sort());
      await t.ok('PUT', `${groupUrl(o, g.id)}/senders`, { senders: [con.id] }, o.orgAdmin);
      assert.deepEqual(await senders(), [`contact:${con.id}`]);
      await t.ok('PUT', `${groupUrl(o, g.id)}/senders`, { senders: [] }, o.orgAdmin);
      assert.deepEqual(await senders(), []);

      // the organization's helpdesk reads, does not change; a user sees no group
      const helpdesk = (await t.ok('POST', '/api/v1/tokens', { name: 'dg helpdesk', role: 'organization_helpdesk', orgId: o.org.id })).token;
      assert.equal((await t.ok('GET', `${groupUrl(o, g.id)}/mail`, undefined, helpdesk)).groupId, g.id);
      assertProblem(await t.call('PUT', `${groupUrl(o, g.id)}/managers/${u2.id}`, { token: helpdesk }), 403, 'forbidden');
      const user = (await t.ok('POST', '/api/v1/tokens', { name: 'dg user', role: 'user', orgId: o.org.id, userId: u1.id })).token;
      assertProblem(await t.call('GET', `${groupUrl(o, g.id)}/mail`, { token: user }), 404, 'not_found');
    });
  });
}
