import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { FakeIo } from '../src/cli/fake-io.js';
import { inProcessIo } from './cli-support.js';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { GiB, setupMailOrg, TiB, ensureStores } from './mail-support.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

/**
 * The plan and mail commands of `hmc` against the real API, in process: the CLI's fetch is answered by
 * the platform's Fastify instance (app.inject), so every path, method and body a command sends is checked
 * by the routes' own schemas. Separate processes over HTTP are test/cli.test.ts's job.
 */
for (const dialect of DIALECTS) {
  describe(`hmc plan and mail commands [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => {
      t = await startTestPlatform(dialect);
      await ensureStores(t);
    });
    after(async () => { await t?.close(); });

    const io = (token: string, stdin = ''): FakeIo => inProcessIo(t, token, stdin);

    /** Runs `hmc ... --json` and returns the parsed answer; the exit code must be 0. */
    async function hmc(token: string, argv: string[], stdin = ''): Promise<any> {
      const x = io(token, stdin);
      const code = await main([...argv, '--json'], x);
      assert.equal(code, 0, `hmc ${argv.join(' ')}: ${x.errors()} ${x.output()}`);
      return JSON.parse(x.output());
    }

    test('plans: create with binary sizes, subscribe, offer, edit with re-apply', async () => {
      const tn = await t.tenant('cliplan');
      const ceiling = await hmc(t.adminToken, ['plan', 'org', 'create', 'cliplan-ceiling', '--storage', '8PiB', '--public-folder-storage', '2TiB', '--feature', 'publicFolders']);
      assert.equal(ceiling.storageBytes, 2 ** 53);
      assert.equal(ceiling.publicFolderBytes, 2 * TiB);
      await hmc(t.adminToken, ['reseller', 'set-plan', tn.reseller.id, ceiling.id]);
      assert.equal((await hmc(t.adminToken, ['reseller', 'plan', tn.reseller.id])).orgPlanId, ceiling.id);

      const orgPlan = await hmc(tn.resellerAdmin, ['plan', 'org', 'create', 'gold', '--storage', '2TiB', '--max-mailboxes', '10', '--public-folder-storage', '10GiB', '--feature', 'publicFolders']);
      const mbxPlan = await hmc(tn.resellerAdmin, [
        'plan', 'mailbox', 'create', 'std', '--issue-warning-quota', '900MiB', '--prohibit-send-quota', '950MiB', '--prohibit-send-receive-quota', '1GiB', '--protocols', 'imap,webmail',
      ]);
      assert.deepEqual([mbxPlan.prohibitSendReceiveQuota, mbxPlan.protocols], [GiB, ['imap', 'webmail']]);
      const sub = await hmc(tn.resellerAdmin, ['org', 'subscribe', tn.org.id, orgPlan.id, '--storage', '16TiB']);
      assert.equal(sub.allocation.mailboxBytes, 16 * TiB);
      assert.equal((await hmc(tn.orgAdmin, ['org', 'subscription', tn.org.id])).orgPlanId, orgPlan.id);
      await hmc(tn.resellerAdmin, ['org', 'plans', 'add', tn.org.id, mbxPlan.id]);
      assert.deepEqual((await hmc(tn.orgAdmin, ['org', 'plans', 'list', tn.org.id])).items.map((p: any) => p.planId), [mbxPlan.id]);
      assert.deepEqual((await hmc(tn.resellerAdmin, ['plan', 'mailbox', 'list', '--owner', tn.reseller.id])).items.map((p: any) => p.id), [mbxPlan.id]);

      // a mailbox on the plan, then an edit: the answer names the re-apply batch, printed by the readable form
      await hmc(tn.orgAdmin, ['accepted-domain', 'set', tn.org.id, tn.domain.id]);
      await hmc(tn.orgAdmin, ['mailbox', 'create', tn.org.id, '--kind', 'shared', '--address', `desk@${tn.domain.name}`, '--plan', mbxPlan.id]);
      const x = io(tn.resellerAdmin);
      assert.equal(await main(['plan', 'mailbox', 'update', mbxPlan.id, '--prohibit-send-receive-quota', '2GiB'], x), 0, x.errors());
      const m = /re-applying to its mailboxes: request (req_\w+)/.exec(x.output());
      assert.ok(m, x.output());
      assert.equal((await t.settle(m[1]!)).state, 'succeeded');

      await hmc(tn.resellerAdmin, ['org', 'plans', 'remove', tn.org.id, mbxPlan.id]);
      const unused = await hmc(tn.resellerAdmin, ['plan', 'org', 'create', 'unused', '--storage', '1GiB']);
      await hmc(tn.resellerAdmin, ['plan', 'org', 'update', unused.id, '--max-domains', 'unlimited', '--display-name', 'Unused']);
      await hmc(tn.resellerAdmin, ['plan', 'org', 'delete', unused.id]);
    });

    test('mail objects: accepted domains, mailboxes, aliases, contacts, public folders, group mail, auto-reply', async () => {
      const o = await setupMailOrg(t, 'climail');
      const d = o.domainName;
      const admin = o.orgAdmin;
      assert.deepEqual((await hmc(admin, ['accepted-domain', 'list', o.org.id])).items.map((a: any) => a.domainId), [o.domainId]);

      const user = await t.ok('POST', `${o.orgUrl}/users`, { login: `zoe@${d}`, displayName: 'Zoe' }, admin);
      const mbx = await hmc(admin, ['mailbox', 'create', o.org.id, '--user', user.id, '--plan', o.mailboxPlanId, '--alias', `z@${d}`, '--prohibit-send-receive-quota', '512MiB',
        '--issue-warning-quota', '400MiB', '--prohibit-send-quota', '450MiB']);
      assert.equal(mbx.primaryAddress, `zoe@${d}`);
      assert.equal(mbx.quotas.prohibitSendReceiveQuota, 512 * 1024 ** 2);
      assert.deepEqual((await hmc(admin, ['mailbox', 'alias', 'add', o.org.id, mbx.id, `zoe.x@${d}`])).aliases, [`z@${d}`, `zoe.x@${d}`]);
      assert.deepEqual((await hmc(admin, ['mailbox', 'alias', 'remove', o.org.id, mbx.id, `z@${d}`])).aliases, [`zoe.x@${d}`]);
      assert.equal((await hmc(admin, ['mailbox', 'update', o.org.id, mbx.id, '--display-name', 'Zoe Z', '--hidden'])).hiddenFromAddressBook, true);
      assert.equal((await hmc(admin, ['mailbox', 'show', o.org.id, mbx.id])).displayName, 'Zoe Z');
      assert.deepEqual((await hmc(admin, ['mailbox', 'list', o.org.id, '--q', 'zoe'])).items.map((m: any) => m.id), [mbx.id]);

      const set = await hmc(admin, ['auto-reply', 'set', o.org.id, mbx.id, '--mode', 'scheduled', '--start', '2030-07-01T00:00:00Z', '--end', '2030-07-15T00:00:00Z', '--external-message', 'Away']);
      assert.equal(set.mode, 'scheduled');
      assert.equal((await hmc(admin, ['auto-reply', 'show', o.org.id, mbx.id])).externalMessage, 'Away');

      const deleted = await hmc(admin, ['mailbox', 'delete', o.org.id, mbx.id]);
      assert.equal(deleted.state, 'deleted');
      assert.equal((await hmc(admin, ['mailbox', 'restore', o.org.id, mbx.id])).state, 'active');

      const contact = await hmc(admin, ['contact', 'create', o.org.id, 'partner@elsewhere.example', '--display-name', 'Partner']);
      assert.deepEqual((await hmc(admin, ['contact', 'list', o.org.id])).items.map((c: any) => c.id), [contact.id]);
      await hmc(admin, ['contact', 'delete', o.org.id, contact.id]);

      const top = await hmc(admin, ['public-folder', 'create', o.org.id, 'Sales', '--prohibit-post-quota', '2GiB', '--issue-warning-quota', '1GiB']);
      const sub = await hmc(admin, ['public-folder', 'create', o.org.id, 'Leads', '--parent', top.id, '--prohibit-post-quota', '1GiB']);
      assert.equal((await hmc(admin, ['public-folder', 'update', o.org.id, sub.id, '--prohibit-post-quota', '3GiB', '--issue-warning-quota', '2GiB'])).prohibitPostQuota, 3 * GiB);
      assert.equal((await hmc(admin, ['public-folder', 'list', o.org.id, '--parent', top.id])).items.length, 1);
      assert.equal((await hmc(admin, ['org', 'subscription', o.org.id])).usage.publicFolderBytes, 5 * GiB);
      const refused = io(admin);
      assert.equal(await main(['public-folder', 'delete', o.org.id, top.id], refused), 1);
      assert.match(refused.errors(), /code folder_has_subfolders/);
      await hmc(admin, ['public-folder', 'delete', o.org.id, top.id, '--recursive']);
      assert.equal((await hmc(admin, ['org', 'subscription', o.org.id])).usage.publicFolderBytes, 0);

      const group = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'staff' }, admin);
      const enabled = await hmc(admin, ['group', 'mail', 'enable', o.org.id, group.id, `staff@${d}`, '--send-policy', 'anyone']);
      assert.deepEqual([enabled.primaryAddress, enabled.sendPolicy], [`staff@${d}`, 'anyone']);
      await hmc(admin, ['group', 'mail', 'disable', o.org.id, group.id]);

      // a second domain: accepted as an alias of the first, then removed
      const extra = await t.ok('POST', `${o.orgUrl}/domains`, { name: `alias-${d}` });
      const alias = await hmc(admin, ['accepted-domain', 'set', o.org.id, extra.id, '--alias-of', o.domainId]);
      assert.equal(alias.aliasOf, o.domainId);
      await hmc(admin, ['accepted-domain', 'remove', o.org.id, extra.id]);
    });

    test('import and export mailboxes, groups and aliases through the CLI: per-row report, exit 1 on a bad row, CSV to a file', async () => {
      const o = await setupMailOrg(t, 'cliimp');
      const file = join(t.tdb.dir, 'mailboxes.csv');
      writeFileSync(file, [
        'primaryAddress,kind,displayName,planId,aliases',
        `info@${o.domainName},shared,Info,${o.mailboxPlanId},help@${o.domainName}`,
        `bad address,shared,Bad,${o.mailboxPlanId},`,
        `room@${o.domainName},room,Room,${o.mailboxPlanId},`,
      ].join('\n'));
      const x = io(o.orgAdmin);
      assert.equal(await main(['import', 'mailboxes', o.org.id, file], x), 1, x.errors());
      assert.match(x.output(), /^2 +bad address +failed +invalid_address/m);
      assert.match(x.output(), /imported 2 of 3 rows, 1 failed/);
      assert.match(x.errors(), /import 100% \(3\/3 rows, 1 failed\)/);

      const out = join(t.tdb.dir, 'export.csv');
      const e = io(o.orgAdmin);
      assert.equal(await main(['export', 'mailboxes', o.org.id, '--out', out], e), 0, e.errors());
      const lines = readFileSync(out, 'utf8').trim().split('\r\n');
      assert.equal(lines[0], 'primaryAddress,kind,displayName,planId,aliases,hidden,enabled,forwarding,login');
      assert.deepEqual(lines.slice(1).map((l) => l.split(',')[0]).sort(), [`info@${o.domainName}`, `room@${o.domainName}`]);
      assert.match(e.errors(), /exported 2 rows/);

      // groups: one row per group; the report names rows by group name; a bad row fails alone
      const groupFile = join(t.tdb.dir, 'groups.csv');
      writeFileSync(groupFile, [
        'name,address,members,hidden,sendPolicy',
        `desk,desk@${o.domainName},info@${o.domainName} room@${o.domainName},true,anyone`,
        `broken,broken@${o.domainName},nobody@${o.domainName},,`,
        `everyone,everyone@${o.domainName},desk,,`,
      ].join('\n'));
      const g = io(o.orgAdmin);
      assert.equal(await main(['import', 'groups', o.org.id, groupFile], g), 1, g.errors());
      assert.match(g.output(), /^2 +broken +failed +recipient_not_in_organization/m);
      assert.match(g.output(), /imported 2 of 3 rows, 1 failed/);
      assert.match(g.errors(), /import 100% \(3\/3 rows, 1 failed\)/);
      const ge = io(o.orgAdmin);
      assert.equal(await main(['export', 'groups', o.org.id], ge), 0, ge.errors());
      assert.equal(ge.output(), 'name,address,members,hidden,sendPolicy,displayName,description,managers\r\n'
        + `desk,desk@${o.domainName},info@${o.domainName} room@${o.domainName},true,anyone,desk,,\r\n`
        + `everyone,everyone@${o.domainName},desk@${o.domainName},false,organization,everyone,,\r\n`);

      const aliasFile = join(t.tdb.dir, 'aliases.csv');
      writeFileSync(aliasFile, `mailbox,alias\ninfo@${o.domainName},office@${o.domainName}\n`);
      const a = io(o.orgAdmin);
      assert.equal(await main(['import', 'aliases', o.org.id, aliasFile], a), 0, a.errors() + a.output());
      const ex = io(o.orgAdmin);
      assert.equal(await main(['export', 'aliases', o.org.id], ex), 0);
      assert.equal(ex.output(), `mailbox,alias\r\ninfo@${o.domainName},help@${o.domainName}\r\ninfo@${o.domainName},office@${o.domainName}\r\n`);
    });
  });
}
