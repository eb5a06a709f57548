import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { DAY_MS } from '../src/mail/addresses.js';
import { doveadm, parseTab } from '../src/dataplane/doveadm.js';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { people, setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, freePorts, logsOf, sleep, startDataplane, workDir, type RunningDataplane } from './dataplane-support.js';

/**
 * Full access made real (issue 5 item 6, shared mailboxes): a shared mailbox receives mail over SMTP; a user
 * granted full access opens it over IMAP under Shared/<address>/, reads, flags, files and deletes; a user of
 * the same organization without the grant cannot open it, nor can the trustee once revoked (folders it made
 * inside included), nor a deleted trustee's successor with the same login; users of another organization with
 * the same local parts never open anything of this one; nobody shares a mailbox over IMAP (SETACL); a mailbox
 * moved to another store keeps its trustees (Dovecot's copy does not carry ACLs: the move's event re-applies them);
 * a revoke made while the mailbox is not served (disabled) holds when it is served again.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */

const tag = () => randomBytes(4).toString('hex');

for (const dialect of DIALECTS) {
  describe(`data plane shared mailboxes (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let dp: RunningDataplane | undefined;
    let ports: { smtp: number; imap: number };
    let a: MailOrg;
    let b: MailOrg;
    const { pw, users, boxes, person: addPerson } = people();
    const stores: string[] = [];

    const person = (o: MailOrg, local: string) => addPerson(t, o, local);
    async function sharedMailbox(o: MailOrg, local: string): Promise<string> {
      const address = `${local}@${o.domainName}`;
      boxes.set(address, await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind: 'shared', primaryAddress: address, planId: o.mailboxPlanId }, o.orgAdmin));
      return address;
    }
    const access = (o: MailOrg, mailbox: string, login: string) => `${o.orgUrl}/mailboxes/${boxes.get(mailbox).id}/full-access/${users.get(login).id}?wait=true`;

    /** An IMAP session of `login` (its own password). */
    async function imap<T>(login: string, fn: (c: ImapFlow) => Promise<T>): Promise<T> {
      const c = new ImapFlow({ host: '127.0.0.1', port: ports.imap, secure: false, auth: { user: login, pass: pw.get(login)! }, logger: false });
      await c.connect();
      try {
        return await fn(c);
      } finally {
        await c.logout().catch(() => {});
      }
    }
    /** The folders `login` lists (a subscription to a folder it can no longer open is listed \NonExistent: left out). */
    const folders = (login: string) => imap(login, async (c) => (await c.list()).filter((m) => !m.flags.has('\\NonExistent')).map((m) => m.path).sort());
    async function subjects(c: ImapFlow, folder: string): Promise<string[]> {
      const box = await c.mailboxOpen(folder);
      const out: string[] = [];
      if (box.exists > 0) for await (const m of c.fetch('1:*', { envelope: true })) out.push(m.envelope?.subject ?? '');
      return out.sort();
    }
    /** Whether `login` can open `folder` at all (Dovecot answers NO "Mailbox doesn't exist" otherwise). */
    const canOpen = (login: string, folder: string) => imap(login, async (c) => {
      try {
        await c.mailboxOpen(folder);
        return true;
      } catch (e: any) {
        assert.match(String(e.responseText ?? e.message), /doesn't exist/, `${login} opening ${folder}`);
        return false;
      }
    });
    /** The ACL entries Dovecot holds on a folder of `name` (global ones left out). */
    async function aclOf(name: string, folder = 'INBOX'): Promise<Record<string, string>> {
      const r = await doveadm(dp!.manifest.dovecotConfig, ['-f', 'tab', 'acl', 'get', '-u', name, folder]);
      assert.equal(r.code, 0, r.stderr);
      return Object.fromEntries(parseTab(r.stdout).filter((x) => x.global === '').map((x) => [x.id!, x.rights!]));
    }
    /** Raw IMAP commands after LOGIN, each answer's tagged status line and untagged data. */
    async function raw(login: string, commands: string[]): Promise<string[]> {
      const s = connect(ports.imap, '127.0.0.1');
      let buf = '';
      s.on('data', (d) => { buf += d.toString(); });
      const until = async (re: RegExp) => eventually('IMAP answer', async () => buf, (b) => re.test(b), 10_000);
      const answers: string[] = [];
      try {
        await until(/^\* OK/m);
        const all = [`LOGIN "${login}" "${pw.get(login)}"`, ...commands, 'LOGOUT'];
        for (const [i, cmd] of all.entries()) {
          buf = '';
          s.write(`t${i} ${cmd}\r\n`);
          await until(new RegExp(`^t${i} (OK|NO|BAD)`, 'm'));
          answers.push(buf);
        }
        return answers.slice(1, -1);
      } finally {
        s.destroy();
      }
    }

    before(async () => {
      work = workDir();
      // deleted mailboxes are purged and their addresses free again a moment later (a trustee's successor)
      t = await startTestPlatform(dialect, { config: { dataplaneRoot: join(work.path, 'planes'), mailboxRetentionDays: 200 / DAY_MS, addressQuarantineDays: 200 / DAY_MS } });
      const [smtp, lmtp, imapPort] = (await freePorts(3)) as [number, number, number];
      ports = { smtp, imap: imapPort };
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: 'dp-shared', lmtpEndpoint: `127.0.0.1:${lmtp}`, imapEndpoint: `127.0.0.1:${imapPort}`, mailRoot: join(work.path, 'mail') });
      // two mailbox stores on the one server: a mailbox moves between them (two homes on one Dovecot)
      for (const name of ['dp-shared-store', 'dp-shared-store-2']) stores.push((await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name, capacityBytes: 2 ** 50 })).id);
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-shared-public', purpose: 'public_folder', capacityBytes: 2 ** 50 });
      a = await setupMailOrg(t, 'sha', { defaultStores: false });
      b = await setupMailOrg(t, 'shb', { defaultStores: false });
      for (const local of ['ann', 'bob', 'carl']) await person(a, local);
      await person(b, 'ann');
      dp = await startDataplane(t, 'dp-shared', join(work.path, 'planes', 'dp-shared'), ['--smtp-port', String(smtp)]);
    });
    after(async () => {
      try {
        await dp?.stop();
      } finally {
        await t?.close();
        work?.remove();
      }
    });

    test('a trustee reads, flags, files and deletes in a shared mailbox; without the grant, after the revoke and from another organization nobody opens it', async () => {
      const A = a.domainName;
      const B = b.domainName;
      const [ann, bob, carl, annB] = [`ann@${A}`, `bob@${A}`, `carl@${A}`, `ann@${B}`];
      const info = await sharedMailbox(a, 'info');
      const infoB = await sharedMailbox(b, 'info');
      await t.ok('PUT', access(a, info, ann), undefined, a.orgAdmin);
      await t.ok('PUT', access(b, infoB, annB), undefined, b.orgAdmin);
      assert.deepEqual(await aclOf(info), { [`user=${ann}`]: 'create delete expunge insert lookup post read write write-deleted write-seen' }, 'every right but admin');

      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      const sent = [`first ${tag()}`, `second ${tag()}`];
      try {
        for (const subject of sent) await mx.sendMail({ from: 'customer@remote.example', to: info, subject, text: 'hello\n' });
        await mx.sendMail({ from: 'customer@remote.example', to: infoB, subject: 'for B only', text: 'hello\n' });
      } finally {
        mx.close();
      }

      // the trustee finds the mailbox in its folder list and reads it: Shared/<address> is its INBOX
      const inbox = `Shared/${info}/INBOX`;
      await eventually(`${info} as seen by ${ann}`, () => imap(ann, (c) => subjects(c, inbox)), (s) => s.length === 2);
      assert.deepEqual(await imap(ann, (c) => subjects(c, inbox)), [...sent].sort());
      assert.ok((await folders(ann)).includes(`Shared/${info}`), `${ann} lists ${info}: ${JSON.stringify(await folders(ann))}`);
      assert.deepEqual(await imap(ann, (c) => subjects(c, `Shared/${info}`)), [...sent].sort(), 'the same INBOX');
      // ...flags, deletes, makes a folder and files into it
      const projects = `Shared/${info}/Projects`;
      await imap(ann, async (c) => {
        await c.mailboxOpen(inbox);
        await c.messageFlagsAdd('1', ['\\Flagged']);
        const second = [];
        for await (const m of c.fetch('1:*', { envelope: true, uid: true })) if (m.envelope?.subject === sent[1]) second.push(m.uid);
        assert.equal(await c.messageDelete(second.join(','), { uid: true }), true);
        await c.mailboxCreate(projects);
        await c.append(projects, `From: ann@${A}\r\nSubject: filed\r\n\r\nkept\r\n`);
      });
      const owner = await doveadm(dp!.manifest.dovecotConfig, ['-f', 'tab', 'fetch', '-u', info, 'flags hdr.subject', 'mailbox', 'INBOX', 'all']);
      assert.equal(owner.code, 0, owner.stderr);
      const kept = parseTab(owner.stdout);
      assert.equal(kept.length, 1, `the deleted message is gone: ${owner.stdout}`);
      assert.match(kept[0]!.flags!, /\\Flagged/, 'the flag is on the mailbox itself');
      assert.deepEqual(await imap(ann, (c) => subjects(c, projects)), ['filed']);
      assert.equal(await imap(ann, (c) => c.mailboxOpen(inbox).then((m) => m.exists)), 1);
      // what the trustee files counts against the shared mailbox's quota, not its own
      const usage = async (name: string) => {
        const q = await doveadm(dp!.manifest.dovecotConfig, ['-f', 'tab', 'quota', 'get', '-u', name]);
        assert.equal(q.code, 0, q.stderr);
        return Number(parseTab(q.stdout).find((r) => r.type === 'STORAGE')!.value);
      };
      assert.equal(await usage(ann), 0, `${ann}'s own mailbox is empty`);
      assert.ok(await usage(info) > 0);

      // the organization's other users and everyone of the other organization: no such mailbox, nothing listed
      for (const [who, folder] of [[bob, inbox], [bob, projects], [carl, `Shared/${info}`], [annB, inbox], [annB, projects], [annB, `Shared/${ann}/INBOX`], [ann, `Shared/${infoB}/INBOX`], [ann, `Shared/${annB}/INBOX`], [annB, `Shared/nobody@${A}/INBOX`], [annB, `Shared/nobody@${A}`]] as const) {
        assert.equal(await canOpen(who, folder), false, `${who} must not open ${folder}`);
      }
      for (const who of [bob, carl]) assert.deepEqual(await folders(who), ['Drafts', 'INBOX', 'Junk', 'Sent', 'Trash'], `${who} lists only its own folders`);
      assert.ok(!(await folders(annB)).some((f) => f.includes(A)), `${annB} lists nothing of ${A}`);
      assert.deepEqual(await imap(annB, (c) => subjects(c, `Shared/${infoB}/INBOX`)), ['for B only'], 'B\'s trustee reads B\'s shared mailbox');

      // nobody shares over IMAP: no admin right, not the owner, not the trustee
      for (const [who, folder] of [[bob, 'INBOX'], [ann, inbox]] as const) {
        const [myrights, setacl] = await raw(who, [`MYRIGHTS "${folder}"`, `SETACL "${folder}" "${annB}" lr`]);
        assert.match(myrights!, /MYRIGHTS \S+ lrwstipekx/, `${who}: ${myrights}`);
        assert.doesNotMatch(myrights!, /MYRIGHTS \S+ \S*a/, `${who} has no admin right: ${myrights}`);
        assert.match(setacl!, /NO \[NOPERM\]/, `${who}: ${setacl}`);
      }
      assert.equal(await canOpen(annB, `Shared/${bob}/INBOX`), false);

      // revoked: neither the INBOX nor the folder the trustee made while it had access (Dovecot copied the ACL)
      await t.ok('DELETE', access(a, info, ann), undefined, a.orgAdmin);
      assert.deepEqual(await aclOf(info), {});
      assert.deepEqual(await aclOf(info, 'Projects'), {});
      for (const folder of [inbox, `Shared/${info}`, projects]) assert.equal(await canOpen(ann, folder), false, `${ann} after the revoke: ${folder}`);
      const left = await folders(ann);
      assert.ok(!left.some((f) => f.startsWith('Shared')), `${ann} lists no Shared/ any more: ${JSON.stringify(left)}`);
      // granting again restores everything; revoking again is idempotent in Dovecot
      await t.ok('PUT', access(a, info, ann), undefined, a.orgAdmin);
      assert.deepEqual(await imap(ann, (c) => subjects(c, projects)), ['filed']);
      await t.ok('DELETE', access(a, info, ann), undefined, a.orgAdmin);
      assert.equal(await canOpen(ann, projects), false);
    });

    test('full access to a user\'s mailbox ends with the trustee: a new user with the same login does not inherit it', async () => {
      const A = a.domainName;
      const carl = `carl@${A}`;
      const dave = await person(a, 'dave');
      await t.ok('PUT', access(a, carl, dave), undefined, a.orgAdmin);
      assert.equal(await canOpen(dave, `Shared/${carl}/INBOX`), true);
      // dave leaves: mailbox first (it is purged with him), then the user
      const m = await t.call('DELETE', `${a.orgUrl}/mailboxes/${boxes.get(dave).id}`, { token: a.orgAdmin });
      assert.ok(m.statusCode < 300, m.body);
      const d = await t.call('DELETE', `${a.orgUrl}/users/${users.get(dave).id}`, { token: a.orgAdmin });
      assert.ok(d.statusCode < 300, d.body);
      assert.equal((await t.settle(d.headers['hmc-request-id'] as string)).state, 'succeeded');
      assert.deepEqual(await aclOf(carl), {}, 'the ACL entry went with the user');
      // a new dave@ (once the old address is out of quarantine) sees nothing of carl's
      await sleep(300);
      await person(a, 'dave');
      assert.equal(await canOpen(dave, `Shared/${carl}/INBOX`), false);
      assert.ok(!(await folders(dave)).some((f) => f.startsWith('Shared')));
      assert.doesNotMatch(readFileSync(join(logsOf(dp!.dir), 'dovecot.log'), 'utf8'), /acl.*(Error|Panic)|(Error|Panic).*acl/i, 'no ACL errors in the log');
    });

    test('rooms and equipment are mailboxes too: they receive their mail and a delegate with full access works in them', async () => {
      const carl = `carl@${a.domainName}`;
      for (const kind of ['room', 'equipment']) {
        const address = `${kind}-${tag()}@${a.domainName}`;
        boxes.set(address, await t.ok('POST', `${a.orgUrl}/mailboxes?wait=true`, { kind, primaryAddress: address, planId: a.mailboxPlanId }, a.orgAdmin));
        await t.ok('PUT', access(a, address, carl), undefined, a.orgAdmin);
        const subject = `booking ${tag()}`;
        const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
        try {
          await mx.sendMail({ from: 'guest@remote.example', to: address, subject, text: 'a meeting\n' });
        } finally {
          mx.close();
        }
        await eventually(`${kind} mail as seen by its delegate`, () => imap(carl, (c) => subjects(c, `Shared/${address}/INBOX`)), (s) => s.includes(subject));
        assert.equal(await canOpen(`bob@${a.domainName}`, `Shared/${address}/INBOX`), false, 'nobody else');
      }
    });

    test('a revoke while the mailbox is disabled holds when it is enabled again', async () => {
      const bob = `bob@${a.domainName}`;
      const desk = await sharedMailbox(a, 'desk');
      await t.ok('PUT', access(a, desk, bob), undefined, a.orgAdmin);
      assert.equal(await canOpen(bob, `Shared/${desk}/INBOX`), true);
      const url = `${a.orgUrl}/mailboxes/${boxes.get(desk).id}?wait=true`;
      await t.ok('PATCH', url, { enabled: false }, a.orgAdmin);
      assert.equal(await canOpen(bob, `Shared/${desk}/INBOX`), false, 'a disabled mailbox is not served');
      await t.ok('DELETE', access(a, desk, bob), undefined, a.orgAdmin);
      await t.ok('PATCH', url, { enabled: true }, a.orgAdmin);
      assert.deepEqual(await aclOf(desk), {});
      assert.equal(await canOpen(bob, `Shared/${desk}/INBOX`), false);
    });

    test('a shared mailbox moved to another store keeps its trustees, and only them', async () => {
      const A = a.domainName;
      const [bob, carl] = [`bob@${A}`, `carl@${A}`];
      const sales = await sharedMailbox(a, 'sales');
      await t.ok('PUT', access(a, sales, carl), undefined, a.orgAdmin);
      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      try {
        await mx.sendMail({ from: 'customer@remote.example', to: sales, subject: 'order 1', text: 'hello\n' });
      } finally {
        mx.close();
      }
      const inbox = `Shared/${sales}/INBOX`;
      await eventually(`${sales} as seen by ${carl}`, () => imap(carl, (c) => subjects(c, inbox)), (s) => s.length === 1);
      const id = boxes.get(sales).id;
      const from = (await t.platform.store.db.selectFrom('mailboxes').select('store_id').where('id', '=', id).executeTakeFirstOrThrow()).store_id;
      const r = await t.call('POST', `${a.orgUrl}/mailboxes/${id}/move`, { body: { storeId: stores.find((x) => x !== from) } });
      assert.ok([200, 202].includes(r.statusCode), r.body);
      assert.equal((await t.settle(r.headers['hmc-request-id'] as string, 120_000)).state, 'succeeded');
      assert.deepEqual(await aclOf(sales), { [`user=${carl}`]: 'create delete expunge insert lookup post read write write-deleted write-seen' }, 'the ACL is on the new home');
      assert.deepEqual(await imap(carl, (c) => subjects(c, inbox)), ['order 1']);
      assert.equal(await canOpen(bob, inbox), false);
    });
  });
}
