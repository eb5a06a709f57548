import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { GiB, PiB, setupMailOrg, TiB, type MailOrg } from './mail-support.js';

/** Public folders through the HTTP API: the tree, quota order, the pool's exact accounting, limits, mail, permissions. */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  assert.equal(r.json().code, code, r.body);
}

for (const dialect of DIALECTS) {
  describe(`public folders [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    const folders = (o: MailOrg) => `${o.orgUrl}/public-folders`;
    const create = async (o: MailOrg, body: Record<string, unknown>) => {
      const r = await t.call('POST', folders(o), { body, token: o.orgAdmin });
      assert.equal(r.statusCode, 201, r.body);
      return r.json();
    };
    const usage = async (o: MailOrg) => (await t.ok('GET', `${o.orgUrl}/subscription`, undefined, o.orgAdmin)).usage;
    async function allFolders(o: MailOrg): Promise<any[]> {
      const out: any[] = [];
      let cursor: string | null = null;
      do {
        const page: any = await t.ok('GET', `${folders(o)}?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, undefined, o.orgAdmin);
        out.push(...page.items);
        cursor = page.next;
      } while (cursor);
      return out;
    }
    /** The seed's bug (b): the pool's counter is exactly the sum of the remaining folders' prohibitPostQuota. */
    async function assertPoolExact(o: MailOrg, label: string) {
      const list = await allFolders(o);
      const sum = list.reduce((s, f) => s + BigInt(f.prohibitPostQuota), 0n);
      for (const f of list) assert.equal(f.chargedBytes, f.prohibitPostQuota, `${label}: ${f.path} is charged its prohibitPostQuota`);
      const u = await usage(o);
      assert.equal(BigInt(u.publicFolderBytes), sum, `${label}: usage.publicFolderBytes ${u.publicFolderBytes} ≠ sum ${sum}`);
      assert.equal(u.publicFolders, list.length, `${label}: usage.publicFolders`);
    }

    test('(c) issueWarningQuota ≤ prohibitPostQuota works; out-of-order values are refused and change nothing', async () => {
      const o = await setupMailOrg(t, 'pf-order');
      const f = await create(o, { name: 'Sales', issueWarningQuota: 900 * 1024 ** 2, prohibitPostQuota: GiB, maxItemSize: 10 * 1024 ** 2 });
      assert.match(f.id, /^pfd_/);
      assert.equal(f.path, '/Sales');
      assert.equal(f.issueWarningQuota, 900 * 1024 ** 2);
      assert.equal(f.prohibitPostQuota, GiB);
      assert.equal(f.maxItemSize, 10 * 1024 ** 2);
      assert.equal(f.chargedBytes, GiB);
      assert.deepEqual(await t.ok('GET', `${folders(o)}/${f.id}`, undefined, o.orgAdmin), f);
      const equal = await create(o, { name: 'Equal', issueWarningQuota: GiB, prohibitPostQuota: GiB });
      assert.equal(equal.issueWarningQuota, GiB);
      const defaulted = await create(o, { name: 'Defaults', prohibitPostQuota: 5 * GiB });
      assert.equal(defaulted.issueWarningQuota, 5 * GiB);
      assert.equal(defaulted.maxItemSize, 5 * GiB);

      const before = await usage(o);
      assertProblem(await t.call('POST', folders(o), { body: { name: 'Bad', issueWarningQuota: GiB + 1, prohibitPostQuota: GiB }, token: o.orgAdmin }), 400, 'QUOTA_ORDER');
      assertProblem(await t.call('PATCH', `${folders(o)}/${f.id}`, { body: { prohibitPostQuota: 800 * 1024 ** 2 }, token: o.orgAdmin }), 400, 'QUOTA_ORDER');
      assertProblem(await t.call('PATCH', `${folders(o)}/${f.id}`, { body: { issueWarningQuota: 2 * GiB }, token: o.orgAdmin }), 400, 'QUOTA_ORDER');
      assertProblem(await t.call('POST', folders(o), { body: { name: 'Neg', prohibitPostQuota: -1 }, token: o.orgAdmin }), 400, 'invalid_request');
      assert.deepEqual(await usage(o), before);
      assert.deepEqual(await t.ok('GET', `${folders(o)}/${f.id}`, undefined, o.orgAdmin), f);
      // both moved together keep the order
      const both = await t.ok('PATCH', `${folders(o)}/${f.id}`, { issueWarningQuota: 100, prohibitPostQuota: 200 }, o.orgAdmin);
      assert.equal(both.issueWarningQuota, 100);
      assert.equal(both.prohibitPostQuota, 200);
      await assertPoolExact(o, 'after the order checks');
    });

    test('(b) after creating, resizing and deleting folders the pool equals the sum of prohibitPostQuota exactly, near 2^53 too', async () => {
      const o = await setupMailOrg(t, 'pf-pool', { publicFolderBytes: 8 * PiB });
      assert.equal(8 * PiB, 2 ** 53);
      const big = await create(o, { name: 'Archive', prohibitPostQuota: 2 ** 52 + 1 });
      const tib = await create(o, { name: 'Projects', prohibitPostQuota: 3 * TiB + 7 });
      const child = await create(o, { name: 'Alpha', parentId: tib.id, prohibitPostQuota: 16 * TiB - 1 });
      const grand = await create(o, { name: 'Deep', parentId: child.id, prohibitPostQuota: 12_345_678_901 });
      await assertPoolExact(o, 'after creating');

      // resize up and down, by odd amounts, near the top of the exact range
      await t.ok('PATCH', `${folders(o)}/${big.id}`, { prohibitPostQuota: 2 ** 52 + 2 ** 51 + 3 }, o.orgAdmin);
      await t.ok('PATCH', `${folders(o)}/${tib.id}`, { issueWarningQuota: 2 * TiB, prohibitPostQuota: 2 * TiB + 1 }, o.orgAdmin);
      await assertPoolExact(o, 'after resizing');
      // what is left of the pool fits exactly, one byte more does not
      const used = BigInt((await usage(o)).publicFolderBytes);
      const room = 2n ** 53n - used;
      assertProblem(await t.call('POST', folders(o), { body: { name: 'TooBig', prohibitPostQuota: Number(room + 1n) }, token: o.orgAdmin }), 422, 'STORAGE_LIMIT');
      assertProblem(await t.call('PATCH', `${folders(o)}/${grand.id}`, { body: { prohibitPostQuota: Number(room + 1n) + 12_345_678_901 }, token: o.orgAdmin }), 422, 'STORAGE_LIMIT');
      const fill = await create(o, { name: 'Fill', prohibitPostQuota: Number(room) });
      assert.equal((await usage(o)).publicFolderBytes, 2 ** 53);
      await assertPoolExact(o, 'with the pool full');
      assertProblem(await t.call('POST', folders(o), { body: { name: 'OneMore', prohibitPostQuota: 1 }, token: o.orgAdmin }), 422, 'STORAGE_LIMIT');

      await t.ok('DELETE', `${folders(o)}/${fill.id}`, undefined, o.orgAdmin);
      await assertPoolExact(o, 'after deleting one');
      // a subtree is refused without recursive, deleted whole with it
      assertProblem(await t.call('DELETE', `${folders(o)}/${tib.id}`, { token: o.orgAdmin }), 409, 'folder_has_subfolders');
      await assertPoolExact(o, 'after a refused delete');
      const d = await t.ok('DELETE', `${folders(o)}/${tib.id}?recursive=true`, undefined, o.orgAdmin);
      assert.deepEqual([...d.deleted].sort(), [tib.id, child.id, grand.id].sort());
      assert.equal(d.releasedBytes, 2 * TiB + 1 + 16 * TiB - 1 + 12_345_678_901);
      for (const id of [tib.id, child.id, grand.id]) assertProblem(await t.call('GET', `${folders(o)}/${id}`, { token: o.orgAdmin }), 404, 'not_found');
      await assertPoolExact(o, 'after a recursive delete');
      assert.deepEqual((await allFolders(o)).map((f) => f.id), [big.id]);
      await t.ok('DELETE', `${folders(o)}/${big.id}`, undefined, o.orgAdmin);
      const u = await usage(o);
      assert.equal(u.publicFolderBytes, 0);
      assert.equal(u.publicFolders, 0);
    });

    test('the tree: paths unique per organization, rename moves the subtree, filters', async () => {
      const o = await setupMailOrg(t, 'pf-tree');
      const other = await setupMailOrg(t, 'pf-tree-other');
      const sales = await create(o, { name: 'Sales', prohibitPostQuota: GiB });
      const emea = await create(o, { name: 'EMEA', parentId: sales.id, prohibitPostQuota: GiB });
      const de = await create(o, { name: 'DE_100%', parentId: emea.id, prohibitPostQuota: GiB });
      assert.equal(de.path, '/Sales/EMEA/DE_100%');
      assertProblem(await t.call('POST', folders(o), { body: { name: 'Sales', prohibitPostQuota: GiB }, token: o.orgAdmin }), 409, 'name_taken');
      assertProblem(await t.call('POST', folders(o), { body: { name: 'EMEA', parentId: sales.id, prohibitPostQuota: GiB }, token: o.orgAdmin }), 409, 'name_taken');
      assertProblem(await t.call('POST', folders(o), { body: { name: 'a/b', prohibitPostQuota: GiB }, token: o.orgAdmin }), 400, 'invalid_request');
      // the same path in another organization is fine; a parent of another organization is not found
      await create(other, { name: 'Sales', prohibitPostQuota: GiB });
      assertProblem(await t.call('POST', folders(other), { body: { name: 'X', parentId: sales.id, prohibitPostQuota: GiB } }), 404, 'not_found');

      const renamed = await t.ok('PATCH', `${folders(o)}/${sales.id}`, { name: 'Revenue' }, o.orgAdmin);
      assert.equal(renamed.path, '/Revenue');
      assert.equal((await t.ok('GET', `${folders(o)}/${emea.id}`, undefined, o.orgAdmin)).path, '/Revenue/EMEA');
      assert.equal((await t.ok('GET', `${folders(o)}/${de.id}`, undefined, o.orgAdmin)).path, '/Revenue/EMEA/DE_100%');
      const sales2 = await create(o, { name: 'Sales', prohibitPostQuota: GiB });
      assertProblem(await t.call('PATCH', `${folders(o)}/${sales2.id}`, { body: { name: 'Revenue' }, token: o.orgAdmin }), 409, 'name_taken');
      assert.equal((await t.ok('GET', `${folders(o)}/${sales2.id}`, undefined, o.orgAdmin)).path, '/Sales');

      const ids = (page: any) => page.items.map((f: any) => f.id).sort();
      assert.deepEqual(ids(await t.ok('GET', `${folders(o)}?root=true`, undefined, o.orgAdmin)), [sales.id, sales2.id].sort());
      assert.deepEqual(ids(await t.ok('GET', `${folders(o)}?parentId=${emea.id}`, undefined, o.orgAdmin)), [de.id]);
      assert.deepEqual(ids(await t.ok('GET', `${folders(o)}?q=${encodeURIComponent('/Revenue/EMEA')}`, undefined, o.orgAdmin)), [emea.id, de.id].sort());
      assert.deepEqual(ids(await t.ok('GET', `${folders(o)}?q=${encodeURIComponent('/Revenue/EMEA/DE_1')}`, undefined, o.orgAdmin)), [de.id]);
      assert.deepEqual(ids(await t.ok('GET', `${folders(o)}?q=${encodeURIComponent('/Revenue/EMEA/DE%')}`, undefined, o.orgAdmin)), []);
      // another organization's admin sees none of it
      assertProblem(await t.call('GET', `${folders(o)}/${sales.id}`, { token: other.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('GET', `${other.orgUrl}/public-folders/${sales.id}`, { token: other.orgAdmin }), 404, 'not_found');
      assert.equal((await t.ok('GET', `${other.orgUrl}/public-folders`, undefined, other.orgAdmin)).items.length, 1);
    });

    test('PLAN_LIMIT on maxPublicFolders; feature_disabled without the publicFolders feature', async () => {
      const o = await setupMailOrg(t, 'pf-limit', { maxPublicFolders: 2 });
      const a = await create(o, { name: 'A', prohibitPostQuota: GiB });
      await create(o, { name: 'B', prohibitPostQuota: GiB });
      assertProblem(await t.call('POST', folders(o), { body: { name: 'C', prohibitPostQuota: GiB }, token: o.orgAdmin }), 422, 'PLAN_LIMIT');
      assert.equal((await usage(o)).publicFolders, 2);
      await t.ok('DELETE', `${folders(o)}/${a.id}`, undefined, o.orgAdmin);
      await create(o, { name: 'C', prohibitPostQuota: GiB });
      await assertPoolExact(o, 'at the limit');

      const off = await setupMailOrg(t, 'pf-off', { features: { publicFolders: false } });
      assertProblem(await t.call('POST', folders(off), { body: { name: 'A', prohibitPostQuota: GiB }, token: off.orgAdmin }), 403, 'feature_disabled');
      assert.deepEqual((await t.ok('GET', folders(off), undefined, off.orgAdmin)).items, []);
      assert.equal((await usage(off)).publicFolders, 0);
    });

    test('a mail-enabled folder holds its address; deleting it quarantines the address', async () => {
      const o = await setupMailOrg(t, 'pf-mail');
      const f = await create(o, { name: 'Support', prohibitPostQuota: GiB });
      assert.equal(f.mailEnabled, false);
      assert.equal(f.primaryAddress, null);
      const m = await t.ok('PUT', `${folders(o)}/${f.id}/mail`, { primaryAddress: `Support@${o.domainName.toUpperCase()}`, hiddenFromAddressBook: true }, o.orgAdmin);
      assert.equal(m.mailEnabled, true);
      assert.equal(m.primaryAddress, `support@${o.domainName}`);
      assert.equal(m.hiddenFromAddressBook, true);
      const g = await create(o, { name: 'Other', prohibitPostQuota: GiB });
      assertProblem(await t.call('PUT', `${folders(o)}/${g.id}/mail`, { body: { primaryAddress: `support@${o.domainName}` }, token: o.orgAdmin }), 409, 'address_taken');
      assertProblem(await t.call('PUT', `${folders(o)}/${g.id}/mail`, { body: { primaryAddress: 'x@not-accepted.example' }, token: o.orgAdmin }), 400, 'domain_not_accepted');
      // disabling releases it into quarantine: nobody else may take it, the folder itself may
      const off = await t.ok('DELETE', `${folders(o)}/${f.id}/mail`, undefined, o.orgAdmin);
      assert.equal(off.mailEnabled, false);
      assertProblem(await t.call('PUT', `${folders(o)}/${g.id}/mail`, { body: { primaryAddress: `support@${o.domainName}` }, token: o.orgAdmin }), 409, 'address_quarantined');
      assert.equal((await t.ok('PUT', `${folders(o)}/${f.id}/mail`, { primaryAddress: `support@${o.domainName}` }, o.orgAdmin)).primaryAddress, `support@${o.domainName}`);
      await t.ok('DELETE', `${folders(o)}/${f.id}`, undefined, o.orgAdmin);
      assertProblem(await t.call('PUT', `${folders(o)}/${g.id}/mail`, { body: { primaryAddress: `support@${o.domainName}` }, token: o.orgAdmin }), 409, 'address_quarantined');
      assertProblem(await t.call('DELETE', `${folders(o)}/${g.id}/mail`, { token: o.orgAdmin }), 404, 'not_found');
    });

    test('permissions for users and mail-enabled groups of the same organization only', async () => {
      const o = await setupMailOrg(t, 'pf-perm');
      const other = await setupMailOrg(t, 'pf-perm-other');
      const f = await create(o, { name: 'Shared', prohibitPostQuota: GiB });
      const user = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login: `ann@${o.domainName}` });
      const foreign = await t.ok('POST', `${other.orgUrl}/users?wait=true`, { login: `bob@${other.domainName}` });
      const group = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'editors' });
      const perms = async () => (await t.ok('GET', `${folders(o)}/${f.id}/permissions`, undefined, o.orgAdmin)).items
        .map((p: any) => `${p.principalKind}:${p.principalId}:${p.role}`).sort();

      const p1 = await t.ok('PUT', `${folders(o)}/${f.id}/permissions/users/${user.id}`, { role: 'owner' }, o.orgAdmin);
      assert.deepEqual(p1, { folderId: f.id, principalId: user.id, principalKind: 'user', role: 'owner' });
      await t.ok('PUT', `${folders(o)}/${f.id}/permissions/users/${user.id}`, { role: 'reviewer' }, o.orgAdmin);
      assertProblem(await t.call('PUT', `${folders(o)}/${f.id}/permissions/users/${user.id}`, { body: { role: 'god' }, token: o.orgAdmin }), 400, 'invalid_request');
      // a plain security group must be mail-enabled first
      assertProblem(await t.call('PUT', `${folders(o)}/${f.id}/permissions/groups/${group.id}`, { body: { role: 'editor' }, token: o.orgAdmin }), 409, 'group_not_mail_enabled');
      await t.ok('PUT', `${o.orgUrl}/groups/${group.id}/mail`, { primaryAddress: `editors@${o.domainName}` }, o.orgAdmin);
      await t.ok('PUT', `${folders(o)}/${f.id}/permissions/groups/${group.id}`, { role: 'editor' }, o.orgAdmin);
      assert.deepEqual(await perms(), [`group:${group.id}:editor`, `user:${user.id}:reviewer`].sort());

      // another organization's user: 404 on the path for the organization's admin, refused for the provider
      assertProblem(await t.call('PUT', `${folders(o)}/${f.id}/permissions/users/${foreign.id}`, { body: { role: 'author' }, token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('PUT', `${folders(o)}/${f.id}/permissions/users/${foreign.id}`, { body: { role: 'author' } }), 400, 'recipient_not_in_organization');
      assert.equal((await perms()).length, 2);

      // disabling the group's mail takes its permissions with it
      await t.ok('DELETE', `${o.orgUrl}/groups/${group.id}/mail`, undefined, o.orgAdmin);
      assert.deepEqual(await perms(), [`user:${user.id}:reviewer`]);
      await t.ok('DELETE', `${folders(o)}/${f.id}/permissions/users/${user.id}`, undefined, o.orgAdmin);
      assertProblem(await t.call('DELETE', `${folders(o)}/${f.id}/permissions/users/${user.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assert.deepEqual(await perms(), []);
      // the organization's helpdesk reads but does not change
      const helpdesk = (await t.ok('POST', '/api/v1/tokens', { name: 'pf helpdesk', role: 'organization_helpdesk', orgId: o.org.id })).token;
      assert.equal((await t.ok('GET', `${folders(o)}/${f.id}`, undefined, helpdesk)).id, f.id);
      assertProblem(await t.call('PATCH', `${folders(o)}/${f.id}`, { body: { name: 'X' }, token: helpdesk }), 403, 'forbidden');
    });
  });
}
