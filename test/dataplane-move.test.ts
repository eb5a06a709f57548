import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, folderSubjects, freePorts, startDataplane, workDir, type RunningDataplane } from './dataplane-support.js';

/**
 * Several mail servers (issue 5 item 5): two real data planes (Postfix + Dovecot each) on one database. A
 * mailbox placed on server one is delivered and read there, and an IMAP login on server two is proxied to
 * it. Moving it to server two while mail keeps arriving (through both Postfixes), and then between two
 * stores of server two, keeps every message exactly once: the old home is merged into the new one with
 * doveadm (dataplane/dovecot-mailstore.ts) and removed, a session still open on the old home is ended and
 * what it filed moves too, nothing bounces, Dovecot's quota counts it all, and logins on either server reach
 * the new home. A move that died after importing resumes without duplicating anything.
 */

const tag = () => randomBytes(4).toString('hex');

for (const dialect of DIALECTS) {
  describe(`moving a mailbox between mail servers (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    const planes: RunningDataplane[] = [];
    let one: { smtp: number; imap: number; mailRoot: string; storeId: string };
    let two: { smtp: number; imap: number; mailRoot: string; storeA: string; storeB: string };
    let org: MailOrg;
    let login: string;
    let password: string;
    let mailboxId: string;
    /** Every subject Postfix accepted for the mailbox, in order. */
    const sent: string[] = [];
    /** The subject of the message a client files in Sent before the first move. */
    const sentCopy = `filed ${tag()}`;

    const homeOn = (mailRoot: string, storeId: string) => join(mailRoot, storeId, org.org.id, mailboxId);
    const inboxAt = (imap: number) => folderSubjects(imap, login, password);
    const mailbox = () => t.platform.store.db.selectFrom('mailboxes').select(['store_id', 'moving_from']).where('id', '=', mailboxId).executeTakeFirstOrThrow();

    async function send(smtp: number, subject: string): Promise<void> {
      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: smtp, secure: false, ignoreTLS: true });
      try {
        const r = await mx.sendMail({ from: 'someone@remote.example', to: login, subject, text: `${subject}\n`, messageId: `<${subject.replace(/\s+/g, '.')}@remote.example>` });
        assert.deepEqual(r.accepted, [login]);
        sent.push(subject);
      } finally {
        mx.close();
      }
    }

    /** Sends one message after another, alternating between the two Postfixes, until stopped. */
    function keepSending(prefix: string): { count(): number; stop(): Promise<number> } {
      let stopping = false;
      let n = 0;
      const loop = (async () => {
        while (!stopping) {
          n++;
          await send(n % 2 ? one.smtp : two.smtp, `${prefix} ${n}`);
        }
      })();
      return { count: () => n, stop: async () => ((stopping = true), await loop, n) };
    }

    /** Every message sent so far is in the inbox read at `imap`, each exactly once (queues flushed while waiting). */
    async function allDelivered(imap: number): Promise<void> {
      const want = new Set(sent);
      await eventually(`${sent.length} messages at IMAP ${imap}`, async () => {
        for (const p of planes) execFileSync('postqueue', ['-c', p.manifest.postfixConfigDir, '-f']);
        return inboxAt(imap);
      }, (s) => [...want].every((x) => s.includes(x)), 90_000);
      assert.deepEqual((await inboxAt(imap)).sort(), [...sent].sort(), 'every message, exactly once');
    }

    /** Move the mailbox to `storeId` while mail keeps arriving; returns [messages sent meanwhile, ms the move took]. */
    async function moveWhileSending(storeId: string, prefix: string): Promise<[number, number]> {
      const sender = keepSending(prefix);
      try {
        await eventually('mail flowing before the move', async () => sender.count(), (n) => n >= 5);
        const t0 = Date.now();
        const r = await t.call('POST', `${org.orgUrl}/mailboxes/${mailboxId}/move`, { body: { storeId } });
        assert.ok([200, 202].includes(r.statusCode), r.body);
        const done = await t.settle(r.headers['hmc-request-id'] as string, 120_000);
        const ms = Date.now() - t0;
        assert.equal(done.state, 'succeeded', JSON.stringify(done));
        const during = sender.count();
        await eventually('mail flowing after the move', async () => sender.count(), (n) => n >= during + 5);
        return [during, ms];
      } finally {
        await sender.stop();
      }
    }

    function quota(plane: RunningDataplane): Record<string, number> {
      const out = execFileSync('doveadm', ['-c', plane.manifest.dovecotConfig, '-f', 'tab', 'quota', 'get', '-u', login], { encoding: 'utf8' });
      const [head, ...rows] = out.trim().split('\n').map((l) => l.split('\t'));
      return Object.fromEntries(rows.map((r) => [r[head!.indexOf('Type')], Number(r[head!.indexOf('Value')])]));
    }

    const noBounces = () => {
      for (const p of planes) {
        const log = readFileSync(join(p.manifest.logDir, 'postfix.log'), 'utf8');
        assert.deepEqual(log.split('\n').filter((l) => l.includes('status=bounced')), [], `${p.manifest.server.name}: nothing bounced`);
      }
    };

    before(async () => {
      work = workDir();
      t = await startTestPlatform(dialect, { config: { dataplaneRoot: join(work.path, 'planes') } });
      const [smtp1, lmtp1, imap1, smtp2, lmtp2, imap2] = (await freePorts(6)) as [number, number, number, number, number, number];
      const server = (name: string, lmtp: number, imap: number, mailRoot: string) =>
        t.ok('POST', '/api/v1/mail-servers', { name, lmtpEndpoint: `127.0.0.1:${lmtp}`, imapEndpoint: `127.0.0.1:${imap}`, mailRoot });
      const store = async (serverId: string, name: string) => (await t.ok('POST', `/api/v1/mail-servers/${serverId}/stores`, { name, capacityBytes: 2 ** 50 })).id as string;

      const s1 = await server('mv-one', lmtp1, imap1, join(work.path, 'mail1'));
      one = { smtp: smtp1, imap: imap1, mailRoot: join(work.path, 'mail1'), storeId: await store(s1.id, 'mv-one-store') };
      org = await setupMailOrg(t, 'mv', { defaultStores: false, publicFolderBytes: 0 });
      login = `ann@${org.domainName}`;
      password = `pw-${tag()}`;
      const u = await t.ok('POST', `${org.orgUrl}/users?wait=true`, { login, password });
      mailboxId = (await t.ok('POST', `${org.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: u.id, planId: org.mailboxPlanId })).id;
      // server two comes later: its stores are empty when the mailbox is placed
      const s2 = await server('mv-two', lmtp2, imap2, join(work.path, 'mail2'));
      two = { smtp: smtp2, imap: imap2, mailRoot: join(work.path, 'mail2'), storeA: await store(s2.id, 'mv-two-a'), storeB: await store(s2.id, 'mv-two-b') };

      planes.push(await startDataplane(t, 'mv-one', join(work.path, 'planes', 'mv-one'), ['--smtp-port', String(smtp1)]));
      planes.push(await startDataplane(t, 'mv-two', join(work.path, 'planes', 'mv-two'), ['--smtp-port', String(smtp2)]));
    });
    after(async () => {
      try {
        for (const p of planes) await p.stop();
      } finally {
        await t?.close();
        work?.remove();
      }
    });

    test('the resource manager places the mailbox on server one; mail lands there; IMAP on either server reaches it', async () => {
      assert.deepEqual(await mailbox(), { store_id: one.storeId, moving_from: null });
      for (let i = 1; i <= 30; i++) await send(i % 2 ? one.smtp : two.smtp, `before ${i}`);
      await allDelivered(one.imap);
      assert.ok(existsSync(join(homeOn(one.mailRoot, one.storeId), 'Maildir')), 'the home is on server one');
      assert.equal(existsSync(join(two.mailRoot, two.storeA)), false, 'nothing on server two');
      assert.deepEqual((await inboxAt(two.imap)).sort(), [...sent].sort(), 'a login on server two is proxied to server one');
      await assert.rejects(folderSubjects(two.imap, login, 'not-the-password'), 'the proxy still checks the password');
    });

    test('moving it to server two while mail keeps arriving keeps every message exactly once', async (tc) => {
      // a client logged in on server one before the move works on the old home: it files a sent message there
      const client = new ImapFlow({ host: '127.0.0.1', port: one.imap, secure: false, auth: { user: login, pass: password }, logger: false });
      let closed = false;
      client.on('close', () => (closed = true));
      try {
        await client.connect();
        await client.append('Sent', `From: ${login}\r\nTo: friend@remote.example\r\nSubject: ${sentCopy}\r\n\r\nhi\r\n`, ['\\Seen']);
        const before = sent.length;
        const [during, ms] = await moveWhileSending(two.storeA, `to-two ${tag()}`);
        tc.diagnostic(`move of ${before} messages between servers took ${ms} ms; ${during} sent while it ran, ${sent.length} in all`);
        assert.deepEqual(await mailbox(), { store_id: two.storeA, moving_from: null });
        // the move ended that session (it could still write to the old home); the client logs in again
        await eventually('the old session ended', async () => closed, (c) => c);
      } finally {
        client.close();
      }
      assert.deepEqual(await folderSubjects(two.imap, login, password, 'Sent'), [sentCopy], 'the folder the old session wrote moved too');
      await allDelivered(two.imap);
      assert.deepEqual((await inboxAt(one.imap)).sort(), [...sent].sort(), 'a login on server one is now proxied to server two');
      assert.equal(existsSync(homeOn(one.mailRoot, one.storeId)), false, 'the old home is gone');
      assert.equal(existsSync(`${homeOn(one.mailRoot, one.storeId)}.moving`), false);
      assert.ok(existsSync(join(homeOn(two.mailRoot, two.storeA), 'Maildir')));
      const q = quota(planes[1]!);
      assert.equal(q.MESSAGE, sent.length + 1, `Dovecot's quota on server two counts every message (and the one in Sent): ${JSON.stringify(q)}`);
      assert.ok(q.STORAGE! > 0);
      noBounces();
    });

    test('a move between two stores of the same server (two homes on one Dovecot) keeps every message too', async (tc) => {
      const before = sent.length;
      const [during, ms] = await moveWhileSending(two.storeB, `to-b ${tag()}`);
      tc.diagnostic(`move of ${before} messages within server two took ${ms} ms; ${during} sent while it ran, ${sent.length} in all`);
      assert.deepEqual(await mailbox(), { store_id: two.storeB, moving_from: null });
      await allDelivered(two.imap);
      assert.deepEqual((await inboxAt(one.imap)).sort(), [...sent].sort());
      assert.equal(existsSync(homeOn(two.mailRoot, two.storeA)), false, 'the old home is gone');
      assert.ok(existsSync(join(homeOn(two.mailRoot, two.storeB), 'Maildir')));
      assert.deepEqual(await folderSubjects(two.imap, login, password, 'Sent'), [sentCopy]);
      assert.equal(quota(planes[1]!).MESSAGE, sent.length + 1);
      noBounces();
    });

    test('a move interrupted after its import (the staged copy still there) finishes without duplicates', async () => {
      // as if the job had imported the staged old home and died before removing it: the retry imports it again
      const staged = `${homeOn(two.mailRoot, two.storeA)}.moving`;
      execFileSync('cp', ['-a', homeOn(two.mailRoot, two.storeB), staged]);
      const ref = (storeId: string) => ({ orgId: org.org.id, mailboxId, storeId, mailRoot: two.mailRoot });
      await t.platform.mailboxData.finishMove!(ref(two.storeA), ref(two.storeB), { signal: new AbortController().signal, log: t.platform.log, requestId: 'test' });
      assert.equal(existsSync(staged), false);
      await allDelivered(two.imap);
      assert.deepEqual(await folderSubjects(two.imap, login, password, 'Sent'), [sentCopy]);
    });

    test('a move that failed for good is undone with its data: the staged old home and what reached the new one come back, each message once', async () => {
      // the state a failed move B → A leaves: B's home staged aside (B.moving) and copied into A, where one more
      // message arrived after the switch; the compensation moves the mailbox back (routing: B) and asks for A → B
      const homeA = homeOn(two.mailRoot, two.storeA);
      const homeB = homeOn(two.mailRoot, two.storeB);
      assert.equal(existsSync(homeA), false);
      renameSync(homeB, `${homeB}.moving`);
      execFileSync('cp', ['-a', `${homeB}.moving`, homeA]);
      const late = `arrived at A after the switch ${tag()}`;
      const file = join(homeA, 'Maildir', 'new', `${Date.now()}.late${tag()}.hmc-test`);
      writeFileSync(file, `From: someone@remote.example\r\nTo: ${login}\r\nSubject: ${late}\r\n\r\nhello\r\n`);
      execFileSync('chown', ['-R', `${planes[1]!.manifest.mailUid}:${planes[1]!.manifest.mailGid}`, homeA]);
      sent.push(late);
      const ref = (storeId: string) => ({ orgId: org.org.id, mailboxId, storeId, mailRoot: two.mailRoot });
      await t.platform.mailboxData.moveMailbox(ref(two.storeA), ref(two.storeB), { signal: new AbortController().signal, log: t.platform.log, requestId: 'test' });
      for (const gone of [homeA, `${homeB}.moving`, `${homeA}.moving`]) assert.equal(existsSync(gone), false, gone);
      await allDelivered(two.imap);
      assert.deepEqual(await folderSubjects(two.imap, login, password, 'Sent'), [sentCopy]);
    });
  });
}
