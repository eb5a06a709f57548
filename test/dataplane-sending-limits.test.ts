import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { Registry } from 'prom-client';
import { DIALECTS } from '../src/store/testing.js';
import { dataplaneDovecotConfigs, doveadmUsage, startPolicyService, type PolicyService } from '../src/dataplane/policy.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { people, setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, folderSubjects, freePorts, registerMailServer, startDataplane, startSink, workDir, type RunningDataplane } from './dataplane-support.js';
import { newInstance, PolicyClient } from './policy-support.js';

/**
 * Sending limits against hijacked accounts (issue 6 item 4) through real Postfix and Dovecot on both databases:
 * authenticated submission under a limit is accepted and delivered, the next message (or recipient) is refused at
 * RCPT with a temporary 450 4.7.1 and one mail event the organization's admins can read, and once the window has
 * passed the sender is accepted again. The policy service's clock is injected, so the test moves time forward
 * instead of waiting. Counters are in the database: a second policy service on the same database (another Postfix
 * node) sees what the first counted.
 */

const tag = () => randomBytes(4).toString('hex');
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

for (const dialect of DIALECTS) {
  describe(`sending limits in the mail path (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let sink: Awaited<ReturnType<typeof startSink>>;
    let dp: RunningDataplane | undefined;
    let ports: { smtp: number; submission: number; imap: number };
    let solo: MailOrg; // mailbox limits: ann 2 messages/hour, bob 3 recipients/day
    let duo: MailOrg; // the organization's limit: 3 messages/hour for dan and eve together
    const who = people();
    const pw = who.pw;
    const id = (login: string) => who.boxes.get(login)!.id as string;
    // an event is recorded once per limit and clock period (hour, UTC day): start where the periods are predictable
    let clock = Math.floor(Date.now() / DAY) * DAY + HOUR;
    const registry = new Registry();
    let policy: PolicyService; // the one Postfix asks
    let otherNode: PolicyService; // another node's service on the same database
    let rcpt: string; // where mail goes (a mailbox of solo)

    const inbox = (login: string) => folderSubjects(ports.imap, login, pw.get(login)!);
    const submit = (login: string) => nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true, auth: { user: login, pass: pw.get(login)! } });

    /** Send from `login` to `to`; the recipients Postfix accepted and the replies of those it refused. */
    async function send(login: string, to: string[]): Promise<{ subject: string; accepted: string[]; refused: string[] }> {
      const s = submit(login);
      const subject = `from ${login} ${tag()}`;
      try {
        const r = await s.sendMail({ from: login, to, subject, text: 'hi\n' });
        return { subject, accepted: r.accepted.map(String), refused: ((r as any).rejectedErrors ?? []).map((e: any) => String(e.response)) };
      } catch (e: any) {
        // every recipient refused: no DATA, the transaction fails at RCPT
        assert.equal(e.command, 'RCPT TO', e.message);
        return { subject, accepted: [], refused: (e.rejectedErrors ?? [e]).map((x: any) => String(x.response)) };
      } finally {
        s.close();
      }
    }

    const events = async (o: MailOrg, token = o.orgAdmin) => (await t.ok('GET', `${o.orgUrl}/mail-events?limit=100`, undefined, token)).items;
    const metric = async (labels: string) => {
      const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`hmc_policy_sending_limit_refusals_total{${labels}}`));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };

    before(async () => {
      work = workDir();
      const [smtp, submission, lmtp, imap, policyPort] = (await freePorts(5)) as [number, number, number, number, number];
      ports = { smtp, submission, imap };
      t = await startTestPlatform(dialect, { config: { dataplaneRoot: work.path } });
      sink = await startSink();
      await registerMailServer(t, 'dp-limits', join(work.path, 'mail'), { lmtp, imap });
      solo = await setupMailOrg(t, 'lim', { defaultStores: false });
      duo = await setupMailOrg(t, 'limorg', { defaultStores: false, orgPlan: { maxMessagesPerHour: 3, maxRecipientsPerDay: 1000 } });
      await who.person(t, solo, 'ann', { maxMessagesPerHour: 2 });
      await who.person(t, solo, 'bob', { maxRecipientsPerDay: 3 });
      rcpt = await who.person(t, solo, 'carl');
      await who.person(t, duo, 'dan');
      await who.person(t, duo, 'eve');
      const usage = doveadmUsage(dataplaneDovecotConfigs(work.path));
      const db = t.platform.store.db;
      policy = await startPolicyService({ db, host: '127.0.0.1', port: policyPort, usage, now: () => clock, registry });
      otherNode = await startPolicyService({ db, host: '127.0.0.1', port: 0, usage, now: () => clock });
      // the rendered directory is <root>/<server name>: where the usage source finds the server's Dovecot
      dp = await startDataplane(t, 'dp-limits', join(work.path, 'dp-limits'), [
        '--smtp-port', String(smtp), '--submission-port', String(submission), '--relayhost', `[127.0.0.1]:${sink.port}`,
        '--policy-service', `127.0.0.1:${policyPort}`,
      ]);
    });
    after(async () => {
      try {
        await policy?.close();
        await otherNode?.close();
        await dp?.stop();
      } finally {
        await sink?.close();
        await t?.close();
        work?.remove();
      }
    });

    test('a mailbox\'s messages per hour: under the limit delivered, the next refused with 450 4.7.1 and one event, accepted again after the hour', async () => {
      const ann = `ann@${solo.domainName}`;
      const start = clock;
      const delivered: string[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await send(ann, [rcpt]);
        assert.deepEqual(r.accepted, [rcpt], `message ${i + 1} of 2`);
        delivered.push(r.subject);
        clock += 10 * MINUTE; // spread over the hour: the window is rolling, not "per clock hour"
      }
      await eventually('the two messages in carl\'s inbox', () => inbox(rcpt), (s) => delivered.every((x) => s.includes(x)));
      // the third, and every retry, within the hour: temporary refusal at RCPT
      for (let i = 0; i < 3; i++) {
        const r = await send(ann, [rcpt]);
        assert.deepEqual(r.accepted, []);
        assert.equal(r.refused.length, 1);
        assert.match(r.refused[0]!, /^450 4\.7\.1 .*Sending limit reached: this mailbox sends at most 2 messages per hour; try again later/);
      }
      // another node on the same database counts the same messages
      const c = await PolicyClient.open(otherNode.port);
      try {
        assert.match(await c.ask({ instance: newInstance(), login: ann, sender: ann, recipient: rcpt }), /^450 4\.7\.1 Sending limit reached: this mailbox/);
        assert.equal(await c.ask({ instance: newInstance(), login: rcpt, sender: rcpt, recipient: ann }), 'DUNNO', 'carl is not ann');
      } finally {
        await c.close();
      }
      // one event for the window, however often the client retried, on either node
      const evs = (await events(solo)).filter((e: any) => e.login === ann);
      assert.equal(evs.length, 1, JSON.stringify(evs));
      assert.equal(evs[0].event, 'sending_limit_reached');
      assert.equal(evs[0].mailboxId, id(ann));
      assert.deepEqual(evs[0].data, { scope: 'mailbox', limit: 'messagesPerHour', max: 2, count: 2 });
      assert.ok(await metric('scope="mailbox",limit="messagesPerHour"') >= 3, 'each refusal is counted in /metrics');
      // the first message leaves the window 60-61 minutes after it was sent: at +61 min one more goes through
      clock = start + 61 * MINUTE;
      const again = await send(ann, [rcpt]);
      assert.deepEqual(again.accepted, [rcpt], 'accepted again once the window has passed');
      await eventually('delivered after the window', () => inbox(rcpt), (s) => s.includes(again.subject));
      // …and the second one still counts: 2 in the window again
      const full = await send(ann, [rcpt]);
      assert.deepEqual(full.accepted, []);
      clock = start + 2 * HOUR;
    });

    test('a mailbox\'s recipients per day: a message is cut at the limit, the rest refused; the hour does not reset it, the day does', async () => {
      const bob = `bob@${solo.domainName}`;
      const start = clock;
      const first = await send(bob, [rcpt, 'x1@outside.example']);
      assert.deepEqual(first.accepted, [rcpt, 'x1@outside.example']);
      // one recipient left today: the second of this message is refused, the first delivered
      const second = await send(bob, [rcpt, 'x2@outside.example']);
      assert.deepEqual(second.accepted, [rcpt]);
      assert.equal(second.refused.length, 1);
      assert.match(second.refused[0]!, /^450 4\.7\.1 .*this mailbox sends at most 3 recipients per day/);
      await eventually('both messages delivered', () => inbox(rcpt), (s) => s.includes(first.subject) && s.includes(second.subject));
      await eventually('the outside recipient got the first', async () => sink.messages.filter((m) => m.raw.includes(first.subject)), (m) => m.length === 1);
      // the messages-per-hour window passing frees nothing: recipients are counted over the day
      clock = start + 2 * HOUR;
      assert.deepEqual((await send(bob, [rcpt])).accepted, []);
      const evs = (await events(solo)).filter((e: any) => e.login === bob);
      assert.equal(evs.length, 1, 'one event for the day');
      assert.deepEqual(evs[0].data, { scope: 'mailbox', limit: 'recipientsPerDay', max: 3, count: 3 });
      clock = start + 23 * HOUR;
      assert.deepEqual((await send(bob, [rcpt])).accepted, [], 'still within 24 hours of the first message');
      // 25 hours on: the day's window has passed
      clock = start + 25 * HOUR;
      const later = await send(bob, [rcpt, 'x3@outside.example', 'x4@outside.example']);
      assert.deepEqual(later.accepted, [rcpt, 'x3@outside.example', 'x4@outside.example']);
      await eventually('delivered after the day', () => inbox(rcpt), (s) => s.includes(later.subject));
      clock += HOUR;
    });

    test('the organization\'s limit: two mailboxes together reach it; either is refused; both send again after the hour', async () => {
      const dan = `dan@${duo.domainName}`;
      const eve = `eve@${duo.domainName}`;
      const start = clock;
      const subjects: string[] = [];
      for (const who of [dan, eve, dan]) {
        const r = await send(who, [rcpt]);
        assert.deepEqual(r.accepted, [rcpt], who);
        subjects.push(r.subject);
      }
      await eventually('three messages delivered', () => inbox(rcpt), (s) => subjects.every((x) => s.includes(x)));
      // each mailbox is far below its own 500; the organization is at its 3
      for (const who of [eve, dan, eve]) {
        const r = await send(who, [rcpt]);
        assert.deepEqual(r.accepted, [], who);
        assert.match(r.refused[0]!, /^450 4\.7\.1 .*this organization sends at most 3 messages per hour/);
      }
      const evs = await events(duo);
      assert.equal(evs.length, 1, 'one event for the organization in this window, whichever mailbox hit it');
      assert.equal(evs[0].event, 'sending_limit_reached');
      assert.deepEqual(evs[0].data, { scope: 'organization', limit: 'messagesPerHour', max: 3, count: 3 });
      assert.ok([id(dan), id(eve)].includes(evs[0].mailboxId));
      // the other organization's mailboxes are not held back by it
      assert.deepEqual((await send(`carl@${solo.domainName}`, [`dan@${duo.domainName}`])).accepted, [`dan@${duo.domainName}`]);
      clock = start + 61 * MINUTE;
      const back = await send(eve, [rcpt]);
      assert.deepEqual(back.accepted, [rcpt]);
      await eventually('delivered after the hour', () => inbox(rcpt), (s) => s.includes(back.subject));
    });

    test('the organization\'s recipients per day over the protocol: the sum of its mailboxes, counted at END-OF-MESSAGE only', async () => {
      const dan = `dan@${duo.domainName}`;
      const eve = `eve@${duo.domainName}`;
      // a plan edit takes effect at the next message, no re-apply needed: the organization's limits are read live
      await t.ok('PATCH', `/api/v1/plans/organization/${duo.orgPlanId}`, { maxMessagesPerHour: 1000, maxRecipientsPerDay: 6 }, duo.resellerAdmin);
      clock += 26 * HOUR; // a fresh day
      const c = await PolicyClient.open(policy.port);
      try {
        const message = async (login: string, n: number, end = true) => {
          const i = newInstance();
          const answers: string[] = [];
          for (let k = 0; k < n; k++) answers.push(await c.ask({ instance: i, login, sender: login, recipient: `r${k}@outside.example` }));
          const accepted = answers.filter((a) => a === 'DUNNO').length;
          if (end && accepted > 0) assert.equal(await c.ask({ instance: i, state: 'END-OF-MESSAGE', login, sender: login, size: 100, recipientCount: accepted }), 'DUNNO');
          return answers;
        };
        // a message abandoned before its end (RSET, QUIT, a refusal after DATA) counts nothing
        assert.deepEqual(await message(dan, 6, false), Array(6).fill('DUNNO'));
        assert.deepEqual(await message(dan, 4), Array(4).fill('DUNNO'));
        const cut = await message(eve, 3);
        assert.deepEqual(cut.slice(0, 2), ['DUNNO', 'DUNNO']);
        assert.match(cut[2]!, /^450 4\.7\.1 Sending limit reached: this organization sends at most 6 recipients per day/);
        assert.match((await message(dan, 1))[0]!, /^450 4\.7\.1 .*organization/);
        // unauthenticated (MX) traffic is not counted and not limited
        assert.deepEqual(await message('', 5), Array(5).fill('DUNNO'));
      } finally {
        await c.close();
      }
      const evs = (await events(duo)).filter((e: any) => e.data.limit === 'recipientsPerDay');
      assert.equal(evs.length, 1);
      assert.deepEqual(evs[0].data, { scope: 'organization', limit: 'recipientsPerDay', max: 6, count: 6 });
    });

    test('mail events are read within scope only', async () => {
      assert.ok((await events(solo)).length >= 2);
      assert.ok((await events(solo, solo.resellerAdmin)).length >= 2, 'the reseller reads its organizations\' events');
      assert.ok((await events(solo, t.adminToken)).length >= 2, 'the provider reads all');
      // another organization's admin and reseller: 404, as for anything outside their scope
      for (const token of [duo.orgAdmin, duo.resellerAdmin]) {
        const r = await t.call('GET', `${solo.orgUrl}/mail-events`, { token });
        assert.equal(r.statusCode, 404, r.body);
        assert.equal(r.json().code, 'not_found');
      }
      // a user of the organization: not for users
      const u = await t.ok('GET', `${solo.orgUrl}/users?limit=1`, undefined, solo.orgAdmin);
      const userToken = await t.ok('POST', '/api/v1/tokens', { name: 'ann self', role: 'user', orgId: solo.org.id, userId: u.items[0].id }, solo.orgAdmin);
      assert.equal((await t.call('GET', `${solo.orgUrl}/mail-events`, { token: userToken.token })).statusCode, 404);
      // filters
      const ann = `ann@${solo.domainName}`;
      const mine = await t.ok('GET', `${solo.orgUrl}/mail-events?mailbox=${id(ann)}`, undefined, solo.orgAdmin);
      assert.ok(mine.items.length >= 1 && mine.items.every((e: any) => e.mailboxId === id(ann)));
      assert.equal((await t.ok('GET', `${solo.orgUrl}/mail-events?event=nothing_like_this`, undefined, solo.orgAdmin)).items.length, 0);
      const bad = await t.call('GET', `${solo.orgUrl}/mail-events?mailbox=not-an-id`, { token: solo.orgAdmin });
      assert.equal(bad.statusCode, 400, bad.body);
    });
  });
}
