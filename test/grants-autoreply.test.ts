import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';

/** Send-as / send-on-behalf grants (one organization only) and per-mailbox auto-reply settings (who may set them). */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  assert.equal(r.json().code, code, r.body);
}

for (const dialect of DIALECTS) {
  describe(`send-as grants and auto-replies [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    /** A user with a user mailbox and a user-role token. */
    async function person(o: MailOrg, local: string) {
      const user = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login: `${local}@${o.domainName}` });
      const mailbox = await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { userId: user.id, planId: o.mailboxPlanId }, o.orgAdmin);
      const token = (await t.ok('POST', '/api/v1/tokens', { name: `${local} self`, role: 'user', orgId: o.org.id, userId: user.id })).token as string;
      return { user, mailbox, token };
    }
    const trustees = async (url: string, token: string) => (await t.ok('GET', url, undefined, token)).items.map((x: any) => x.userId).sort();

    test('send-as and send-on-behalf on mailboxes and mail-enabled groups, inside one organization only', async () => {
      const o = await setupMailOrg(t, 'sa-own');
      const x = await setupMailOrg(t, 'sa-foreign');
      const boss = await person(o, 'boss');
      const assistant = await person(o, 'assistant');
      const stranger = await person(x, 'stranger');
      const mbx = `${o.orgUrl}/mailboxes/${boss.mailbox.id}`;

      const g = await t.ok('PUT', `${mbx}/send-as/${assistant.user.id}`, undefined, o.orgAdmin);
      assert.equal(g.objectId, boss.mailbox.id);
      assert.equal(g.objectKind, 'mailbox');
      assert.equal(g.userId, assistant.user.id);
      assert.equal(g.right, 'send_as');
      assert.equal((await t.ok('PUT', `${mbx}/send-as/${assistant.user.id}`, undefined, o.orgAdmin)).createdAt, g.createdAt, 'granting twice is harmless');
      await t.ok('PUT', `${mbx}/send-on-behalf/${assistant.user.id}`, undefined, o.orgAdmin);
      await t.ok('PUT', `${mbx}/send-on-behalf/${boss.user.id}`, undefined, o.orgAdmin);
      assert.deepEqual(await trustees(`${mbx}/send-as`, o.orgAdmin), [assistant.user.id]);
      assert.deepEqual(await trustees(`${mbx}/send-on-behalf`, o.orgAdmin), [assistant.user.id, boss.user.id].sort());

      // another organization's user: 404 on the path for the organization's admin, refused for the provider
      assertProblem(await t.call('PUT', `${mbx}/send-as/${stranger.user.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${mbx}/send-as/${stranger.user.id}`), 400, 'recipient_not_in_organization');
      assertProblem(await t.call('PUT', `${mbx}/send-on-behalf/${stranger.user.id}`), 400, 'recipient_not_in_organization');
      // ...and another organization's mailbox cannot be granted to one of ours, nor one of ours to theirs
      assertProblem(await t.call('PUT', `${o.orgUrl}/mailboxes/${stranger.mailbox.id}/send-as/${assistant.user.id}`), 404, 'not_found');
      assertProblem(await t.call('PUT', `${x.orgUrl}/mailboxes/${stranger.mailbox.id}/send-as/${assistant.user.id}`), 400, 'recipient_not_in_organization');
      assertProblem(await t.call('PUT', `${x.orgUrl}/mailboxes/${stranger.mailbox.id}/send-as/${assistant.user.id}`, { token: x.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('GET', `${mbx}/send-as`, { token: x.orgAdmin }), 404, 'not_found');
      assert.deepEqual(await trustees(`${mbx}/send-as`, o.orgAdmin), [assistant.user.id]);
      assert.deepEqual(await trustees(`${x.orgUrl}/mailboxes/${stranger.mailbox.id}/send-as`, x.orgAdmin), []);

      // groups: only while mail-enabled
      const grp = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'support' }, o.orgAdmin);
      const gUrl = `${o.orgUrl}/groups/${grp.id}`;
      assertProblem(await t.call('PUT', `${gUrl}/send-as/${assistant.user.id}`, { token: o.orgAdmin }), 409, 'group_not_mail_enabled');
      await t.ok('PUT', `${gUrl}/mail`, { primaryAddress: `support@${o.domainName}` }, o.orgAdmin);
      assert.equal((await t.ok('PUT', `${gUrl}/send-as/${assistant.user.id}`, undefined, o.orgAdmin)).objectKind, 'group');
      await t.ok('PUT', `${gUrl}/send-on-behalf/${boss.user.id}`, undefined, o.orgAdmin);
      assertProblem(await t.call('PUT', `${gUrl}/send-as/${stranger.user.id}`), 400, 'recipient_not_in_organization');
      assert.deepEqual(await trustees(`${gUrl}/send-as`, o.orgAdmin), [assistant.user.id]);
      assert.deepEqual(await trustees(`${gUrl}/send-on-behalf`, o.orgAdmin), [boss.user.id]);
      await t.ok('DELETE', `${gUrl}/mail`, undefined, o.orgAdmin);
      assert.deepEqual(await trustees(`${gUrl}/send-as`, o.orgAdmin), [], 'disabling mail drops the grants');

      // revoking; a user-role principal neither lists nor grants
      await t.ok('DELETE', `${mbx}/send-as/${assistant.user.id}`, undefined, o.orgAdmin);
      assertProblem(await t.call('DELETE', `${mbx}/send-as/${assistant.user.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assert.deepEqual(await trustees(`${mbx}/send-as`, o.orgAdmin), []);
      assertProblem(await t.call('GET', `${mbx}/send-on-behalf`, { token: boss.token }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${mbx}/send-as/${boss.user.id}`, { token: boss.token }), 403, 'forbidden');
    });

    test('auto-reply: defaults, the user sets its own, not another\'s; admins and helpdesk set any of the organization', async () => {
      const o = await setupMailOrg(t, 'ar-who');
      const x = await setupMailOrg(t, 'ar-foreign');
      const ann = await person(o, 'ann');
      const bob = await person(o, 'bob');
      const eve = await person(x, 'eve');
      const url = (p: { mailbox: any }, org = o) => `${org.orgUrl}/mailboxes/${p.mailbox.id}/auto-reply`;

      assert.deepEqual(await t.ok('GET', url(ann), undefined, ann.token), {
        mailboxId: ann.mailbox.id, orgId: o.org.id, mode: 'off', startsAt: null, endsAt: null, internalMessage: '', externalMessage: '', externalAudience: 'none', updatedAt: null,
      });
      const mine = await t.ok('PUT', url(ann), { mode: 'on', internalMessage: 'Out until Monday.\nAsk Bob.', externalMessage: 'Away — back Monday 🌴', externalAudience: 'known' }, ann.token);
      assert.equal(mine.mode, 'on');
      assert.equal(mine.internalMessage, 'Out until Monday.\nAsk Bob.');
      assert.equal(mine.externalMessage, 'Away — back Monday 🌴');
      assert.equal(mine.externalAudience, 'known');
      assert.equal(typeof mine.updatedAt, 'string');
      assert.deepEqual(await t.ok('GET', url(ann), undefined, ann.token), mine);
      assert.deepEqual(await t.ok('GET', url(ann), undefined, o.orgAdmin), mine);

      // another user's mailbox does not exist for ann: 404 to read and to write, and nothing changes
      assertProblem(await t.call('GET', url(bob), { token: ann.token }), 404, 'not_found');
      assertProblem(await t.call('PUT', url(bob), { body: { mode: 'on', internalMessage: 'hijacked' }, token: ann.token }), 404, 'not_found');
      assert.equal((await t.ok('GET', url(bob), undefined, bob.token)).mode, 'off');
      // nor does another organization's, for anyone of this one
      for (const token of [ann.token, o.orgAdmin, o.resellerAdmin]) {
        assertProblem(await t.call('PUT', url(eve, x), { body: { mode: 'on' }, token }), 404, 'not_found');
        assertProblem(await t.call('GET', url(eve, x), { token }), 404, 'not_found');
      }
      assertProblem(await t.call('PUT', `${o.orgUrl}/mailboxes/${eve.mailbox.id}/auto-reply`, { body: { mode: 'on' } }), 404, 'not_found');
      assert.equal((await t.ok('GET', url(eve, x), undefined, eve.token)).mode, 'off');

      // the organization's helpdesk and admin set anyone's
      const helpdesk = (await t.ok('POST', '/api/v1/tokens', { name: 'ar helpdesk', role: 'organization_helpdesk', orgId: o.org.id })).token;
      const byHelpdesk = await t.ok('PUT', url(bob), { mode: 'on', internalMessage: 'Bob is on leave.' }, helpdesk);
      assert.equal(byHelpdesk.internalMessage, 'Bob is on leave.');
      assert.equal(byHelpdesk.externalAudience, 'none');
      assert.equal((await t.ok('GET', url(bob), undefined, bob.token)).internalMessage, 'Bob is on leave.');
      const byAdmin = await t.ok('PUT', url(ann), { mode: 'off' }, o.orgAdmin);
      assert.equal(byAdmin.mode, 'off');
      assert.equal(byAdmin.internalMessage, '', 'PUT replaces the whole settings');
    });

    test('auto-reply: a scheduled window needs both ends in order; messages are bounded', async () => {
      const o = await setupMailOrg(t, 'ar-sched');
      const ann = await person(o, 'ann');
      const url = `${o.orgUrl}/mailboxes/${ann.mailbox.id}/auto-reply`;
      const put = (body: unknown) => t.call('PUT', url, { body, token: ann.token });
      const start = '2031-07-01T08:00:00.000Z';
      const end = '2031-07-15T17:30:00.000Z';
      assertProblem(await put({ mode: 'scheduled' }), 400, 'invalid_schedule');
      assertProblem(await put({ mode: 'scheduled', startsAt: start }), 400, 'invalid_schedule');
      assertProblem(await put({ mode: 'scheduled', endsAt: end }), 400, 'invalid_schedule');
      assertProblem(await put({ mode: 'scheduled', startsAt: end, endsAt: start }), 400, 'invalid_schedule');
      assertProblem(await put({ mode: 'scheduled', startsAt: start, endsAt: start }), 400, 'invalid_schedule');
      assertProblem(await put({ mode: 'scheduled', startsAt: 'next week', endsAt: end }), 400, 'invalid_request');
      assertProblem(await put({ mode: 'sometimes' }), 400, 'invalid_request');
      assertProblem(await put({ mode: 'on', externalAudience: 'everyone' }), 400, 'invalid_request');
      assertProblem(await put({ mode: 'on', internalMessage: 'x'.repeat(64 * 1024 + 1) }), 400, 'invalid_request');
      assertProblem(await put({ mode: 'on', externalMessage: 'é'.repeat(32 * 1024 + 1) }), 400, 'invalid_request'); // 64 KiB + 2 bytes of UTF-8
      assertProblem(await put({ mode: 'on', internalMessage: 'nul \u0000 inside' }), 400, 'invalid_request');
      assert.equal((await t.ok('GET', url, undefined, ann.token)).updatedAt, null, 'nothing was stored');

      const s = await t.ok('PUT', url, { mode: 'scheduled', startsAt: '2031-07-01T10:00:00+02:00', endsAt: end, externalMessage: 'x'.repeat(64 * 1024), externalAudience: 'all' }, ann.token);
      assert.equal(s.mode, 'scheduled');
      assert.equal(s.startsAt, start, 'stored and shown in UTC');
      assert.equal(s.endsAt, end);
      assert.equal(s.externalMessage.length, 64 * 1024);
      assert.deepEqual(await t.ok('GET', url, undefined, o.orgAdmin), s);
    });
  });
}
