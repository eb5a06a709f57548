import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { mutf7Decode, mutf7Encode } from '../src/dataplane/public-folders.js';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { people, setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, freePorts, startDataplane, workDir, type RunningDataplane } from './dataplane-support.js';

/**
 * Public folders made real (issue 5 item 6, second half): an organization's folders are a Public/ namespace
 * in Dovecot for its users; permissions (to users and to groups, nested ones included) are the folders' ACLs
 * and nothing else opens them; another organization with the same names and logins sees only its own; a
 * mail-enabled folder receives mail over SMTP and refuses it over its prohibitPostQuota (maxItemSize: the
 * policy service, dataplane-policy.test.ts); a rename keeps the messages and the delivery; a deleted folder is gone on disk and refused at RCPT.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

const tag = () => randomBytes(4).toString('hex');

test('folder names in IMAP modified UTF-7, as Dovecot writes them', () => {
  for (const [name, disk] of [['Sales', 'Sales'], ['Été', '&AMk-t&AOk-'], ['R&D', 'R&-D'], ['日本語', '&ZeVnLIqe-'], ['a~b', 'a~b']]) {
    assert.equal(mutf7Encode(name!), disk);
    assert.equal(mutf7Decode(disk!), name);
  }
});

for (const dialect of DIALECTS) {
  describe(`data plane public folders (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let dp: RunningDataplane | undefined;
    let ports: { smtp: number; imap: number };
    let a: MailOrg;
    let b: MailOrg;
    let mailRoot: string;
    const { pw, users, boxes, person: addPerson } = people();

    const person = (o: MailOrg, local: string) => addPerson(t, o, local);
    async function group(o: MailOrg, local: string, members: string[]): Promise<any> {
      const g = await t.ok('POST', `${o.orgUrl}/groups`, { name: `${local}-${tag()}` }, o.orgAdmin);
      await t.ok('PUT', `${o.orgUrl}/groups/${g.id}/mail?wait=true`, { primaryAddress: `${local}@${o.domainName}` }, o.orgAdmin);
      for (const m of members) await t.ok('POST', `${o.orgUrl}/groups/${g.id}/mail-members?wait=true`, { memberId: m }, o.orgAdmin);
      return g;
    }
    const folder = (o: MailOrg, body: Record<string, unknown>) => t.ok('POST', `${o.orgUrl}/public-folders?wait=true`, body, o.orgAdmin);
    const grant = (o: MailOrg, f: any, principal: string, role: string) =>
      t.ok('PUT', `${o.orgUrl}/public-folders/${f.id}/permissions/${principal.startsWith('usr_') ? 'users' : 'groups'}/${principal}?wait=true`, { role }, o.orgAdmin);

    async function imap<T>(login: string, fn: (c: ImapFlow) => Promise<T>): Promise<T> {
      const c = new ImapFlow({ host: '127.0.0.1', port: ports.imap, secure: false, auth: { user: login, pass: pw.get(login)! }, logger: false });
      await c.connect();
      try {
        return await fn(c);
      } finally {
        await c.logout().catch(() => {});
      }
    }
    /** The public folders `login` can select. */
    const publicFolders = (login: string) => imap(login, async (c) => (await c.list())
      .filter((m) => m.path.startsWith('Public/') && !m.flags.has('\\Noselect') && !m.flags.has('\\NonExistent')).map((m) => m.path).sort());
    async function subjects(login: string, f: string): Promise<string[]> {
      return imap(login, async (c) => {
        const box = await c.mailboxOpen(f, { readOnly: true });
        const out: string[] = [];
        if (box.exists > 0) for await (const m of c.fetch('1:*', { envelope: true })) out.push(m.envelope?.subject ?? '');
        return out.sort();
      });
    }
    /** Whether `login` may add a message to `f` over IMAP. */
    const canAppend = (login: string, f: string) => imap(login, async (c) => {
      try {
        await c.append(f, `From: ${login}\r\nSubject: appended ${tag()}\r\n\r\nhi\r\n`);
        return true;
      } catch {
        return false;
      }
    });
    /** SMTP to the MX: undefined when accepted, else the error text. */
    async function send(to: string, subject: string, bytes = 0): Promise<string | undefined> {
      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      try {
        // the size declared (MAIL FROM SIZE=): a folder too full for it is refused at RCPT by Dovecot's quota-status
        const text = `hello\n${'x'.repeat(bytes)}\n`;
        await mx.sendMail({ envelope: { from: 'customer@remote.example', to: [to], size: text.length + 200 } as any, from: 'customer@remote.example', to, subject, text });
        return undefined;
      } catch (e: any) {
        return String(e.response ?? e.message);
      } finally {
        mx.close();
      }
    }

    before(async () => {
      work = workDir();
      const [smtp, lmtp, imapPort] = (await freePorts(3)) as [number, number, number];
      ports = { smtp, imap: imapPort };
      mailRoot = join(work.path, 'mail');
      t = await startTestPlatform(dialect, { config: { dataplaneRoot: join(work.path, 'planes') } });
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: 'dp-public', lmtpEndpoint: `127.0.0.1:${lmtp}`, imapEndpoint: `127.0.0.1:${imapPort}`, mailRoot });
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-public-mbx', capacityBytes: 2 ** 50 });
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-public-pf', purpose: 'public_folder', capacityBytes: 2 ** 50 });
      a = await setupMailOrg(t, 'pfa', { defaultStores: false });
      b = await setupMailOrg(t, 'pfb', { defaultStores: false });
      for (const local of ['ann', 'bob', 'carl', 'dora']) await person(a, local);
      await person(b, 'ann');
      dp = await startDataplane(t, 'dp-public', join(work.path, 'planes', 'dp-public'), ['--smtp-port', String(smtp)]);
    });
    after(async () => {
      try {
        await dp?.stop();
      } finally {
        await t?.close();
        work?.remove();
      }
    });

    test('permissions are the folders\' ACLs: users, groups and nested groups get exactly their role; nobody else, and no other organization, sees a thing', async () => {
      const A = a.domainName;
      const [ann, bob, carl, dora, annB] = [`ann@${A}`, `bob@${A}`, `carl@${A}`, `dora@${A}`, `ann@${b.domainName}`];
      // ann is in "inner", which is in "outer"; bob is in "outer" only
      const inner = await group(a, `inner-${tag()}`, [boxes.get(ann).id]);
      const outer = await group(a, `outer-${tag()}`, [inner.id, boxes.get(bob).id]);
      const sales = await folder(a, { name: 'Sales', prohibitPostQuota: 10_000_000 });
      const eu = await folder(a, { name: 'Europe', parentId: sales.id, prohibitPostQuota: 10_000_000 });
      const ventes = await folder(a, { name: 'Été & R&D', prohibitPostQuota: 10_000_000 });
      await folder(a, { name: 'Secret', prohibitPostQuota: 10_000_000 });
      const salesB = await folder(b, { name: 'Sales', prohibitPostQuota: 10_000_000 });
      await grant(a, sales, outer.id, 'reviewer');
      await grant(a, eu, inner.id, 'author');
      await grant(a, ventes, users.get(carl).id, 'editor');
      await grant(b, salesB, users.get(annB).id, 'owner');

      assert.deepEqual(await publicFolders(ann), ['Public/Sales', 'Public/Sales/Europe'], 'ann: through outer (nested) and inner');
      assert.deepEqual(await publicFolders(bob), ['Public/Sales'], 'bob: through outer only');
      assert.deepEqual(await publicFolders(carl), ['Public/Été & R&D'], 'carl: his own permission, the name as given');
      assert.deepEqual(await publicFolders(dora), [], 'dora: no permission, nothing');
      assert.deepEqual(await publicFolders(annB), ['Public/Sales'], 'the other organization: its own Sales only');

      // the roles: reviewers read, authors add, editors delete; the folder tree is HMC's (nobody creates over IMAP)
      assert.equal(await canAppend(bob, 'Public/Sales'), false, 'a reviewer cannot add');
      assert.equal(await canAppend(ann, 'Public/Sales/Europe'), true, 'an author adds');
      assert.equal(await canAppend(carl, 'Public/Été & R&D'), true);
      assert.equal(await canAppend(annB, 'Public/Sales'), true, 'B\'s owner adds to B\'s folder');
      assert.equal(await canAppend(dora, 'Public/Sales'), false);
      assert.equal((await subjects(annB, 'Public/Sales')).length, 1, 'B\'s folder holds only what B added');
      assert.equal((await subjects(ann, 'Public/Sales/Europe')).length, 1);
      assert.equal(await imap(carl, async (c) => {
        await c.mailboxOpen('Public/Été & R&D');
        return c.messageDelete('1:*');
      }), true, 'an editor deletes');
      assert.equal(await imap(carl, async (c) => c.mailboxCreate('Public/Été & R&D/Sub').then(() => true, () => false)), false, 'no folders made over IMAP');
      assert.equal(await imap(annB, async (c) => c.mailboxCreate('Public/Sales/Sub').then(() => true, () => false)), false, 'not even by an owner');

      // revoking: bob's group leaves Sales; ann keeps Europe
      await t.ok('DELETE', `${a.orgUrl}/public-folders/${sales.id}/permissions/groups/${outer.id}?wait=true`, undefined, a.orgAdmin);
      await eventually('the revoke reaches Dovecot', () => publicFolders(bob), (f) => f.length === 0, 15_000);
      assert.deepEqual(await publicFolders(ann), ['Public/Sales/Europe']);
    });

    test('a mail-enabled folder receives mail, refuses what is over its quota, keeps both through a rename; deleted, it is gone', async () => {
      const A = a.domainName;
      const ann = `ann@${A}`;
      const address = `support-${tag()}@${A}`;
      const f = await folder(a, { name: `Support ${tag()}`, prohibitPostQuota: 6_000, issueWarningQuota: 2_000, maxItemSize: 4_000 });
      await t.ok('PUT', `${a.orgUrl}/public-folders/${f.id}/mail?wait=true`, { primaryAddress: address }, a.orgAdmin);
      await grant(a, f, users.get(ann).id, 'reviewer');
      const first = `first ${tag()}`;
      assert.equal(await send(address, first), undefined);
      await eventually('delivery into the folder', () => subjects(ann, `Public/${f.name}`), (s) => s.includes(first));
      // quota: the folder holds ~0.3 KB; 3 KB fits and crosses issueWarningQuota (2,000 bytes): one notice, filed
      // in the folder; the next 3 KB does not fit (prohibitPostQuota 6,000 bytes)
      assert.equal(await send(address, `big one ${tag()}`, 3_000), undefined);
      const notice = 'Your mailbox is almost full';
      await eventually('the second delivery and the notice', () => subjects(ann, `Public/${f.name}`), (s) => s.length === 3 && s.includes(notice));
      const full = await send(address, `over quota ${tag()}`, 3_000);
      assert.match(String(full), /^55\d 5\.2\.2/, `over the folder's quota: ${full}`);
      assert.equal((await subjects(ann, `Public/${f.name}`)).length, 3);

      // hmc check knows the folder's Dovecot user: resolved, its quota the folder's prohibitPostQuota
      const findings = (await t.ok('GET', '/api/v1/check')).findings.filter((x: any) => x.code.startsWith('dataplane_'));
      assert.deepEqual(findings, [], 'the data plane matches the database');

      // a rename keeps the messages, the permissions and the address
      const renamed = `Renamed ${tag()}`;
      await t.ok('PATCH', `${a.orgUrl}/public-folders/${f.id}?wait=true`, { name: renamed, prohibitPostQuota: 100_000 }, a.orgAdmin);
      assert.equal((await subjects(ann, `Public/${renamed}`)).length, 3);
      const after = `after the rename ${tag()}`;
      assert.equal(await send(address, after), undefined);
      await eventually('delivery after the rename', () => subjects(ann, `Public/${renamed}`), (s) => s.includes(after));
      const base = join(mailRoot, 'public', a.org.id);
      assert.equal(lstatSync(join(base, 'folders', f.id)).isSymbolicLink(), true);
      assert.equal(readFileSync(join(base, 'tree', mutf7Encode(renamed), '~hmc-folder-id'), 'utf8').trim(), f.id);
      assert.equal(existsSync(join(base, 'tree', mutf7Encode(f.name))), false);

      // deleted: refused at RCPT, the folder and its link gone
      await t.ok('DELETE', `${a.orgUrl}/public-folders/${f.id}?wait=true`, undefined, a.orgAdmin);
      const gone = await send(address, `after the delete ${tag()}`);
      assert.match(String(gone), /^550 5\.1\.1/, `refused: ${gone}`);
      assert.equal(existsSync(join(base, 'tree', mutf7Encode(renamed))), false);
      assert.equal(existsSync(join(base, 'folders', f.id)), false);
      assert.ok(!(await publicFolders(ann)).includes(`Public/${renamed}`));
    });

    test('a purged organization leaves no public folder data behind', async () => {
      const base = join(mailRoot, 'public', b.org.id);
      assert.ok(existsSync(join(base, 'tree', 'Sales', 'cur')), 'B\'s Sales is on disk');
      await t.ok('DELETE', `/api/v1/organizations/${b.org.id}?force=true&wait=true`);
      await eventually('the purge and the convergence after it', async () => existsSync(base), (there) => !there, 20_000);
      assert.ok(existsSync(join(mailRoot, 'public', a.org.id, 'tree')), 'A keeps its folders');
    });

    test('a folder name Dovecot cannot store is refused by the API, before anything is made', async () => {
      for (const name of ['cur', 'tmp', '..', '~home']) {
        const r = await t.call('POST', `${a.orgUrl}/public-folders`, { body: { name, prohibitPostQuota: 1000 }, token: a.orgAdmin });
        assert.equal(r.statusCode, 400, `${name}: ${r.body}`);
        assert.match(String(r.headers['content-type']), /application\/problem\+json/);
      }
    });
  });
}
