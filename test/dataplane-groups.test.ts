import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { DIALECTS } from '../src/store/testing.js';
import { dataplaneDovecotConfigs, doveadmUsage, startPolicyService, type PolicyService } from '../src/dataplane/policy.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { people, setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, folderSubjects, freePorts, registerMailServer, startDataplane, startSink, workDir, type RunningDataplane } from './dataplane-support.js';
import { newInstance, PolicyClient } from './policy-support.js';

/**
 * Distribution groups in the mail path (issue 6 item 3) through real Postfix and Dovecot on both databases, with
 * HMC's policy service deciding who may send to a group: `organization` admits authenticated senders of the
 * group's organization only (the MX and other tenants are refused with 550 5.7.1 at RCPT), `anyone` admits the
 * MX, `listed` admits listed mailboxes, members of listed groups and (from the MX) listed contacts' addresses. Two
 * organizations with the same group names and local parts never reach each other's mailboxes, not even through a
 * membership row written around the API; an address in quarantine (a deleted mailbox's, a removed alias, a group's
 * whose mail was disabled) is refused at RCPT.
 */

const tag = () => randomBytes(4).toString('hex');

for (const dialect of DIALECTS) {
  describe(`group send policies and isolation in the mail path (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let sink: Awaited<ReturnType<typeof startSink>>;
    let dp: RunningDataplane | undefined;
    let policy: PolicyService;
    let ports: { smtp: number; submission: number; imap: number };
    let a: MailOrg;
    let b: MailOrg;
    const who = people();
    const pw = who.pw;
    const id = (login: string) => who.boxes.get(login)!.id as string;
    const groups = new Map<string, string>();
    let A: string;
    let B: string;
    let aliasA: string;

    async function group(o: MailOrg, local: string, sendPolicy: string, members: string[]): Promise<string> {
      const g = await t.ok('POST', `${o.orgUrl}/groups`, { name: `${local}-${tag()}` }, o.orgAdmin);
      await t.ok('PUT', `${o.orgUrl}/groups/${g.id}/mail?wait=true`, { primaryAddress: `${local}@${o.domainName}`, sendPolicy }, o.orgAdmin);
      for (const m of members) await t.ok('POST', `${o.orgUrl}/groups/${g.id}/mail-members?wait=true`, { memberId: m }, o.orgAdmin);
      groups.set(`${local}@${o.domainName}`, g.id);
      return g.id;
    }
    const inbox = (login: string) => folderSubjects(ports.imap, login, pw.get(login)!);
    const mx = () => nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
    const submission = (login: string) => nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true, auth: { user: login, pass: pw.get(login)! } });

    /** Send one message to `to` (from the MX when `login` is null); resolves to its subject when accepted. */
    async function accepted(login: string | null, from: string, to: string): Promise<string> {
      const s = login ? submission(login) : mx();
      const subject = `${login ?? 'mx'} to ${to} ${tag()}`;
      try {
        const r = await s.sendMail({ envelope: { from, to: [to] }, from, to, subject, text: 'x\n' });
        assert.deepEqual(r.accepted.map((x) => String(x).toLowerCase()), [to.toLowerCase()], `${login ?? 'MX'} (${from}) → ${to}`);
        return subject;
      } finally {
        s.close();
      }
    }
    /** Send one message to `to` and expect it refused at RCPT with `code` and a reply matching `text`. */
    async function refused(login: string | null, from: string, to: string, code: number, text: RegExp): Promise<void> {
      const s = login ? submission(login) : mx();
      try {
        await assert.rejects(s.sendMail({ envelope: { from, to: [to] }, from, to, subject: 'refused', text: 'x\n' }), (e: any) => {
          assert.equal(e.command, 'RCPT TO', `${login ?? 'MX'} (${from}) → ${to}: ${e.message}`);
          assert.equal(e.responseCode, code, `${login ?? 'MX'} (${from}) → ${to}: ${e.response}`);
          assert.match(e.response, text);
          return true;
        });
      } finally {
        s.close();
      }
    }
    const NOT_AUTHORIZED = /^550 5\.7\.1 .*Not authorized to send to </;
    const UNKNOWN = /^550 5\.1\.1 /;

    before(async () => {
      work = workDir();
      const [smtp, submissionPort, lmtp, imap, policyPort] = (await freePorts(5)) as [number, number, number, number, number];
      ports = { smtp, submission: submissionPort, imap };
      t = await startTestPlatform(dialect, { config: { dataplaneRoot: work.path } });
      sink = await startSink();
      await registerMailServer(t, 'dp-groups', join(work.path, 'mail'), { lmtp, imap });
      a = await setupMailOrg(t, 'grpa', { defaultStores: false });
      b = await setupMailOrg(t, 'grpb', { defaultStores: false });
      A = a.domainName;
      B = b.domainName;
      for (const local of ['ann', 'bob', 'carl', 'dora']) await who.person(t, a, local);
      for (const local of ['ann', 'zed']) await who.person(t, b, local);
      const alias = await t.ok('POST', `${a.orgUrl}/domains`, { name: `alias-${A}` }, a.orgAdmin);
      await t.ok('PUT', `${a.orgUrl}/domains/${alias.id}/accepted`, { aliasOf: a.domainId }, a.orgAdmin);
      aliasA = `alias-${A}`;
      // the same group names and local parts in both organizations
      await group(a, 'team', 'organization', [id(`ann@${A}`), id(`bob@${A}`)]);
      await group(b, 'team', 'organization', [id(`ann@${B}`)]);
      await group(a, 'open', 'anyone', [id(`bob@${A}`)]);
      // board@A: listed senders are ann, the group leads (carl is in it, through the nested group inner) and a partner
      const partner = await t.ok('POST', `${a.orgUrl}/contacts`, { displayName: 'Partner', externalAddress: 'partner@outside.example' }, a.orgAdmin);
      const inner = await group(a, 'inner', 'organization', [id(`carl@${A}`)]);
      const leads = await group(a, 'leads', 'organization', [inner]);
      const board = await group(a, 'board', 'listed', [id(`dora@${A}`)]);
      await t.ok('PUT', `${a.orgUrl}/groups/${board}/senders`, { senders: [id(`ann@${A}`), leads, partner.id] }, a.orgAdmin);
      policy = await startPolicyService({ db: t.platform.store.db, host: '127.0.0.1', port: policyPort, usage: doveadmUsage(dataplaneDovecotConfigs(work.path)) });
      dp = await startDataplane(t, 'dp-groups', join(work.path, 'dp-groups'), [
        '--smtp-port', String(smtp), '--submission-port', String(submissionPort), '--relayhost', `[127.0.0.1]:${sink.port}`,
        '--policy-service', `127.0.0.1:${policyPort}`,
      ]);
    });
    after(async () => {
      try {
        await policy?.close();
        await dp?.stop();
      } finally {
        await sink?.close();
        await t?.close();
        work?.remove();
      }
    });

    test('organization (the default): authenticated senders of the group\'s organization only; the MX and other tenants get 550 5.7.1', async () => {
      const team = `team@${A}`;
      const delivered = [await accepted(`ann@${A}`, `ann@${A}`, team), await accepted(`carl@${A}`, `carl@${A}`, `team@${aliasA}`)];
      await eventually('ann and bob got both', async () => [await inbox(`ann@${A}`), await inbox(`bob@${A}`)], ([x, y]) => delivered.every((s) => x!.includes(s) && y!.includes(s)));
      // the MX, even when MAIL FROM claims the organization's own address, and through the domain alias
      await refused(null, 'someone@outside.example', team, 550, NOT_AUTHORIZED);
      await refused(null, `ann@${A}`, team, 550, NOT_AUTHORIZED);
      await refused(null, 'someone@outside.example', `team@${aliasA}`, 550, NOT_AUTHORIZED);
      await refused(null, 'someone@outside.example', `TEAM@${A.toUpperCase()}`, 550, NOT_AUTHORIZED);
      // an authenticated user of the other organization, whose own team@ has the same local part
      await refused(`ann@${B}`, `ann@${B}`, team, 550, NOT_AUTHORIZED);
      assert.ok(await accepted(`ann@${B}`, `ann@${B}`, `team@${B}`));
      // the null sender (a bounce) is nobody's member
      await refused(null, '', team, 550, NOT_AUTHORIZED);
    });

    test('anyone: the MX may write to the group', async () => {
      const s = await accepted(null, 'someone@outside.example', `open@${A}`);
      await eventually('bob got it', () => inbox(`bob@${A}`), (x) => x.includes(s));
    });

    test('listed: listed mailboxes, members of listed groups (nested too) and, from the MX, a listed contact\'s address; nobody else', async () => {
      const board = `board@${A}`;
      const ok = [
        await accepted(`ann@${A}`, `ann@${A}`, board), // listed
        await accepted(`carl@${A}`, `carl@${A}`, board), // in inner, in leads, which is listed
        await accepted(null, 'partner@outside.example', board), // the listed contact's address, from the MX
        await accepted(null, 'PARTNER@outside.example', `board@${aliasA}`),
      ];
      await eventually('dora got all four', () => inbox(`dora@${A}`), (x) => ok.every((s) => x.includes(s)));
      await refused(`bob@${A}`, `bob@${A}`, board, 550, NOT_AUTHORIZED); // of the organization, not listed
      await refused(`dora@${A}`, `dora@${A}`, board, 550, NOT_AUTHORIZED); // a member is not a sender
      await refused(null, 'stranger@outside.example', board, 550, NOT_AUTHORIZED);
      await refused(null, `ann@${A}`, board, 550, NOT_AUTHORIZED); // ann's address is listed as her login, not as a MAIL FROM
      await refused(`ann@${B}`, `ann@${B}`, board, 550, NOT_AUTHORIZED); // another tenant
      // B lists a contact with the partner's address on its own group: that lets the partner write to B's group, not A's
      const bPartner = await t.ok('POST', `${b.orgUrl}/contacts`, { displayName: 'Partner', externalAddress: 'other-partner@outside.example' }, b.orgAdmin);
      const bBoard = await group(b, 'board', 'listed', [id(`zed@${B}`)]);
      await t.ok('PUT', `${b.orgUrl}/groups/${bBoard}/senders`, { senders: [bPartner.id] }, b.orgAdmin);
      await accepted(null, 'other-partner@outside.example', `board@${B}`);
      await refused(null, 'other-partner@outside.example', board, 550, NOT_AUTHORIZED);
      // a change of the listed senders is live at the next message
      await t.ok('PUT', `${a.orgUrl}/groups/${groups.get(board)}/senders`, { senders: [id(`bob@${A}`)] }, a.orgAdmin);
      await accepted(`bob@${A}`, `bob@${A}`, board);
      await refused(`ann@${A}`, `ann@${A}`, board, 550, NOT_AUTHORIZED);
      await refused(null, 'partner@outside.example', board, 550, NOT_AUTHORIZED);
    });

    test('a group never expands to another tenant\'s mailbox: not through the API, not through a row written around it', async () => {
      // the API refuses another organization's mailbox as a member
      const r = await t.call('POST', `${a.orgUrl}/groups/${groups.get(`team@${A}`)}/mail-members`, { token: a.orgAdmin, body: { memberId: id(`zed@${B}`) } });
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().code, 'recipient_not_in_organization');
      // a membership row naming B's zed in A's team, as a bug or a hand-made edit would leave it
      const db = t.platform.store.db;
      await db.insertInto('mail_group_members').values({ group_id: groups.get(`team@${A}`)!, org_id: a.org.id, member_id: id(`zed@${B}`), member_kind: 'mailbox' }).execute();
      try {
        const dest = (await db.selectFrom('dp_virtual_aliases').select('destination').where('address', '=', `team@${A}`).execute()).map((x) => x.destination).sort();
        assert.deepEqual(dest, [`ann@${A}`, `bob@${A}`]);
        const toA = await accepted(`carl@${A}`, `carl@${A}`, `team@${A}`);
        const toB = await accepted(`ann@${B}`, `ann@${B}`, `team@${B}`);
        await eventually('A\'s team got A\'s message, B\'s ann got B\'s', async () => [await inbox(`ann@${A}`), await inbox(`bob@${A}`), await inbox(`ann@${B}`)],
          ([x, y, z]) => x!.includes(toA) && y!.includes(toA) && z!.includes(toB));
        // one LMTP delivery carries every recipient of a message on this server: had zed been one, he would have it now;
        // a message sent to him directly afterwards proves his inbox is read after the group's delivery
        const marker = await accepted(null, 'someone@outside.example', `zed@${B}`);
        const zed = await eventually('zed\'s own message', () => inbox(`zed@${B}`), (x) => x.includes(marker));
        assert.ok(!zed.includes(toA), 'zed never gets A\'s team mail');
        assert.ok(!(await inbox(`ann@${A}`)).includes(toB) && !(await inbox(`ann@${B}`)).includes(toA), 'the two anns keep their own');
      } finally {
        await db.deleteFrom('mail_group_members').where('group_id', '=', groups.get(`team@${A}`)!).where('member_id', '=', id(`zed@${B}`)).execute();
      }
    });

    test('addresses in quarantine are refused at RCPT: a deleted mailbox\'s, a removed alias, a group\'s whose mail was disabled', async () => {
      const gone = await who.person(t, a, 'gone');
      await t.ok('POST', `${a.orgUrl}/mailboxes/${id(`carl@${A}`)}/aliases?wait=true`, { address: `carlos@${A}` }, a.orgAdmin);
      const old = await group(a, 'old', 'anyone', [id(`carl@${A}`)]);
      // all three deliver while they exist
      for (const to of [gone, `carlos@${A}`, `old@${A}`]) await accepted(null, 'someone@outside.example', to);
      await t.ok('DELETE', `${a.orgUrl}/mailboxes/${id(gone)}?wait=true`, undefined, a.orgAdmin);
      await t.ok('DELETE', `${a.orgUrl}/mailboxes/${id(`carl@${A}`)}/aliases?wait=true&address=${encodeURIComponent(`carlos@${A}`)}`, undefined, a.orgAdmin);
      await t.ok('DELETE', `${a.orgUrl}/groups/${old}/mail?wait=true`, undefined, a.orgAdmin);
      const db = t.platform.store.db;
      const quarantined = (await db.selectFrom('address_quarantine').select('address').where('org_id', '=', a.org.id).execute()).map((x) => x.address);
      for (const q of [gone, `carlos@${A}`, `old@${A}`]) {
        assert.ok(quarantined.includes(q), `${q} is in quarantine`);
        await refused(null, 'someone@outside.example', q, 550, UNKNOWN);
        await refused(`ann@${A}`, `ann@${A}`, q, 550, UNKNOWN);
        await refused(null, 'someone@outside.example', q.replace(`@${A}`, `@${aliasA}`), 550, UNKNOWN);
      }
      // the policy service has nothing to say about them; Postfix refuses them as unknown
      const c = await PolicyClient.open(policy.port);
      try {
        for (const q of [gone, `old@${A}`]) assert.equal(await c.ask({ instance: newInstance(), recipient: q, size: 10 }), 'DUNNO');
      } finally {
        await c.close();
      }
    });
  });
}
