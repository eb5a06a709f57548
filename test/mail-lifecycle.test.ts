import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';

/**
 * Hosted Email objects through the directory's lifecycles: a user with a mailbox, an organization moved to
 * another reseller, an organization deleted (forced) and purged. The directory does not know the mail area;
 * the hooks registered by src/app.ts must keep both consistent.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

const MAIL_TABLES = ['accepted_domains', 'mailboxes', 'contacts', 'mail_groups', 'mail_group_members', 'group_managers', 'public_folders',
  'public_folder_permissions', 'send_grants', 'mailbox_access', 'addresses', 'org_subscriptions', 'org_available_plans'];

for (const dialect of DIALECTS) {
  describe(`mail objects in directory lifecycles [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    const problem = (r: any) => [r.statusCode, r.json().code];
    const db = () => t.platform.store.db;

    /** A mail-enabled org with a user mailbox, a shared mailbox, a contact, a mail group (managed, with members), a folder and grants. */
    async function populated(name: string): Promise<MailOrg & { user: any; mbx: any; shared: any; contact: any; group: any; folder: any }> {
      const m = await setupMailOrg(t, name);
      const user = await t.ok('POST', `${m.orgUrl}/users?wait=true`, { login: `ann@${m.domainName}`, password: 'lifecycle-pass-1' });
      const mbx = await t.ok('POST', `${m.orgUrl}/mailboxes`, { kind: 'user', userId: user.id, planId: m.mailboxPlanId });
      const shared = await t.ok('POST', `${m.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `desk@${m.domainName}`, planId: m.mailboxPlanId });
      const contact = await t.ok('POST', `${m.orgUrl}/contacts`, { displayName: 'Partner', externalAddress: `partner@${name}-elsewhere.example` });
      const group = await t.ok('POST', `${m.orgUrl}/groups`, { name: 'team' });
      await t.ok('PUT', `${m.orgUrl}/groups/${group.id}/mail`, { primaryAddress: `team@${m.domainName}` });
      for (const id of [mbx.id, shared.id, contact.id]) await t.ok('POST', `${m.orgUrl}/groups/${group.id}/mail-members`, { memberId: id });
      await t.ok('PUT', `${m.orgUrl}/groups/${group.id}/managers/${user.id}`);
      const folder = await t.ok('POST', `${m.orgUrl}/public-folders`, { name: 'projects', issueWarningQuota: 1024, prohibitPostQuota: 2048 });
      await t.ok('PUT', `${m.orgUrl}/public-folders/${folder.id}/permissions/users/${user.id}`, { role: 'editor' });
      await t.ok('PUT', `${m.orgUrl}/mailboxes/${shared.id}/send-as/${user.id}`);
      return { ...m, user, mbx, shared, contact, group, folder };
    }

    test('a user with a mailbox is deleted only after its mailbox; the purge clears the user\'s grants and roles', async () => {
      const o = await populated('lc-user');
      assert.deepEqual(problem(await t.call('DELETE', `${o.orgUrl}/users/${o.user.id}`)), [409, 'user_has_mailbox']);
      await t.ok('DELETE', `${o.orgUrl}/mailboxes/${o.mbx.id}`);
      const d = await t.call('DELETE', `${o.orgUrl}/users/${o.user.id}`);
      assert.ok(d.statusCode < 300, d.body);
      const req = await t.settle(d.headers['hmc-request-id'] as string);
      assert.equal(req.state, 'succeeded', JSON.stringify(req.error));
      const count = async (table: string, col: string) => Number((await db().selectFrom(table).select((eb) => eb.fn.countAll().as('n')).where(col, '=', o.user.id).executeTakeFirstOrThrow()).n);
      assert.equal(await count('group_managers', 'user_id'), 0);
      assert.equal(await count('send_grants', 'trustee_user_id'), 0);
      assert.equal(await count('public_folder_permissions', 'principal_id'), 0);
      assert.equal(await count('mailboxes', 'user_id'), 0, 'the retained mailbox ended with its user');
      assert.equal(await count('users', 'id'), 0);
      assert.equal((await t.ok('GET', `${o.orgUrl}/mailboxes/${o.shared.id}`)).state, 'active', 'other mailboxes are untouched');
    });

    test('moving an organization moves its mail objects to the new reseller', async () => {
      const o = await populated('lc-move');
      const to = await t.tenant('lc-move-to');
      const m = await t.call('POST', `${o.orgUrl}/move`, { body: { resellerId: to.reseller.id } });
      assert.ok(m.statusCode < 300, m.body);
      for (const url of [`${o.orgUrl}/mailboxes/${o.shared.id}`, `${o.orgUrl}/contacts/${o.contact.id}`, `${o.orgUrl}/public-folders/${o.folder.id}`, `${o.orgUrl}/accepted-domains`]) {
        assert.equal((await t.call('GET', url, { token: to.resellerAdmin })).statusCode, 200, `the new reseller sees ${url}`);
        assert.equal((await t.call('GET', url, { token: o.resellerAdmin })).statusCode, 404, `the old reseller no longer sees ${url}`);
      }
      for (const table of MAIL_TABLES.filter((x) => ['accepted_domains', 'mailboxes', 'contacts', 'mail_groups', 'public_folders', 'addresses', 'org_subscriptions', 'org_available_plans'].includes(x))) {
        const stale = await db().selectFrom(table).select('org_id').where('org_id', '=', o.org.id).where('reseller_id', '<>', to.reseller.id).execute();
        assert.equal(stale.length, 0, `${table} rows still carry the old reseller`);
      }
    });

    test('an organization with mailboxes is deleted only when forced; its addresses are quarantined at once and its rows purged', async () => {
      const o = await populated('lc-del');
      // without users (the user mailbox deleted, the user gone) it still holds a shared mailbox
      await t.ok('DELETE', `${o.orgUrl}/mailboxes/${o.mbx.id}`);
      await t.settle((await t.call('DELETE', `${o.orgUrl}/users/${o.user.id}`)).headers['hmc-request-id'] as string);
      assert.deepEqual(problem(await t.call('DELETE', o.orgUrl)), [409, 'organization_has_mailboxes']);
      assert.equal((await t.ok('GET', `${o.orgUrl}/mailboxes/${o.shared.id}`)).state, 'active', 'a refused delete changes nothing');

      const d = await t.call('DELETE', `${o.orgUrl}?force=true`);
      assert.ok(d.statusCode < 300, d.body);
      const req = await t.settle(d.headers['hmc-request-id'] as string);
      assert.equal(req.state, 'succeeded', JSON.stringify(req.error));
      for (const table of MAIL_TABLES) {
        const left = await db().selectFrom(table).select((eb) => eb.fn.countAll().as('n')).where('org_id', '=', o.org.id).executeTakeFirstOrThrow();
        assert.equal(Number(left.n), 0, `${table} rows of the purged organization remain`);
      }
      const q = await db().selectFrom('address_quarantine').select(['address', 'former_recipient_id']).where('org_id', '=', o.org.id).orderBy('address').execute();
      assert.deepEqual(q.map((r) => r.address), [`ann@${o.domainName}`, `desk@${o.domainName}`, `team@${o.domainName}`].sort());
      const events = (await t.ok('GET', `/api/v1/events?org=${o.org.id}&event=deleted&limit=1000`)).items;
      assert.ok(events.some((e: any) => e.objectType === 'mailbox' && e.objectId === o.shared.id), 'the mailbox deletion is billed');

      // the domain is free again, but not its addresses: another organization cannot receive desk@ yet
      const next = await setupMailOrg(t, 'lc-next');
      const dom = await t.ok('POST', `${next.orgUrl}/domains`, { name: o.domainName });
      await t.ok('PUT', `${next.orgUrl}/domains/${dom.id}/accepted`, {});
      const r = await t.call('POST', `${next.orgUrl}/mailboxes`, { body: { kind: 'shared', primaryAddress: `desk@${o.domainName}`, planId: next.mailboxPlanId } });
      assert.deepEqual(problem(r), [409, 'address_quarantined']);
    });
  });
}
