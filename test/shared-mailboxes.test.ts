import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { DAY_MS } from '../src/mail/addresses.js';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';

/**
 * Full access to mailboxes through the API (no data plane: the ACL job has nothing to converge and must not
 * fail the request): grant, list, revoke, idempotency, only inside one organization, only for its admins;
 * the rows go with a deleted user and a purged mailbox. The data plane side is test/dataplane-shared.test.ts.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  assert.equal(r.json().code, code, r.body);
}

for (const dialect of DIALECTS) {
  describe(`full access to mailboxes [${dialect}]`, () => {
    let t: TestPlatform;
    // a deleted mailbox is purged (its rows removed) a moment later
    before(async () => { t = await startTestPlatform(dialect, { config: { mailboxRetentionDays: 200 / DAY_MS } }); });
    after(async () => { await t?.close(); });

    /** A user with a user mailbox and a user-role token. */
    async function person(o: MailOrg, local: string) {
      const user = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login: `${local}@${o.domainName}` });
      const mailbox = await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { userId: user.id, planId: o.mailboxPlanId }, o.orgAdmin);
      const token = (await t.ok('POST', '/api/v1/tokens', { name: `${local} self`, role: 'user', orgId: o.org.id, userId: user.id })).token as string;
      return { user, mailbox, token };
    }
    const resource = (o: MailOrg, kind: string, local: string) =>
      t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind, primaryAddress: `${local}@${o.domainName}`, planId: o.mailboxPlanId }, o.orgAdmin);
    const trustees = async (url: string, token: string) => (await t.ok('GET', url, undefined, token)).items.map((x: any) => x.userId).sort();
    const rows = async (col: string, id: string) =>
      Number((await t.platform.store.db.selectFrom('mailbox_access').select((eb) => eb.fn.countAll().as('n')).where(col, '=', id).executeTakeFirstOrThrow()).n);

    test('grant, list, revoke on every kind of mailbox, inside one organization only', async () => {
      const o = await setupMailOrg(t, 'fa-own');
      const x = await setupMailOrg(t, 'fa-foreign');
      const boss = await person(o, 'boss');
      const ann = await person(o, 'ann');
      const bob = await person(o, 'bob');
      // the other organization has a user with the same local part
      const annX = await person(x, 'ann');
      const info = await resource(o, 'shared', 'info');
      const room = await resource(o, 'room', 'room1');
      const beamer = await resource(o, 'equipment', 'beamer');
      const url = (m: any, org = o) => `${org.orgUrl}/mailboxes/${m.id}/full-access`;

      const g = await t.ok('PUT', `${url(info)}/${ann.user.id}`, undefined, o.orgAdmin);
      assert.deepEqual(Object.keys(g).sort(), ['createdAt', 'mailboxId', 'userId']);
      assert.equal(g.mailboxId, info.id);
      assert.equal(g.userId, ann.user.id);
      assert.equal((await t.ok('PUT', `${url(info)}/${ann.user.id}?wait=true`, undefined, o.orgAdmin)).createdAt, g.createdAt, 'granting twice is harmless');
      await t.ok('PUT', `${url(info)}/${bob.user.id}`, undefined, o.orgAdmin);
      for (const m of [room, beamer, boss.mailbox]) await t.ok('PUT', `${url(m)}/${ann.user.id}`, undefined, o.orgAdmin);
      assert.deepEqual(await trustees(url(info), o.orgAdmin), [ann.user.id, bob.user.id].sort());
      for (const m of [room, beamer, boss.mailbox]) assert.deepEqual(await trustees(url(m), o.orgAdmin), [ann.user.id]);
      const listed = (await t.ok('GET', url(info), undefined, o.orgAdmin)).items.find((i: any) => i.userId === ann.user.id);
      assert.equal(listed.login, `ann@${o.domainName}`);
      assert.equal(listed.createdAt, g.createdAt);

      // pagination: one trustee per page, in user-id order, then no more
      const p1 = await t.ok('GET', `${url(info)}?limit=1`, undefined, o.orgAdmin);
      assert.equal(p1.items.length, 1);
      assert.ok(p1.next);
      const p2 = await t.ok('GET', `${url(info)}?limit=1&cursor=${encodeURIComponent(p1.next)}`, undefined, o.orgAdmin);
      assert.equal(p2.items.length, 1);
      assert.equal(p2.next, null);
      assert.deepEqual([p1.items[0].userId, p2.items[0].userId], [ann.user.id, bob.user.id].sort());

      // another organization's user: 404 on the path for the organization's admin, refused for the provider
      assertProblem(await t.call('PUT', `${url(info)}/${annX.user.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${url(info)}/${annX.user.id}`), 400, 'recipient_not_in_organization');
      // ...nor is one of our mailboxes granted through the other organization's path, nor theirs to ours
      assertProblem(await t.call('PUT', `${x.orgUrl}/mailboxes/${info.id}/full-access/${annX.user.id}`), 404, 'not_found');
      assertProblem(await t.call('PUT', `${o.orgUrl}/mailboxes/${annX.mailbox.id}/full-access/${ann.user.id}`), 404, 'not_found');
      assertProblem(await t.call('PUT', `${url(annX.mailbox, x)}/${ann.user.id}`), 400, 'recipient_not_in_organization');
      // the other organization's admin sees none of it
      assertProblem(await t.call('GET', url(info), { token: x.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${url(info)}/${ann.user.id}`, { token: x.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('DELETE', `${url(info)}/${ann.user.id}`, { token: x.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${url(info)}/${annX.user.id}`, { token: x.orgAdmin }), 404, 'not_found');
      assert.deepEqual(await trustees(url(info), o.orgAdmin), [ann.user.id, bob.user.id].sort());
      assert.deepEqual(await trustees(url(annX.mailbox, x), x.orgAdmin), []);

      // the user role neither lists nor grants, not even on its own mailbox
      assertProblem(await t.call('GET', url(info), { token: ann.token }), 404, 'not_found');
      assertProblem(await t.call('GET', url(boss.mailbox), { token: boss.token }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${url(boss.mailbox)}/${boss.user.id}`, { token: boss.token }), 403, 'forbidden');
      assertProblem(await t.call('DELETE', `${url(boss.mailbox)}/${boss.user.id}`, { token: boss.token }), 403, 'forbidden');
      // the helpdesk lists, but does not grant
      const helpdesk = (await t.ok('POST', '/api/v1/tokens', { name: 'fa helpdesk', role: 'organization_helpdesk', orgId: o.org.id })).token;
      assert.deepEqual(await trustees(url(info), helpdesk), [ann.user.id, bob.user.id].sort());
      assertProblem(await t.call('PUT', `${url(info)}/${boss.user.id}`, { token: helpdesk }), 403, 'forbidden');

      // revoking: gone from the list; revoking again is 404 (nothing to revoke)
      const r = await t.ok('DELETE', `${url(info)}/${bob.user.id}?wait=true`, undefined, o.orgAdmin);
      assert.equal(r.userId, bob.user.id);
      assert.equal(r.createdAt !== undefined, true);
      assertProblem(await t.call('DELETE', `${url(info)}/${bob.user.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assert.deepEqual(await trustees(url(info), o.orgAdmin), [ann.user.id]);

      // unknown ids are 404, malformed ones 400
      assertProblem(await t.call('PUT', `${o.orgUrl}/mailboxes/mbx_00000000000000000000000000/full-access/${ann.user.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assert.equal((await t.call('PUT', `${url(info)}/not-a-user`, { token: o.orgAdmin })).statusCode, 400);

      // every change was audited with its before and after
      const audits = await t.platform.store.db.selectFrom('audit_log').select(['procedure', 'target_id', 'before', 'after'])
        .where('org_id', '=', o.org.id).where('procedure', 'in', ['mail.grant_full_access', 'mail.revoke_full_access']).where('phase', '=', 'execute').execute();
      assert.equal(audits.filter((a) => a.procedure === 'mail.grant_full_access').length, 6);
      const revoked = audits.find((a) => a.procedure === 'mail.revoke_full_access')!;
      assert.equal(revoked.target_id, info.id);
      assert.equal(JSON.parse(String(revoked.before)).userId, bob.user.id);
      assert.equal(JSON.parse(String(revoked.after)), null);
    });

    test('a deleted mailbox cannot be granted; the rows go with a deleted trustee and a purged mailbox', async () => {
      const o = await setupMailOrg(t, 'fa-life');
      const ann = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login: `ann@${o.domainName}` });
      const bob = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login: `bob@${o.domainName}` });
      const desk = await resource(o, 'shared', 'desk');
      const hall = await resource(o, 'room', 'hall');
      for (const m of [desk, hall]) for (const u of [ann, bob]) await t.ok('PUT', `${o.orgUrl}/mailboxes/${m.id}/full-access/${u.id}`, undefined, o.orgAdmin);

      // a trustee deleted: its grants end with its purge
      const d = await t.call('DELETE', `${o.orgUrl}/users/${bob.id}`, { token: o.orgAdmin });
      assert.ok(d.statusCode < 300, d.body);
      assert.equal((await t.settle(d.headers['hmc-request-id'] as string)).state, 'succeeded');
      assert.equal(await rows('trustee_user_id', bob.id), 0);
      assert.deepEqual(await trustees(`${o.orgUrl}/mailboxes/${desk.id}/full-access`, o.orgAdmin), [ann.id]);
      assertProblem(await t.call('PUT', `${o.orgUrl}/mailboxes/${desk.id}/full-access/${bob.id}`), 404, 'not_found');

      // a mailbox deleted: no new grants while it is retained, its rows go with the purge
      const del = await t.call('DELETE', `${o.orgUrl}/mailboxes/${hall.id}`, { token: o.orgAdmin });
      assert.ok(del.statusCode < 300, del.body);
      assertProblem(await t.call('PUT', `${o.orgUrl}/mailboxes/${hall.id}/full-access/${ann.id}`, { token: o.orgAdmin }), 409, 'state_conflict');
      assert.equal((await t.settle(del.json().purgeRequestId)).state, 'succeeded');
      assert.equal(await rows('mailbox_id', hall.id), 0);
      assert.equal(await rows('mailbox_id', desk.id), 1, 'other mailboxes keep theirs');
    });
  });
}
