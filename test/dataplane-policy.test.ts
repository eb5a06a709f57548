import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { DIALECTS } from '../src/store/testing.js';
import { openStore } from '../src/store/db.js';
import {
  dataplaneDovecotConfigs, doveadmUsage, MAX_REQUEST_BYTES, parseListenAddress, startPolicyService, type PolicyService, type UsageSource,
} from '../src/dataplane/policy.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, freePorts, startDataplane, startSink, workDir, type RunningDataplane } from './dataplane-support.js';
import { newInstance, PolicyClient } from './policy-support.js';

/**
 * HMC's Postfix policy service (dataplane/policy.ts) against a real platform database and a real data plane:
 * the protocol spoken over TCP as Postfix speaks it, usage read back from the data plane's Dovecot with
 * doveadm after real deliveries filled a mailbox, and Postfix itself asking the service on the MX and on
 * the authenticated submission listener (the service `hmc serve` starts from HMC_POLICY_LISTEN).
 */

const tag = () => randomBytes(4).toString('hex');

/** A usage source that counts its calls per login (the real one underneath). */
function counting(source: UsageSource): UsageSource & { calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const f = (login: string, server: { id: string; name: string }) => {
    calls.set(login, (calls.get(login) ?? 0) + 1);
    return source(login, server);
  };
  return Object.assign(f, { calls });
}

const DUNNO = 'DUNNO';

for (const dialect of DIALECTS) {
  describe(`policy service: per-mailbox limits in the mail path (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let sink: Awaited<ReturnType<typeof startSink>>;
    let dp: RunningDataplane | undefined;
    let ports: { smtp: number; submission: number; policy: number };
    let o: MailOrg;
    const pw = new Map<string, string>();
    let ann: string; // sender limits: 3 recipients, 10,000-byte messages, send quota 20,000 bytes
    let bob: string; // receives messages up to 5,000 bytes
    let carl: string; // the plan's defaults
    let team: string; // a group (carl)
    const services: PolicyService[] = [];
    let usage: ReturnType<typeof counting>;
    let cached: PolicyService; // usage cached for a minute: one doveadm per login
    let fresh: PolicyService; // usage read on every request

    async function person(local: string, overrides?: Record<string, unknown>): Promise<string> {
      const login = `${local}@${o.domainName}`;
      const password = `pw-${tag()}`;
      const u = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login, password });
      await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: u.id, planId: o.mailboxPlanId, ...(overrides ? { overrides } : {}) });
      pw.set(login, password);
      return login;
    }

    before(async () => {
      work = workDir();
      const [smtp, submission, lmtp, imap, policy] = (await freePorts(5)) as [number, number, number, number, number];
      ports = { smtp, submission, policy };
      // as `hmc serve` with HMC_POLICY_LISTEN and HMC_DATAPLANE_ROOT: listen() starts the policy service
      t = await startTestPlatform(dialect, { config: { port: 0, policyListen: `127.0.0.1:${policy}`, dataplaneRoot: work.path } });
      sink = await startSink();
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: 'dp-policy', lmtpEndpoint: `127.0.0.1:${lmtp}`, imapEndpoint: `127.0.0.1:${imap}`, mailRoot: join(work.path, 'mail') });
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-policy-store', capacityBytes: 2 ** 50 });
      await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: 'dp-policy-public', purpose: 'public_folder', capacityBytes: 2 ** 50 });
      o = await setupMailOrg(t, 'pol', { defaultStores: false });
      ann = await person('ann', { recipientLimit: 3, maxSendSize: 10_000, issueWarningQuota: 0, prohibitSendQuota: 20_000 });
      bob = await person('bob', { maxReceiveSize: 5_000 });
      carl = await person('carl');
      const g = await t.ok('POST', `${o.orgUrl}/groups`, { name: 'team' }, o.orgAdmin);
      // anyone may write to it (the MX too): its send policy is not what these tests are about (dataplane-groups.test.ts)
      await t.ok('PUT', `${o.orgUrl}/groups/${g.id}/mail?wait=true`, { primaryAddress: `team@${o.domainName}`, sendPolicy: 'anyone' }, o.orgAdmin);
      const carlMailbox = (await t.ok('GET', `${o.orgUrl}/mailboxes?limit=100`, undefined, o.orgAdmin)).items.find((m: any) => m.primaryAddress === carl);
      await t.ok('POST', `${o.orgUrl}/groups/${g.id}/mail-members?wait=true`, { memberId: carlMailbox.id }, o.orgAdmin);
      team = `team@${o.domainName}`;
      // the rendered directory is <root>/<server name>: where the usage source finds the server's Dovecot
      dp = await startDataplane(t, 'dp-policy', join(work.path, 'dp-policy'), [
        '--smtp-port', String(smtp), '--submission-port', String(submission), '--relayhost', `[127.0.0.1]:${sink.port}`,
        '--policy-service', `127.0.0.1:${policy}`,
      ]);
      await t.platform.listen();
      usage = counting(doveadmUsage(dataplaneDovecotConfigs(work.path)));
      cached = await startPolicyService({ db: t.platform.store.db, host: '127.0.0.1', port: 0, usage, usageCacheMs: 60_000 });
      fresh = await startPolicyService({ db: t.platform.store.db, host: '127.0.0.1', port: 0, usage: doveadmUsage(dataplaneDovecotConfigs(work.path)), usageCacheMs: 0 });
      services.push(cached, fresh);
    });
    after(async () => {
      try {
        for (const s of services) await s.close();
        await dp?.stop();
      } finally {
        await sink?.close();
        await t?.close();
        work?.remove();
      }
    });

    test('hmc serve runs the service from HMC_POLICY_LISTEN; a bad address is refused', async () => {
      assert.equal(t.platform.policy?.port, ports.policy);
      const c = await PolicyClient.open(ports.policy);
      try {
        assert.equal(await c.ask({ instance: newInstance(), recipient: carl }), DUNNO);
      } finally {
        await c.close();
      }
      assert.deepEqual(parseListenAddress('127.0.0.1:10040'), { host: '127.0.0.1', port: 10040 });
      assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
      for (const bad of ['127.0.0.1', ':25', 'host:70000', 'a b:1']) assert.throws(() => parseListenAddress(bad), /host:port/);
    });

    test('recipient limit: the first N recipients of a message pass, the rest get 452 4.5.3; usage is read once per message', async () => {
      const c = await PolicyClient.open(cached.port);
      try {
        const i = newInstance();
        const rcpts = [carl, bob, team, 'someone@remote.example', 'other@remote.example'];
        const answers = [];
        for (const r of rcpts) answers.push(await c.ask({ instance: i, login: ann, sender: ann, recipient: r }));
        assert.deepEqual(answers, [DUNNO, DUNNO, DUNNO, '452 4.5.3 Too many recipients', '452 4.5.3 Too many recipients']);
        assert.equal(usage.calls.get(ann), 1, 'one doveadm run for the whole message');
        assert.equal(await c.ask({ instance: i, state: 'END-OF-MESSAGE', login: ann, sender: ann, size: 900, recipientCount: 3 }), DUNNO);
        // the next message starts from zero
        const next = newInstance();
        for (const r of rcpts.slice(0, 3)) assert.equal(await c.ask({ instance: next, login: ann, sender: ann, recipient: r }), DUNNO);
        assert.equal(await c.ask({ instance: next, login: ann, sender: ann, recipient: rcpts[3] }), '452 4.5.3 Too many recipients');
        // a message abandoned without END-OF-MESSAGE (RSET, QUIT): the next instance on the connection starts afresh
        const third = newInstance();
        assert.equal(await c.ask({ instance: third, login: ann, recipient: carl }), DUNNO);
        // carl's limit is the plan's (500)
        const i2 = newInstance();
        for (let n = 0; n < 10; n++) assert.equal(await c.ask({ instance: i2, login: carl, recipient: `r${n}@remote.example` }), DUNNO);
      } finally {
        await c.close();
      }
    });

    test('several connections: each message is counted on its own, and a reconnect in the middle of a message keeps its count', async () => {
      const [c1, c2] = await Promise.all([PolicyClient.open(cached.port), PolicyClient.open(cached.port)]);
      const i1 = newInstance();
      const i2 = newInstance();
      try {
        for (let n = 0; n < 3; n++) {
          assert.equal(await c1.ask({ instance: i1, login: ann, recipient: `a${n}@remote.example` }), DUNNO);
          assert.equal(await c2.ask({ instance: i2, login: ann, recipient: `b${n}@remote.example` }), DUNNO);
        }
        // pipelined on one connection: answered in order
        const both = await Promise.all([c1.ask({ instance: i1, login: ann, recipient: 'x@remote.example' }), c1.ask({ instance: i1, state: 'DATA', login: ann })]);
        assert.deepEqual(both, ['452 4.5.3 Too many recipients', DUNNO]);
      } finally {
        await c1.close();
      }
      // Postfix reconnects (smtpd_policy_service_max_ttl) in the middle of i2: it is still at 3
      const c3 = await PolicyClient.open(cached.port);
      try {
        assert.equal(await c3.ask({ instance: i2, login: ann, recipient: 'b9@remote.example' }), '452 4.5.3 Too many recipients');
        assert.equal(await c2.ask({ instance: newInstance(), login: ann, recipient: 'c@remote.example' }), DUNNO);
      } finally {
        await c2.close();
        await c3.close();
      }
    });

    test('max send size: a declared SIZE over it is refused at RCPT, the real size at END-OF-MESSAGE', async () => {
      const c = await PolicyClient.open(cached.port);
      try {
        const tooBig = "552 5.3.4 Message too big: the sender's limit is 10000 bytes";
        assert.equal(await c.ask({ instance: newInstance(), login: ann, recipient: carl, size: 10_001 }), tooBig);
        assert.equal(await c.ask({ instance: newInstance(), login: ann, recipient: carl, size: 10_000 }), DUNNO);
        const i = newInstance();
        assert.equal(await c.ask({ instance: i, login: ann, recipient: carl }), DUNNO, 'no SIZE= given');
        assert.equal(await c.ask({ instance: i, state: 'END-OF-MESSAGE', login: ann, size: 12_345, recipientCount: 1 }), tooBig);
        const j = newInstance();
        assert.equal(await c.ask({ instance: j, login: ann, recipient: carl }), DUNNO);
        assert.equal(await c.ask({ instance: j, state: 'END-OF-MESSAGE', login: ann, size: 9_999, recipientCount: 1 }), DUNNO);
        // carl's limit is the plan's 35 MiB
        assert.equal(await c.ask({ instance: newInstance(), login: carl, recipient: 'x@remote.example', size: 12_345 }), DUNNO);
      } finally {
        await c.close();
      }
    });

    test('max receive size: a mailbox recipient is refused at RCPT when SIZE= says too big, the whole message at END-OF-MESSAGE', async () => {
      const c = await PolicyClient.open(cached.port);
      try {
        const tooBigForBob = `552 5.3.4 Message too big for recipient <${bob}>`;
        const i = newInstance();
        assert.equal(await c.ask({ instance: i, recipient: bob, size: 6_000 }), tooBigForBob);
        assert.equal(await c.ask({ instance: i, recipient: bob.toUpperCase(), size: 6_000 }), tooBigForBob, 'addresses are case-insensitive');
        assert.equal(await c.ask({ instance: i, recipient: carl, size: 6_000 }), DUNNO);
        // groups, unknown addresses on the domain and other domains have no receive limit here
        for (const r of [team, `ghost@${o.domainName}`, 'x@remote.example']) assert.equal(await c.ask({ instance: i, recipient: r, size: 50_000_000 }), DUNNO, r);
        assert.equal(await c.ask({ instance: i, state: 'END-OF-MESSAGE', size: 6_000, recipientCount: 4 }), DUNNO, 'bob was refused, the rest take it');
        assert.equal(await c.ask({ instance: newInstance(), recipient: bob, size: 5_000 }), DUNNO);
        // without SIZE=: bob is accepted at RCPT, and the real size refuses the message for everyone
        const j = newInstance();
        assert.equal(await c.ask({ instance: j, recipient: carl }), DUNNO);
        assert.equal(await c.ask({ instance: j, recipient: bob }), DUNNO);
        assert.equal(await c.ask({ instance: j, state: 'END-OF-MESSAGE', size: 6_000, recipientCount: 2 }), tooBigForBob);
        const k = newInstance();
        assert.equal(await c.ask({ instance: k, recipient: bob }), DUNNO);
        assert.equal(await c.ask({ instance: k, state: 'END-OF-MESSAGE', recipient: bob, size: 4_000, recipientCount: 1 }), DUNNO);
        // an authenticated sender to bob: the same receive limit
        assert.equal(await c.ask({ instance: newInstance(), login: carl, recipient: bob, size: 6_000 }), tooBigForBob);
      } finally {
        await c.close();
      }
    });

    test('a mail-enabled public folder: items above its maxItemSize are refused like a mailbox\'s receive limit', async () => {
      const f = await t.ok('POST', `${o.orgUrl}/public-folders`, { name: 'inbound', prohibitPostQuota: 1_000_000, maxItemSize: 3_000 }, o.orgAdmin);
      const address = `inbound@${o.domainName}`;
      await t.ok('PUT', `${o.orgUrl}/public-folders/${f.id}/mail`, { primaryAddress: address }, o.orgAdmin);
      const c = await PolicyClient.open(fresh.port);
      try {
        const tooBig = `552 5.3.4 Message too big for recipient <${address}>`;
        assert.equal(await c.ask({ instance: newInstance(), recipient: address, size: 3_001 }), tooBig);
        assert.equal(await c.ask({ instance: newInstance(), recipient: address, size: 3_000 }), DUNNO);
        const i = newInstance();
        assert.equal(await c.ask({ instance: i, recipient: address }), DUNNO);
        assert.equal(await c.ask({ instance: i, state: 'END-OF-MESSAGE', size: 5_000, recipientCount: 1 }), tooBig);
        // mail disabled: no longer a recipient Postfix delivers to, so no limit here either
        await t.ok('DELETE', `${o.orgUrl}/public-folders/${f.id}/mail`, undefined, o.orgAdmin);
        assert.equal(await c.ask({ instance: newInstance(), recipient: address, size: 50_000 }), DUNNO);
      } finally {
        await c.close();
      }
    });

    test('unauthenticated (MX) traffic carries no sender limits, whatever MAIL FROM claims', async () => {
      const c = await PolicyClient.open(cached.port);
      try {
        const i = newInstance();
        for (let n = 0; n < 8; n++) assert.equal(await c.ask({ instance: i, sender: ann, recipient: `r${n}@remote.example`, size: 1_000_000 }), DUNNO);
        assert.equal(await c.ask({ instance: i, state: 'END-OF-MESSAGE', sender: ann, size: 1_000_000, recipientCount: 8 }), DUNNO);
      } finally {
        await c.close();
      }
    });

    test('a login HMC does not know as a sending user is refused (554 5.7.1); other protocol states are DUNNO', async () => {
      const c = await PolicyClient.open(cached.port);
      try {
        const i = newInstance();
        assert.equal(await c.ask({ instance: i, login: `nobody@${o.domainName}`, recipient: carl }), '554 5.7.1 This login may not send mail');
        assert.equal(await c.ask({ instance: i, state: 'END-OF-MESSAGE', login: `nobody@${o.domainName}`, size: 10 }), '554 5.7.1 This login may not send mail');
        for (const state of ['CONNECT', 'EHLO', 'MAIL', 'DATA', 'VRFY']) assert.equal(await c.ask({ instance: newInstance(), state, login: `nobody@${o.domainName}` }), DUNNO, state);
        // Dovecot hands Postfix the login as stored; a different case is still the same user
        assert.equal(await c.ask({ instance: newInstance(), login: ann.toUpperCase(), recipient: carl }), DUNNO);
      } finally {
        await c.close();
      }
    });

    test('bad requests close that connection without a reply; the service keeps serving', async () => {
      const cases = [
        'request=smtpd_access_policy\nthis line has no equals sign\n\n',
        'request=something_else\nprotocol_state=RCPT\n\n',
        '\n\n',
        `request=smtpd_access_policy\nrecipient=${'x'.repeat(MAX_REQUEST_BYTES)}\n\n`,
        `request=smtpd_access_policy\nrecipient=${'x'.repeat(MAX_REQUEST_BYTES + 10)}`, // no end in sight
      ];
      for (const text of cases) {
        const c = await PolicyClient.open(cached.port);
        c.raw(text);
        await c.closed; // the service hung up
        assert.deepEqual(c.unasked, [], 'and sent nothing');
      }
      // the first request of a connection is answered even when garbage follows later
      const d = await PolicyClient.open(cached.port);
      assert.equal(await d.ask({ instance: newInstance(), recipient: carl }), DUNNO);
      d.raw('garbage\n\n');
      await d.closed;
      const e = await PolicyClient.open(cached.port);
      try {
        assert.equal(await e.ask({ instance: newInstance(), recipient: bob, size: 6_000 }), `552 5.3.4 Message too big for recipient <${bob}>`);
      } finally {
        await e.close();
      }
    });

    test('a check that cannot run answers 451 4.3.0 (never accept blindly, never refuse for good)', async () => {
      const temp = '451 4.3.0 Mailbox limits cannot be checked now, try again later';
      // a database without HMC's tables
      const empty = openStore({ sqlitePath: join(work.path, 'empty', 'empty.db') });
      const broken = await startPolicyService({ db: empty.db, host: '127.0.0.1', port: 0, usage: doveadmUsage(dataplaneDovecotConfigs(work.path)) });
      // a usage source whose Dovecot configuration is missing, and one that knows no data plane at all
      const noDovecot = await startPolicyService({ db: t.platform.store.db, host: '127.0.0.1', port: 0, usage: doveadmUsage(() => join(work.path, 'missing', 'dovecot.conf')) });
      const noPlane = await startPolicyService({ db: t.platform.store.db, host: '127.0.0.1', port: 0, usage: doveadmUsage(dataplaneDovecotConfigs(join(work.path, 'mail'))) });
      try {
        for (const [svc, a, want] of [
          [broken, { instance: newInstance(), recipient: carl }, temp],
          [broken, { instance: newInstance(), login: ann, recipient: carl }, temp],
          [noDovecot, { instance: newInstance(), login: ann, recipient: carl }, temp],
          [noPlane, { instance: newInstance(), login: ann, recipient: carl }, temp],
          [noDovecot, { instance: newInstance(), recipient: carl }, DUNNO], // no sender: usage not needed
        ] as const) {
          const c = await PolicyClient.open(svc.port);
          try {
            assert.equal(await c.ask(a), want, JSON.stringify(a));
          } finally {
            await c.close();
          }
        }
      } finally {
        await broken.close();
        await noDovecot.close();
        await noPlane.close();
        await empty.close();
      }
    });

    test('Postfix asks the service: the MX refuses a message too big for a mailbox, submission enforces the sender limits', async () => {
      const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
      const submit = (user: string) => nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true, auth: { user, pass: pw.get(user)! } });
      const annSubmit = submit(ann);
      try {
        const big = 'x'.repeat(6_000);
        await assert.rejects(mx.sendMail({ from: 'someone@remote.example', to: bob, subject: 'big', text: big }), (e: any) => {
          assert.equal(e.responseCode, 552, e.message);
          assert.match(e.response, new RegExp(`^552 5\\.3\\.4 .*Message too big for recipient <${bob}>`));
          return true;
        });
        assert.deepEqual((await mx.sendMail({ from: 'someone@remote.example', to: carl, subject: 'big', text: big })).accepted, [carl]);
        assert.deepEqual((await mx.sendMail({ from: 'someone@remote.example', to: bob, subject: 'small', text: 'hi\n' })).accepted, [bob]);

        // ann: three recipients per message, the fourth gets 452; 10,000 bytes at most
        const sent = await annSubmit.sendMail({ from: ann, to: [carl, bob, team, 'far@remote.example'], subject: 'four', text: 'hi\n' });
        assert.deepEqual(sent.accepted, [carl, bob, team]);
        assert.deepEqual(sent.rejected, ['far@remote.example']);
        assert.match(String((sent as any).rejectedErrors?.[0]?.response), /^452 4\.5\.3 /);
        await assert.rejects(annSubmit.sendMail({ from: ann, to: carl, subject: 'too big to send', text: 'y'.repeat(12_000) }), (e: any) => {
          assert.equal(e.responseCode, 552, e.message);
          assert.match(e.response, /^552 5\.3\.4 .*Message too big: the sender's limit is 10000 bytes/);
          return true;
        });
      } finally {
        mx.close();
        annSubmit.close();
      }
    });

    test('send quota: usage read back from Dovecot; under prohibitSendQuota passes, at or over it is refused with 554 5.2.2', async () => {
      const read = doveadmUsage(dataplaneDovecotConfigs(work.path));
      const server = { id: dp!.manifest.server.id, name: dp!.manifest.server.name };
      const before = await read(ann, server);
      assert.ok(before !== null && before < 20_000, `ann uses ${before} bytes`);
      assert.equal(await read(`nobody@${o.domainName}`, server), null, 'Dovecot does not know the login');
      const c = await PolicyClient.open(fresh.port);
      try {
        assert.equal(await c.ask({ instance: newInstance(), login: ann, recipient: carl }), DUNNO);
        // fill ann's mailbox past 20,000 bytes with real mail over the MX
        const mx = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true });
        try {
          await mx.sendMail({ from: 'someone@remote.example', to: ann, subject: 'fill', text: 'z'.repeat(24_000) });
        } finally {
          mx.close();
        }
        const used = await eventually('ann over 20,000 bytes in Dovecot', () => read(ann, server), (u) => u !== null && u >= 20_000);
        assert.ok(used! < 40_000, `a 24,000-byte message counts as ${used} bytes`);
        assert.equal(used! % 1024, 0, 'Dovecot reports KiB');
        assert.equal(await c.ask({ instance: newInstance(), login: ann, recipient: carl }), '554 5.2.2 Mailbox is over its send quota');
        assert.equal(await c.ask({ instance: newInstance(), login: carl, recipient: ann }), DUNNO, 'ann still receives; carl still sends');
        assert.equal(await c.ask({ instance: newInstance(), sender: ann, recipient: carl }), DUNNO, 'unauthenticated: no send quota');
      } finally {
        await c.close();
      }
      // through Postfix: ann's submission is refused at RCPT, once the platform's service (usage cached for
      // 5 s) has read the new usage
      const platformSvc = await PolicyClient.open(ports.policy);
      try {
        await eventually('the platform\'s service sees the new usage', () => platformSvc.ask({ instance: newInstance(), login: ann, recipient: carl }), (r) => r !== DUNNO);
      } finally {
        await platformSvc.close();
      }
      const annSubmit = nodemailer.createTransport({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true, auth: { user: ann, pass: pw.get(ann)! } });
      try {
        await assert.rejects(annSubmit.sendMail({ from: ann, to: carl, subject: 'over quota', text: 'hi\n' }), (e: any) => {
          assert.equal(e.responseCode, 554, e.message);
          assert.match(e.response, /^554 5\.2\.2 .*Mailbox is over its send quota/);
          return true;
        });
      } finally {
        annSubmit.close();
      }
    });
  });
}
