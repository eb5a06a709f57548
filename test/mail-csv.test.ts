import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseCsv } from 'csv-parse/sync';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

const HEADER = 'primaryAddress,kind,displayName,planId,aliases,hidden,enabled,forwarding,login';

for (const dialect of DIALECTS) {
  describe(`mail CSV import/export [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    const csv = (o: MailOrg, lines: string[]) => [HEADER, ...lines].join('\n').replaceAll('{d}', o.domainName).replaceAll('{plan}', o.mailboxPlanId);

    /** POSTs a CSV import as the org admin, waits for the batch and returns the request and its items in row order. */
    async function runImport(o: MailOrg, path: string, body: string): Promise<{ request: any; items: any[] }> {
      const r = await t.call('POST', `${o.orgUrl}${path}`, { token: o.orgAdmin, raw: body, contentType: 'text/csv' });
      assert.equal(r.statusCode, 202, r.body);
      assert.equal(r.headers['hmc-request-id'], r.json().request.id);
      const request = await t.settle(r.json().request.id, 60_000);
      const items = (await t.ok('GET', `/api/v1/requests/${request.id}/items?limit=1000`)).items;
      return { request, items: items.sort((a: any, b: any) => a.seq - b.seq) };
    }

    async function exportRows(o: MailOrg, path = '/mailboxes/export'): Promise<Record<string, string>[]> {
      const r = await t.call('GET', `${o.orgUrl}${path}`, { token: o.orgAdmin });
      assert.equal(r.statusCode, 200, r.body);
      assert.match(String(r.headers['content-type']), /^text\/csv/);
      return parseCsv(r.body, { columns: true, skip_empty_lines: true });
    }

    async function user(o: MailOrg, local: string): Promise<any> {
      return t.ok('POST', `${o.orgUrl}/users`, { login: `${local}@${o.domainName}`, displayName: local }, o.orgAdmin);
    }

    test('an import with good and bad rows gives per-row results, never aborts, and the export round-trips it', async () => {
      const a = await setupMailOrg(t, 'csva');
      const ann = await user(a, 'ann');
      await user(a, 'ben');
      const { request, items } = await runImport(a, '/mailboxes/import', csv(a, [
        'ann@{d},user,Ann Lee,{plan},ann.lee@{d} a.lee@{d},false,true,deliver_and_forward:info@{d},', // user found by primaryAddress
        'info@{d},shared,"Info, Desk",{plan},,true,,,',
        'not an address,shared,Bad,{plan},,,,,', // invalid_address
        'nobody@{d},user,Nobody,{plan},,,,,', // no such user: the row fails alone
        'room1@{d},room,=Boardroom,{plan},ann.lee@{d},,,,', // alias already taken by row 1
        'room2@{d},room,Room 2,mpl_01M8ATP19ZVCY5B5BTTDS88ST0,,,,,', // unknown plan
        'eq1@{d},equipment,Beamer,{plan},,maybe,,,', // hidden=maybe: a bad value fails only this row
        'ben.mail@{d},user,Ben,{plan},,,,,ben@{d}', // user named by login, primary address of its own
        'room3@{d},room,=Boardroom,{plan},,,,,', // formula-like display name survives the round trip
        'off@{d},shared,Off,{plan},,,false,,', // imported disabled
      ]));
      assert.equal(request.state, 'succeeded');
      assert.deepEqual(request.items, { total: 10, done: 10, failed: 5 });
      assert.deepEqual(items.map((i) => i.state), ['succeeded', 'succeeded', 'failed', 'failed', 'failed', 'failed', 'failed', 'succeeded', 'succeeded', 'succeeded']);
      assert.equal(items[0].result.userId, ann.id);
      assert.equal(items[2].error.code, 'invalid_address');
      assert.equal(items[3].error.kind, 'invalid');
      assert.equal(items[4].error.code, 'address_taken');
      assert.equal(items[5].error.code, 'plan_not_available');
      assert.equal(items[6].error.kind, 'invalid');
      assert.equal(items[9].result.enabled, false);
      for (const i of items.filter((x) => x.state === 'failed')) assert.ok(i.error.code && i.error.message, JSON.stringify(i));

      // the failed rows left nothing behind: 5 mailboxes, 5 charged
      const sub = await t.ok('GET', `${a.orgUrl}/subscription`, undefined, a.orgAdmin);
      assert.equal(sub.usage.mailboxes, 5);

      const exported = await exportRows(a);
      const byAddress = Object.fromEntries(exported.map((r) => [r.primaryAddress, r]));
      assert.deepEqual(Object.keys(byAddress).sort(), [`ann@${a.domainName}`, `ben.mail@${a.domainName}`, `info@${a.domainName}`, `off@${a.domainName}`, `room3@${a.domainName}`]);
      assert.equal(byAddress[`off@${a.domainName}`]!.enabled, 'false');
      assert.deepEqual(byAddress[`ann@${a.domainName}`], {
        primaryAddress: `ann@${a.domainName}`, kind: 'user', displayName: 'Ann Lee', planId: a.mailboxPlanId,
        aliases: `a.lee@${a.domainName} ann.lee@${a.domainName}`, hidden: 'false', enabled: 'true',
        forwarding: `deliver_and_forward:info@${a.domainName}`, login: `ann@${a.domainName}`,
      });
      assert.equal(byAddress[`info@${a.domainName}`]!.displayName, 'Info, Desk');
      assert.equal(byAddress[`info@${a.domainName}`]!.hidden, 'true');
      assert.equal(byAddress[`ben.mail@${a.domainName}`]!.login, `ben@${a.domainName}`);
      // guarded against spreadsheet formulas on the way out, the same text once imported again (below)
      assert.equal(byAddress[`room3@${a.domainName}`]!.displayName, "'=Boardroom");

      // round trip: the export imported into another organization (its domain, its plan, its users) is the same set
      const b = await setupMailOrg(t, 'csvb');
      await user(b, 'ann');
      await user(b, 'ben');
      const raw = (await t.call('GET', `${a.orgUrl}/mailboxes/export`, { token: a.orgAdmin })).body;
      const moved = raw.replaceAll(a.domainName, b.domainName).replaceAll(a.mailboxPlanId, b.mailboxPlanId);
      const again = await runImport(b, '/mailboxes/import', moved);
      assert.deepEqual(again.request.items, { total: 5, done: 5, failed: 0 }, JSON.stringify(again.items.map((i) => i.error)));
      assert.equal(again.items.find((i) => i.input.primaryAddress === `room3@${b.domainName}`).result.displayName, '=Boardroom');
      const key = (rows: Record<string, string>[], o: MailOrg) =>
        rows.map((r) => JSON.stringify({ ...r, planId: '-' }).replaceAll(o.domainName, 'D')).sort();
      assert.deepEqual(key(await exportRows(b), b), key(exported, a));
    });

    test('aliases: imported per row by mailbox address or id, exported one row per alias', async () => {
      const o = await setupMailOrg(t, 'csval');
      const shared = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `sales@${o.domainName}`, planId: o.mailboxPlanId }, o.orgAdmin);
      const other = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `support@${o.domainName}`, aliases: [`help@${o.domainName}`], planId: o.mailboxPlanId }, o.orgAdmin);
      const d = o.domainName;
      const { request, items } = await runImport(o, '/mailboxes/aliases/import', [
        'mailbox,alias',
        `sales@${d},orders@${d}`,
        `HELP@${d},desk@${d}`, // by an alias, in any case
        `${shared.id},shop@${d}`,
        `support@${d},orders@${d}`, // taken by row 1
        `nobody@${d},x@${d}`, // no such mailbox
        `sales@${d},`, // no alias
      ].join('\n'));
      assert.equal(request.state, 'succeeded');
      assert.deepEqual(items.map((i) => i.state), ['succeeded', 'succeeded', 'succeeded', 'failed', 'failed', 'failed']);
      assert.equal(items[3].error.code, 'address_taken');
      assert.equal(items[4].error.kind, 'invalid');
      const view = await t.ok('GET', `${o.orgUrl}/mailboxes/${other.id}`, undefined, o.orgAdmin);
      assert.deepEqual(view.aliases, [`desk@${d}`, `help@${d}`]);

      const rows = await exportRows(o, '/mailboxes/aliases/export');
      assert.deepEqual(rows.map((r) => `${r.mailbox} ${r.alias}`).sort(), [
        `sales@${d} orders@${d}`, `sales@${d} shop@${d}`, `support@${d} desk@${d}`, `support@${d} help@${d}`,
      ]);
    });

    test('groups: members imported per row by address, name or id; export lists each group with its members', async () => {
      const o = await setupMailOrg(t, 'csvgrp');
      const d = o.domainName;
      const mk = async (name: string, address: string) => {
        const g = await t.ok('POST', `${o.orgUrl}/groups`, { name }, o.orgAdmin);
        await t.ok('PUT', `${o.orgUrl}/groups/${g.id}/mail`, { primaryAddress: address }, o.orgAdmin);
        return g;
      };
      const sales = await mk('sales', `sales@${d}`);
      await mk('all', `all@${d}`);
      await t.ok('POST', `${o.orgUrl}/groups`, { name: 'plain' }, o.orgAdmin); // not mail-enabled: not exported
      const ann = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `ann@${d}`, planId: o.mailboxPlanId }, o.orgAdmin);
      await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `bob@${d}`, aliases: [`robert@${d}`], planId: o.mailboxPlanId }, o.orgAdmin);
      await t.ok('POST', `${o.orgUrl}/contacts`, { displayName: 'Partner', externalAddress: 'partner@elsewhere.example' }, o.orgAdmin);

      const { request, items } = await runImport(o, '/groups/members/import', [
        'group,member',
        `sales@${d},${ann.id}`,
        `sales,robert@${d}`, // group by name, member by alias
        `${sales.id},partner@elsewhere.example`, // a contact
        `all@${d},sales@${d}`, // a group in a group
        `sales@${d},all@${d}`, // would be a cycle
        `sales@${d},nobody@${d}`, // no such recipient
        `nogroup@${d},${ann.id}`, // no such group
      ].join('\n'));
      assert.equal(request.state, 'succeeded');
      assert.deepEqual(items.map((i) => i.state), ['succeeded', 'succeeded', 'succeeded', 'succeeded', 'failed', 'failed', 'failed']);
      assert.equal(items[4].error.code, 'group_cycle');
      for (const i of items.slice(5)) assert.equal(i.error.kind, 'invalid', JSON.stringify(i.error));

      const rows = await exportRows(o, '/groups/export');
      assert.deepEqual(rows.map((r) => [r.name, r.address, r.members, r.hidden, r.sendPolicy]).sort(), [
        ['all', `all@${d}`, `sales@${d}`, 'false', 'organization'],
        ['sales', `sales@${d}`, `ann@${d} bob@${d} partner@elsewhere.example`, 'false', 'organization'],
      ]);
    });

    test('groups import: one row = one whole group, bad rows leave nothing behind, an export imports into another organization', async () => {
      const o = await setupMailOrg(t, 'grpimp', { maxGroups: 4 });
      const other = await setupMailOrg(t, 'grpimpx');
      const d = o.domainName;
      const ann = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `ann@${d}`, planId: o.mailboxPlanId }, o.orgAdmin);
      const bob = await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `bob@${d}`, aliases: [`robert@${d}`], planId: o.mailboxPlanId }, o.orgAdmin);
      const partner = await t.ok('POST', `${o.orgUrl}/contacts`, { displayName: 'Partner', externalAddress: 'partner@elsewhere.example' }, o.orgAdmin);
      const mgr = await user(o, 'mgr');
      const old = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'old' }, o.orgAdmin);
      await t.ok('PUT', `${o.orgUrl}/groups/${old.id}/mail`, { primaryAddress: `old@${d}` }, o.orgAdmin);
      await t.ok('POST', `${other.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `stranger@${other.domainName}`, planId: other.mailboxPlanId }, other.orgAdmin);

      const { request, items } = await runImport(o, '/groups/import', [
        'name,displayName,description,address,hidden,sendPolicy,members,managers',
        `sales,Sales Team,"Sales, all of it",sales@${d},true,listed,ann@${d} ROBERT@${d} partner@elsewhere.example,mgr@${d}`,
        `all,,,all@${d},,anyone,sales old ${ann.id},${mgr.id}`, // a group of an earlier row and an existing one, by name; a member by id
        'plain,Plain,,,,,,', // no address: a directory group only
        `bad-member,,,badm@${d},,,nobody@${d},`, // unknown member
        `foreign,,,foreign@${d},,,stranger@${other.domainName},`, // another organization's mailbox
        `sales,,,sales2@${d},,,,`, // duplicate name
        `loop,,,loop@${d},,,ann@${d} loop,`, // the group in itself
        `taken,,,ann@${d},,,,`, // address held by a mailbox
        `later,,,later@${d},,,zlast,`, // names a group only a later row creates
        `badmgr,,,badmgr@${d},,,,nobody@${d}`, // unknown manager
        `nomail,,,,,,ann@${d},`, // members without an address
        `zlast,,,zlast@${d},false,organization,,`, // the 4th mail-enabled group: the plan is full now
        `extra,,,extra@${d},,,,`, // PLAN_LIMIT
      ].join('\n'));
      assert.equal(request.state, 'succeeded');
      assert.deepEqual(request.items, { total: 13, done: 13, failed: 9 }, JSON.stringify(items.map((i) => i.error)));
      assert.deepEqual(items.map((i) => i.state), [
        'succeeded', 'succeeded', 'succeeded', 'failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'succeeded', 'failed',
      ]);
      assert.deepEqual(items.filter((i) => i.error).map((i) => i.error.code), [
        'recipient_not_in_organization', 'recipient_not_in_organization', 'name_taken', 'group_cycle', 'address_taken',
        'recipient_not_in_organization', 'recipient_not_in_organization', 'invalid_request', 'PLAN_LIMIT',
      ]);
      for (const i of items.filter((x) => x.error)) assert.ok(i.error.message, JSON.stringify(i.error));

      const sales = items[0].result;
      assert.deepEqual([sales.name, sales.displayName, sales.description], ['sales', 'Sales Team', 'Sales, all of it']);
      assert.deepEqual([sales.mail.primaryAddress, sales.mail.hiddenFromAddressBook, sales.mail.sendPolicy], [`sales@${d}`, true, 'listed']);
      const members = await t.ok('GET', `${o.orgUrl}/groups/${sales.id}/mail-members`, undefined, o.orgAdmin);
      assert.deepEqual(members.items.map((m: any) => m.memberId).sort(), [ann.id, bob.id, partner.id].sort());
      const managers = await t.ok('GET', `${o.orgUrl}/groups/${sales.id}/managers`, undefined, o.orgAdmin);
      assert.deepEqual(managers.items.map((m: any) => m.userId), [mgr.id]);
      assert.deepEqual(items[1].result.members.map((m: any) => m.memberId).sort(), [ann.id, old.id, sales.id].sort());
      assert.equal(items[2].result.mail, null);

      // the failed rows left nothing behind: no group, no address, no count
      const groups = await t.ok('GET', `${o.orgUrl}/groups?limit=100`, undefined, o.orgAdmin);
      assert.deepEqual(groups.items.map((g: any) => g.name).sort(), ['all', 'old', 'plain', 'sales', 'zlast']);
      assert.equal((await t.ok('GET', `${o.orgUrl}/subscription`, undefined, o.orgAdmin)).usage.groups, 4);
      for (const local of ['badm', 'foreign', 'sales2', 'loop', 'later', 'badmgr', 'extra']) {
        await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `${local}@${d}`, planId: o.mailboxPlanId }, o.orgAdmin);
      }

      // round trip: the export, moved to another organization's domain, imports into it as the same groups
      const exported = await exportRows(o, '/groups/export');
      assert.deepEqual(exported.map((r) => r.name), ['old', 'sales', 'all', 'zlast']); // creation order: nested groups first
      const b = await setupMailOrg(t, 'grpimpb');
      for (const [local, aliases] of [['ann', []], ['bob', [`robert@${b.domainName}`]]] as const) {
        await t.ok('POST', `${b.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `${local}@${b.domainName}`, aliases, planId: b.mailboxPlanId }, b.orgAdmin);
      }
      await t.ok('POST', `${b.orgUrl}/contacts`, { displayName: 'Partner', externalAddress: 'partner@elsewhere.example' }, b.orgAdmin);
      await user(b, 'mgr'); // managers are exported by login
      const raw = (await t.call('GET', `${o.orgUrl}/groups/export`, { token: o.orgAdmin })).body;
      const again = await runImport(b, '/groups/import', raw.replaceAll(d, b.domainName));
      assert.deepEqual(again.request.items, { total: 4, done: 4, failed: 0 }, JSON.stringify(again.items.map((i) => i.error)));
      const key = (rows: Record<string, string>[], org: MailOrg) => rows.map((r) => JSON.stringify(r).replaceAll(org.domainName, 'D')).sort();
      assert.deepEqual(key(await exportRows(b, '/groups/export'), b), key(exported, o));
      assert.equal((await t.ok('GET', `${b.orgUrl}/subscription`, undefined, b.orgAdmin)).usage.groups, 4);
    });

    test('group export: a group after the groups it contains, with display name, description and managers; imports back in one pass', async () => {
      const o = await setupMailOrg(t, 'grpord');
      const d = o.domainName;
      const mgr = await user(o, 'boss');
      const outer = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'outer', displayName: 'Outer Group', description: 'made first' }, o.orgAdmin);
      const inner = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'inner' }, o.orgAdmin);
      await t.ok('PUT', `${o.orgUrl}/groups/${outer.id}/mail`, { primaryAddress: `outer@${d}` }, o.orgAdmin);
      await t.ok('PUT', `${o.orgUrl}/groups/${inner.id}/mail`, { primaryAddress: `inner@${d}` }, o.orgAdmin);
      await t.ok('POST', `${o.orgUrl}/groups/${outer.id}/mail-members`, { memberId: inner.id }, o.orgAdmin);
      await t.ok('PUT', `${o.orgUrl}/groups/${outer.id}/managers/${mgr.id}`, undefined, o.orgAdmin);
      const rows = await exportRows(o, '/groups/export');
      assert.deepEqual(rows.map((r) => r.name), ['inner', 'outer'], 'the contained group first, though made later');
      assert.deepEqual([rows[1]!.displayName, rows[1]!.description, rows[1]!.managers, rows[1]!.members], ['Outer Group', 'made first', `boss@${d}`, `inner@${d}`]);
      const b = await setupMailOrg(t, 'grpordb');
      await user(b, 'boss');
      const raw = (await t.call('GET', `${o.orgUrl}/groups/export`, { token: o.orgAdmin })).body;
      const again = await runImport(b, '/groups/import', raw.replaceAll(d, b.domainName));
      assert.deepEqual(again.request.items, { total: 2, done: 2, failed: 0 }, JSON.stringify(again.items.map((i) => i.error)));
    });

    test('a malformed CSV, an unknown column or no rows is 400 invalid_csv; nothing is submitted', async () => {
      const o = await setupMailOrg(t, 'csvbad');
      const before = (await t.ok('GET', `/api/v1/requests?limit=1000`)).items.length;
      for (const [path, body] of [
        ['/mailboxes/import', 'primaryAddress,kind\n"unterminated,shared\n'],
        ['/mailboxes/import', 'primaryAddress,colour\na@b.example,red\n'],
        ['/mailboxes/import', HEADER],
        ['/mailboxes/aliases/import', 'mailbox\nx@y.example\n'],
        ['/groups/import', 'address,members\nx@y.example,\n'], // no name column
      ] as const) {
        const r = await t.call('POST', `${o.orgUrl}${path}`, { token: o.orgAdmin, raw: body, contentType: 'text/csv' });
        assert.equal(r.statusCode, 400, `${path}: ${r.body}`);
        assert.match(String(r.headers['content-type']), /application\/problem\+json/);
        assert.equal(r.json().code, 'invalid_csv', r.body);
      }
      assert.equal((await t.ok('GET', `/api/v1/requests?limit=1000`)).items.length, before);
    });

    test('JSON items import the same way; another tenant and a mailbox user get 404', async () => {
      const o = await setupMailOrg(t, 'csvjson');
      const other = await setupMailOrg(t, 'csvother');
      const r = await t.call('POST', `${o.orgUrl}/mailboxes/import`, {
        token: o.orgAdmin, body: { items: [{ kind: 'shared', primaryAddress: `json@${o.domainName}`, planId: o.mailboxPlanId }, { kind: 'shared', planId: o.mailboxPlanId }] },
      });
      assert.equal(r.statusCode, 202, r.body);
      const done = await t.settle(r.json().request.id);
      assert.deepEqual(done.items, { total: 2, done: 2, failed: 1 });

      for (const [method, path] of [['GET', '/mailboxes/export'], ['GET', '/mailboxes/aliases/export'], ['POST', '/mailboxes/import']] as const) {
        const x = await t.call(method, `${o.orgUrl}${path}`, { token: other.orgAdmin, raw: 'mailbox,alias\na,b\n', contentType: 'text/csv' });
        assert.equal(x.statusCode, 404, `${method} ${path}: ${x.body}`);
      }
      const login = `u1@${o.domainName}`;
      await t.ok('POST', `${o.orgUrl}/users`, { login, displayName: 'U1', password: 'a-long-password' }, o.orgAdmin);
      const userToken = (await t.ok('POST', '/api/v1/tokens', { name: 'u1', role: 'user', orgId: o.org.id, userId: (await t.ok('GET', `${o.orgUrl}/users?q=u1`, undefined, o.orgAdmin)).items[0].id })).token;
      assert.equal((await t.call('GET', `${o.orgUrl}/mailboxes/export`, { token: userToken })).statusCode, 404);
    });
  });
}
