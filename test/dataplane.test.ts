import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';
import { DIALECTS } from '../src/store/testing.js';
import { main } from '../src/cli/main.js';
import { fakeIo } from '../src/cli/fake-io.js';
import { down, up } from '../src/dataplane/instance.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, folderSubjects, freePorts } from './dataplane-support.js';

/**
 * The real data plane: private Postfix and Dovecot instances (Debian packages, scripts/install-dataplane.sh)
 * rendered from the platform's own database, on 127.0.0.1 and free high ports. Mail goes in over SMTP,
 * is routed through the dp_* views to Dovecot's LMTP and is read back over IMAP with the user's password.
 */

/** Poll the INBOX until `subject` is there (delivery is asynchronous: queue, then LMTP). */
const waitForSubject = (port: number, user: string, pass: string, subject: string) =>
  eventually(`"${subject}" delivered to ${user}`, () => folderSubjects(port, user, pass), (s) => s.includes(subject));

for (const dialect of DIALECTS) {
  describe(`data plane: Postfix and Dovecot on the dp_* views (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: string;
    let dir: string | undefined;
    before(async () => {
      t = await startTestPlatform(dialect);
      // outside the platform's data dir: the postfix user and the mail uid must be able to pass through
      work = mkdtempSync('/tmp/hmc-dp-');
      chmodSync(work, 0o755);
    });
    after(async () => {
      try {
        if (dir && existsSync(join(dir, 'dataplane.json'))) await down(dir);
      } finally {
        await t?.close();
        rmSync(work, { recursive: true, force: true });
      }
    });

    test('SMTP to a mailbox address is delivered to its Dovecot mailbox and read over IMAP; unknown recipients are refused at RCPT', async () => {
      const [smtpPort, lmtpPort, imapPort] = (await freePorts(3)) as [number, number, number];
      const mailRoot = join(work, 'mail');
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: 'dp-1', lmtpEndpoint: `127.0.0.1:${lmtpPort}`, imapEndpoint: `127.0.0.1:${imapPort}`, mailRoot });
      const store = await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-store', capacityBytes: 2 ** 50 });
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-public', purpose: 'public_folder', capacityBytes: 2 ** 50 });
      const m = await setupMailOrg(t, 'dp', { defaultStores: false });
      const password = `pw-${randomBytes(6).toString('hex')}`;
      const login = `ann@${m.domainName}`;
      const user = await t.ok('POST', `${m.orgUrl}/users?wait=true`, { login, password });
      const mbx = await t.ok('POST', `${m.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: user.id, planId: m.mailboxPlanId });
      const bobPassword = `pw-${randomBytes(6).toString('hex')}`;
      const second = await t.ok('POST', `${m.orgUrl}/users?wait=true`, { login: `bob@${m.domainName}`, password: bobPassword });
      await t.ok('POST', `${m.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: second.id, planId: m.mailboxPlanId });

      // the views as Postfix and Dovecot will read them
      const db = t.platform.store.db;
      const placed = await db.selectFrom('mailboxes').select(['store_id', 'primary_address', 'prohibit_send_receive_quota']).where('id', '=', mbx.id).executeTakeFirstOrThrow();
      assert.equal(placed.store_id, store.id);
      assert.equal(placed.primary_address, login);
      assert.deepEqual(await db.selectFrom('dp_virtual_domains').select('domain').where('org_id', '=', m.org.id).execute(), [{ domain: m.domainName }]);
      assert.deepEqual(await db.selectFrom('dp_transport').select('transport').where('address', '=', login).execute(), [{ transport: `lmtp:inet:127.0.0.1:${lmtpPort}` }]);
      const row = await db.selectFrom('dp_users').selectAll().where('login', '=', login).executeTakeFirstOrThrow();
      assert.equal(row.home, `${mailRoot}/${store.id}/${m.org.id}/${mbx.id}`);
      assert.equal(Number(row.quota_bytes), Number(placed.prohibit_send_receive_quota));
      assert.match(String(row.password), /^\{BLF-CRYPT\}\$2[aby]\$/);

      // render through the CLI (it opens the database itself), then start the instances
      dir = join(work, 'dp');
      const io = fakeIo({ env: { HMC_DATA_DIR: t.config.dataDir, ...(t.tdb.url ? { HMC_DATABASE_URL: t.tdb.url } : {}) } });
      const code = await main(['dataplane', 'render', '--server', 'dp-1', '--out', dir, '--smtp-port', String(smtpPort), '--plaintext-auth', '--mail-uid', '5000'], io);
      assert.equal(code, 0, io.errors());
      const mainCf = readFileSync(join(dir, 'postfix/etc/main.cf'), 'utf8');
      assert.match(mainCf, dialect === 'sqlite' ? /virtual_mailbox_maps = sqlite:/ : /virtual_mailbox_maps = proxy:pgsql:/);
      // relay domains match exactly: Postfix itself says subdomains are not relay_domains' business
      const parents = execFileSync('postconf', ['-c', join(dir, 'postfix/etc'), '-h', 'parent_domain_matches_subdomains'], { encoding: 'utf8' });
      assert.ok(!parents.split(/[\s,]+/).includes('relay_domains'), parents);
      const started = await up(dir);
      assert.equal(started.alreadyUp, false);
      assert.deepEqual([...started.ports].sort(), [smtpPort, lmtpPort, imapPort].sort());

      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true });
      try {
        const subject = `hello ${randomBytes(4).toString('hex')}`;
        const sent = await transport.sendMail({ from: 'sender@remote.example', to: login, subject, text: 'over SMTP, through LMTP, read over IMAP\n' });
        assert.deepEqual(sent.accepted, [login]);
        const inbox = await waitForSubject(imapPort, login, password, subject);
        assert.deepEqual(inbox, [subject], 'exactly the one message');
        // only in ann's mailbox
        assert.ok(existsSync(join(mailRoot, store.id, m.org.id, mbx.id, 'Maildir')));

        // an address on the accepted domain that no mailbox has: 550 at RCPT, so nothing is queued to bounce
        const ghost = `ghost@${m.domainName}`;
        await assert.rejects(transport.sendMail({ from: 'sender@remote.example', to: ghost, subject: 'nobody', text: 'x\n' }), (e: any) => {
          assert.equal(e.command, 'RCPT TO', e.message);
          assert.ok(e.responseCode >= 500 && e.responseCode < 600, e.message);
          return true;
        });
        // a domain nobody hosts is not relayed
        await assert.rejects(transport.sendMail({ from: 'sender@remote.example', to: 'x@unhosted.example', subject: 'relay', text: 'x\n' }), (e: any) => {
          assert.equal(e.command, 'RCPT TO', e.message);
          assert.ok(e.responseCode >= 500 && e.responseCode < 600, e.message);
          return true;
        });
        // only ann's mailbox got it; her quota is the mailbox's prohibitSendReceiveQuota, read back from Dovecot
        assert.deepEqual(await folderSubjects(imapPort, `bob@${m.domainName}`, bobPassword), []);
        const client = new ImapFlow({ host: '127.0.0.1', port: imapPort, secure: false, auth: { user: login, pass: password }, logger: false });
        await client.connect();
        try {
          const quota = await client.getQuota('INBOX');
          assert.ok(quota && quota.storage, 'Dovecot reports a storage quota');
          assert.equal(quota.storage.limit, Number(placed.prohibit_send_receive_quota));
        } finally {
          await client.logout().catch(() => {});
        }
        // a wrong password is refused
        await assert.rejects(folderSubjects(imapPort, login, `${password}-wrong`));
      } finally {
        transport.close();
      }

      const stopped = await down(dir);
      assert.deepEqual(stopped.stopped.sort(), ['dovecot', 'postfix']);
      assert.deepEqual((await down(dir)).stopped, [], 'down is idempotent');
    });
  });
}
