import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { SYSTEM } from '../src/core/tenancy.js';
import { DAY_MS, resolveAddress } from '../src/mail/addresses.js';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { GiB, setupMailOrg, type MailOrg } from './mail-support.js';

/** Mailboxes and contacts through the HTTP API: addresses, limits, quotas, forwarding, delete/restore/purge, plan re-apply. */

function assertProblem(r: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(r.statusCode, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  assert.equal(r.json().code, code, r.body);
}

/** Poll `probe` until it returns a value (not undefined), or fail at the deadline. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const MiB = 1024 ** 2;

for (const dialect of DIALECTS) {
  describe(`mailboxes [${dialect}]`, () => {
    let t: TestPlatform;
    /** Addresses quarantined for 1 s and mailboxes kept for 3 s, for what happens after those periods. */
    let short: TestPlatform;
    before(async () => {
      t = await startTestPlatform(dialect);
      short = await startTestPlatform(dialect, { config: { addressQuarantineDays: 1000 / DAY_MS, mailboxRetentionDays: 3000 / DAY_MS } });
    });
    after(async () => {
      await t?.close();
      await short?.close();
    });

    const usage = async (p: TestPlatform, o: MailOrg) => (await p.ok('GET', `${o.orgUrl}/subscription`)).usage;
    const create = (p: TestPlatform, o: MailOrg, body: Record<string, unknown>) =>
      p.call('POST', `${o.orgUrl}/mailboxes`, { token: o.orgAdmin, body: { planId: o.mailboxPlanId, ...body } });
    async function shared(p: TestPlatform, o: MailOrg, local: string, extra: Record<string, unknown> = {}): Promise<any> {
      const r = await create(p, o, { kind: 'shared', primaryAddress: `${local}@${o.domainName}`, ...extra });
      assert.equal(r.statusCode, 201, r.body);
      return r.json();
    }
    async function user(p: TestPlatform, o: MailOrg, local: string): Promise<any> {
      const r = await p.call('POST', `${o.orgUrl}/users?wait=true`, { token: o.orgAdmin, body: { login: `${local}@${o.domainName}`, displayName: `User ${local}` } });
      assert.equal(r.statusCode, 201, r.body);
      return r.json();
    }
    const resolve = (p: TestPlatform, address: string) => resolveAddress(p.platform.store.db, address);
    /** Counters equal the sums of their parts. */
    async function assertCounters(p: TestPlatform, o: MailOrg): Promise<void> {
      const db = p.platform.store.db;
      const rows = await db.selectFrom('mailboxes').select(['state', 'charged_bytes']).where('org_id', '=', o.org.id).execute();
      const active = rows.filter((r) => r.state === 'active');
      const u = await usage(p, o);
      assert.equal(u.mailboxes, active.length);
      assert.equal(u.mailboxBytes, rows.reduce((s, r) => s + Number(r.charged_bytes), 0));
    }

    test('user, shared, room and equipment mailboxes: views, one per user, lists, a user sees its own', async () => {
      const o = await setupMailOrg(t, 'mb-kinds', { features: { protocols: ['imap', 'webmail', 'mobile'] } });
      const alice = await user(t, o, 'alice');
      const r = await create(t, o, { userId: alice.id, aliases: [`Alice.Smith@${o.domainName.toUpperCase()}`] });
      assert.equal(r.statusCode, 201, r.body);
      assert.equal(r.headers['hmc-request-state'], 'succeeded');
      const a = r.json();
      assert.match(a.id, /^mbx_/);
      assert.equal(a.kind, 'user');
      assert.equal(a.userId, alice.id);
      assert.equal(a.primaryAddress, `alice@${o.domainName}`);
      assert.deepEqual(a.aliases, [`alice.smith@${o.domainName}`]);
      assert.equal(a.displayName, 'User alice');
      assert.equal(a.state, 'active');
      assert.equal(a.enabled, true);
      assert.equal(a.hiddenFromAddressBook, false);
      assert.equal(a.chargedBytes, GiB);
      assert.deepEqual(a.quotas, { issueWarningQuota: 900 * MiB, prohibitSendQuota: 950 * MiB, prohibitSendReceiveQuota: GiB, maxSendSize: a.quotas.maxSendSize, maxReceiveSize: a.quotas.maxReceiveSize, recipientLimit: a.quotas.recipientLimit, maxMessagesPerHour: 500, maxRecipientsPerDay: 2_000 });
      // the mailbox plan's protocols, narrowed to what the organization plan allows
      assert.deepEqual([...a.protocols].sort(), ['imap', 'webmail']);
      assert.equal((await resolve(t, `alice.smith@${o.domainName}`))?.recipientId, a.id);
      assertProblem(await create(t, o, { userId: alice.id, primaryAddress: `other@${o.domainName}` }), 409, 'user_has_mailbox');
      assertProblem(await create(t, o, { kind: 'user' }), 400, 'invalid_request');
      assertProblem(await create(t, o, { kind: 'room' }), 400, 'invalid_request');
      assertProblem(await create(t, o, { kind: 'shared', userId: alice.id, primaryAddress: `s@${o.domainName}` }), 400, 'invalid_request');
      assertProblem(await create(t, o, { kind: 'shared', primaryAddress: 'not-an-address' }), 400, 'invalid_address');

      const room = await shared(t, o, 'room-1', { kind: 'room', hiddenFromAddressBook: true, displayName: 'Room One' });
      assert.equal(room.kind, 'room');
      assert.equal(room.hiddenFromAddressBook, true);
      const gear = await shared(t, o, 'beamer', { kind: 'equipment' });
      const info = await shared(t, o, 'info');
      assert.equal(info.displayName, 'info');

      const all = await t.ok('GET', `${o.orgUrl}/mailboxes`, undefined, o.orgAdmin);
      assert.deepEqual(all.items.map((m: any) => m.id), [a.id, room.id, gear.id, info.id]);
      assert.deepEqual((await t.ok('GET', `${o.orgUrl}/mailboxes?kind=room`, undefined, o.orgAdmin)).items.map((m: any) => m.id), [room.id]);
      assert.deepEqual((await t.ok('GET', `${o.orgUrl}/mailboxes?q=be`, undefined, o.orgAdmin)).items.map((m: any) => m.id), [gear.id]);
      assert.deepEqual((await t.ok('GET', `${o.orgUrl}/mailboxes?userId=${alice.id}`, undefined, o.orgAdmin)).items.map((m: any) => m.id), [a.id]);
      const p1 = await t.ok('GET', `${o.orgUrl}/mailboxes?limit=3`, undefined, o.orgAdmin);
      const p2 = await t.ok('GET', `${o.orgUrl}/mailboxes?limit=3&cursor=${encodeURIComponent(p1.next)}`, undefined, o.orgAdmin);
      assert.deepEqual([...p1.items, ...p2.items].map((m: any) => m.id), all.items.map((m: any) => m.id));
      assert.equal(p2.next, null);

      // a user sees its own mailbox only, and changes nothing
      const token = (await t.ok('POST', '/api/v1/tokens', { name: 'alice', role: 'user', orgId: o.org.id, userId: alice.id })).token;
      assert.deepEqual((await t.ok('GET', `${o.orgUrl}/mailboxes`, undefined, token)).items.map((m: any) => m.id), [a.id]);
      assert.equal((await t.ok('GET', `${o.orgUrl}/mailboxes/${a.id}`, undefined, token)).id, a.id);
      assertProblem(await t.call('GET', `${o.orgUrl}/mailboxes/${info.id}`, { token }), 404, 'not_found');
      assertProblem(await t.call('PATCH', `${o.orgUrl}/mailboxes/${a.id}`, { token, body: { displayName: 'Me' } }), 403, 'forbidden');
      // usage is read from the mail server's Dovecot: this platform manages no data plane (dataplane-mail.test.ts has one)
      assertProblem(await t.call('GET', `${o.orgUrl}/mailboxes/${a.id}/usage`, { token }), 409, 'dataplane_not_managed');
      assertProblem(await t.call('GET', `${o.orgUrl}/mailboxes/${info.id}/usage`, { token }), 404, 'not_found');
      await assertCounters(t, o);
      assert.equal((await usage(t, o)).mailboxes, 4);
    });

    test('seed bug (d): an address deleted and re-created for another user never resolves to the first recipient', async () => {
      const o = await setupMailOrg(short, 'mb-seed-d');
      const [u1, u2] = [await user(short, o, 'first'), await user(short, o, 'second')];
      const address = `team@${o.domainName}`;
      const first = (await create(short, o, { userId: u1.id, primaryAddress: address })).json();
      assert.equal((await resolve(short, address))?.recipientId, first.id);
      const del = await short.call('DELETE', `${o.orgUrl}/mailboxes/${first.id}`, { token: o.orgAdmin });
      assert.equal(del.statusCode, 200, del.body);
      assert.equal(del.json().state, 'deleted');
      assert.equal(await resolve(short, address), null);
      // quarantined for another recipient at first; once the quarantine ends, the second user gets it
      const second = await until<any>('the quarantine to end', async () => {
        const r = await create(short, o, { userId: u2.id, primaryAddress: address });
        if (r.statusCode === 201) return r.json();
        assertProblem(r, 409, 'address_quarantined');
        return undefined;
      });
      assert.notEqual(second.id, first.id);
      assert.equal((await resolve(short, address))?.recipientId, second.id);
      // the first mailbox cannot take it back: restore is refused (or, past retention, the mailbox is gone)
      const restore = await short.call('POST', `${o.orgUrl}/mailboxes/${first.id}/restore`, { token: o.orgAdmin });
      if (restore.statusCode === 404) assertProblem(restore, 404, 'not_found');
      else assertProblem(restore, 409, 'address_taken');
      assert.equal((await resolve(short, address))?.recipientId, second.id);
      const rows = await short.platform.store.db.selectFrom('addresses').selectAll().where('address', '=', address).execute();
      assert.deepEqual(rows.map((r) => r.recipient_id), [second.id]);
      // and after the purge the first one is gone for good, the address still the second's
      await until('the purge', async () => ((await short.call('GET', `${o.orgUrl}/mailboxes/${first.id}`, { token: o.orgAdmin })).statusCode === 404 ? true : undefined));
      const req = await short.settle(del.headers['hmc-request-id'] as string, 30_000);
      assert.equal(req.state, 'succeeded');
      assert.equal((await resolve(short, address))?.recipientId, second.id);
      await assertCounters(short, o);
    });

    test('delete disables and quarantines at once; quarantine blocks other recipients and organizations; restore takes everything back', async () => {
      const a = await setupMailOrg(t, 'mb-rest-a');
      const b = await setupMailOrg(t, 'mb-rest-b');
      const moving = await t.ok('POST', `${a.orgUrl}/domains`, { name: 'mb-moving.example' }, a.orgAdmin);
      await t.ok('PUT', `${a.orgUrl}/domains/${moving.id}/accepted`, {}, a.orgAdmin);
      const box = (await create(t, a, { kind: 'shared', primaryAddress: 'desk@mb-moving.example', aliases: ['help@mb-moving.example', `desk@${a.domainName}`] })).json();
      const other = await shared(t, a, 'other');
      assertProblem(await t.call('POST', `${a.orgUrl}/mailboxes/${other.id}/aliases`, { token: a.orgAdmin, body: { address: `desk@${a.domainName}` } }), 409, 'address_taken');

      const del = await t.call('DELETE', `${a.orgUrl}/mailboxes/${box.id}`, { token: a.orgAdmin });
      assert.equal(del.statusCode, 200, del.body);
      const gone = del.json();
      assert.equal(gone.state, 'deleted');
      assert.equal(gone.chargedBytes, 0);
      assert.ok(Date.parse(gone.purgeAfter) - Date.parse(gone.deletedAt) >= 29 * DAY_MS);
      assert.equal(await resolve(t, 'desk@mb-moving.example'), null);
      assert.deepEqual(await usage(t, a).then((u) => [u.mailboxes, u.mailboxBytes]), [1, GiB]);
      const listed = await t.ok('GET', `${a.orgUrl}/mailboxes?state=deleted`, undefined, a.orgAdmin);
      assert.deepEqual(listed.items.map((m: any) => m.id), [box.id]);
      // a deleted mailbox changes only by restore
      assertProblem(await t.call('PATCH', `${a.orgUrl}/mailboxes/${box.id}`, { token: a.orgAdmin, body: { displayName: 'x' } }), 409, 'state_conflict');
      assertProblem(await t.call('DELETE', `${a.orgUrl}/mailboxes/${box.id}`, { token: a.orgAdmin }), 409, 'state_conflict');

      // another recipient of the same organization cannot take a quarantined address
      assertProblem(await t.call('POST', `${a.orgUrl}/mailboxes/${other.id}/aliases`, { token: a.orgAdmin, body: { address: `desk@${a.domainName}` } }), 409, 'address_quarantined');
      // nor another organization, even once the domain has moved to it (the seed's "mail to unintended recipients")
      await t.ok('DELETE', `${a.orgUrl}/domains/${moving.id}/accepted`, undefined, a.orgAdmin);
      await t.ok('DELETE', `${a.orgUrl}/domains/${moving.id}`, undefined, a.orgAdmin);
      const movedB = await t.ok('POST', `${b.orgUrl}/domains`, { name: 'mb-moving.example' }, b.orgAdmin);
      await t.ok('PUT', `${b.orgUrl}/domains/${movedB.id}/accepted`, {}, b.orgAdmin);
      assertProblem(await create(t, b, { kind: 'shared', primaryAddress: 'desk@mb-moving.example' }), 409, 'address_quarantined');
      assertProblem(await create(t, b, { kind: 'shared', primaryAddress: 'help@mb-moving.example' }), 409, 'address_quarantined');
      await t.ok('DELETE', `${b.orgUrl}/domains/${movedB.id}/accepted`, undefined, b.orgAdmin);
      await t.ok('DELETE', `${b.orgUrl}/domains/${movedB.id}`, undefined, b.orgAdmin);
      const back = await t.ok('POST', `${a.orgUrl}/domains`, { name: 'mb-moving.example' }, a.orgAdmin);
      await t.ok('PUT', `${a.orgUrl}/domains/${back.id}/accepted`, {}, a.orgAdmin);

      const restored = await t.ok('POST', `${a.orgUrl}/mailboxes/${box.id}/restore`, undefined, a.orgAdmin);
      assert.equal(restored.state, 'active');
      assert.equal(restored.purgeAfter, null);
      assert.equal(restored.primaryAddress, 'desk@mb-moving.example');
      assert.deepEqual(restored.aliases, [`desk@${a.domainName}`, 'help@mb-moving.example'].sort());
      assert.equal(restored.chargedBytes, GiB);
      assert.equal((await resolve(t, 'help@mb-moving.example'))?.recipientId, box.id);
      assertProblem(await t.call('POST', `${a.orgUrl}/mailboxes/${box.id}/restore`, { token: a.orgAdmin }), 409, 'state_conflict');
      await assertCounters(t, a);
      assert.equal((await usage(t, a)).mailboxes, 2);
    });

    test('purge after retention; a restored mailbox is not purged', async () => {
      const o = await setupMailOrg(short, 'mb-purge');
      const doomed = await shared(short, o, 'doomed');
      const kept = await shared(short, o, 'kept');
      // the doomed mailbox has data on its store (the files provider's directory), which the purge removes
      const placedAt = (await short.platform.store.db.selectFrom('mailboxes').select('store_id').where('id', '=', doomed.id).executeTakeFirstOrThrow()).store_id!;
      const data = join(short.config.mailstoreFilesRoot, placedAt, o.org.id, doomed.id);
      mkdirSync(join(data, 'Maildir', 'cur'), { recursive: true });
      writeFileSync(join(data, 'Maildir', 'cur', '1.msg'), 'Subject: x\n\nx\n');
      const d1 = await short.call('DELETE', `${o.orgUrl}/mailboxes/${doomed.id}`, { token: o.orgAdmin });
      const d2 = await short.call('DELETE', `${o.orgUrl}/mailboxes/${kept.id}`, { token: o.orgAdmin });
      // the delete is done at once (200); the purge is a request of its own, scheduled for purgeAfter
      assert.equal(d1.statusCode, 200, d1.body);
      assert.equal(d2.statusCode, 200, d2.body);
      const restored = await short.ok('POST', `${o.orgUrl}/mailboxes/${kept.id}/restore`, undefined, o.orgAdmin);
      assert.equal(restored.state, 'active');
      // both deletions finish when their purge time comes: one purged, the other finding its mailbox restored
      for (const r of [d1, d2]) assert.equal((await short.settle(r.json().purgeRequestId, 30_000)).state, 'succeeded');
      assertProblem(await short.call('GET', `${o.orgUrl}/mailboxes/${doomed.id}`, { token: o.orgAdmin }), 404, 'not_found');
      assert.ok(!existsSync(data), 'the purge removed its data');
      assert.equal((await short.ok('GET', `${o.orgUrl}/mailboxes/${kept.id}`, undefined, o.orgAdmin)).state, 'active');
      assertProblem(await short.call('POST', `${o.orgUrl}/mailboxes/${doomed.id}/restore`, { token: o.orgAdmin }), 404, 'not_found');
      await assertCounters(short, o);
    });

    test('50 parallel requests add the same alias to 50 mailboxes: exactly one succeeds', async () => {
      const o = await setupMailOrg(t, 'mb-race');
      const boxes = await Promise.all(Array.from({ length: 50 }, (_, i) => shared(t, o, `racer${i}`)));
      const address = `contested@${o.domainName}`;
      const out = await Promise.all(boxes.map((b) => t.call('POST', `${o.orgUrl}/mailboxes/${b.id}/aliases`, { token: o.orgAdmin, body: { address } })));
      const won = out.filter((r) => r.statusCode === 201);
      assert.equal(won.length, 1, out.map((r) => r.statusCode).join(','));
      for (const r of out.filter((x) => x.statusCode !== 201)) assertProblem(r, 409, 'address_taken');
      assert.equal((await resolve(t, address))?.recipientId, won[0]!.json().id);
      const holders = await t.platform.store.db.selectFrom('addresses').select('recipient_id').where('address', '=', address).execute();
      assert.equal(holders.length, 1);
    });

    test('an organization with room for 10 mailboxes receives 30 parallel creates: exactly 10', async () => {
      const o = await setupMailOrg(t, 'mb-limit', { maxMailboxes: 10 });
      const out = await Promise.all(Array.from({ length: 30 }, (_, i) => create(t, o, { kind: 'shared', primaryAddress: `box${i}@${o.domainName}` })));
      assert.equal(out.filter((r) => r.statusCode === 201).length, 10, out.map((r) => r.statusCode).join(','));
      for (const r of out.filter((x) => x.statusCode !== 201)) assertProblem(r, 422, 'PLAN_LIMIT');
      const u = await usage(t, o);
      assert.equal(u.mailboxes, 10);
      assert.equal(u.mailboxBytes, 10 * GiB);
      await assertCounters(t, o);
      const count = await t.platform.store.db.selectFrom('addresses').select((eb) => eb.fn.countAll().as('n')).where('org_id', '=', o.org.id).executeTakeFirstOrThrow();
      assert.equal(Number(count.n), 10); // refused creates claimed nothing
    });

    test('quota order, storage allocation, dynamic growth, maxMailboxBytes', async () => {
      const o = await setupMailOrg(t, 'mb-quota', { storageBytes: 2.5 * GiB, maxMailboxBytes: 2 * GiB });
      assertProblem(await create(t, o, { kind: 'shared', primaryAddress: `q@${o.domainName}`, overrides: { issueWarningQuota: GiB } }), 400, 'QUOTA_ORDER');
      assertProblem(await create(t, o, { kind: 'shared', primaryAddress: `q@${o.domainName}`, overrides: { prohibitSendReceiveQuota: 3 * GiB, prohibitSendQuota: 3 * GiB } }), 422, 'PLAN_LIMIT');
      const m1 = await shared(t, o, 'm1');
      const m2 = await shared(t, o, 'm2', { overrides: { prohibitSendReceiveQuota: 1.25 * GiB } });
      assert.equal(m2.chargedBytes, 1.25 * GiB);
      assert.equal((await usage(t, o)).mailboxBytes, 2.25 * GiB);
      assertProblem(await create(t, o, { kind: 'shared', primaryAddress: `m3@${o.domainName}` }), 422, 'STORAGE_LIMIT');
      assertProblem(await t.call('PATCH', `${o.orgUrl}/mailboxes/${m1.id}`, { token: o.orgAdmin, body: { overrides: { prohibitSendReceiveQuota: 1.5 * GiB } } }), 422, 'STORAGE_LIMIT');
      assertProblem(await t.call('PATCH', `${o.orgUrl}/mailboxes/${m1.id}`, { token: o.orgAdmin, body: { overrides: { prohibitSendReceiveQuota: 100 } } }), 400, 'QUOTA_ORDER');
      // smaller quotas free storage: exactly the difference
      const shrunk = await t.ok('PATCH', `${o.orgUrl}/mailboxes/${m2.id}`, { overrides: null }, o.orgAdmin);
      assert.equal(shrunk.chargedBytes, GiB);
      assert.deepEqual(shrunk.overrides, {});
      assert.equal((await usage(t, o)).mailboxBytes, 2 * GiB);
      await assertCounters(t, o);

      const dyn = await setupMailOrg(t, 'mb-dyn', { storageBytes: GiB, dynamicStorage: true });
      for (const n of ['d1', 'd2', 'd3']) await shared(t, dyn, n);
      const sub = await t.ok('GET', `${dyn.orgUrl}/subscription`);
      assert.equal(sub.allocation.mailboxBytes, 3 * GiB);
      assert.equal(sub.usage.mailboxBytes, 3 * GiB);
    });

    test('forwarding: internal always, external only when the plan allows; plan changes keep the rule', async () => {
      const o = await setupMailOrg(t, 'mb-fwd');
      const open = await t.ok('POST', '/api/v1/plans/mailbox', { name: 'mb-fwd-open', issueWarningQuota: MiB, prohibitSendQuota: MiB, prohibitSendReceiveQuota: GiB, externalForwarding: true }, o.resellerAdmin);
      await t.ok('PUT', `${o.orgUrl}/available-plans/${open.id}`, undefined, o.resellerAdmin);
      const target = await shared(t, o, 'target');
      assertProblem(await create(t, o, { kind: 'shared', primaryAddress: `f@${o.domainName}`, forwarding: { to: 'someone@elsewhere.example', mode: 'forward_only' } }), 403, 'external_forwarding_not_allowed');
      const f = await shared(t, o, 'f', { forwarding: { to: `Target@${o.domainName}`, mode: 'deliver_and_forward' } });
      assert.deepEqual(f.forwarding, { to: `target@${o.domainName}`, mode: 'deliver_and_forward' });
      assert.equal(f.externalForwarding, false);
      assertProblem(await t.call('PATCH', `${o.orgUrl}/mailboxes/${f.id}`, { token: o.orgAdmin, body: { forwarding: { to: `f@${o.domainName}`, mode: 'forward_only' } } }), 400, 'invalid_request');
      assertProblem(await t.call('PATCH', `${o.orgUrl}/mailboxes/${f.id}`, { token: o.orgAdmin, body: { forwarding: { to: 'x@elsewhere.example', mode: 'forward_only' } } }), 403, 'external_forwarding_not_allowed');
      // an address on a domain alias of the organization is stored in its target's spelling (the data plane
      // resolves forwarding by the stored address), so the alias spelling of the mailbox's own address is a loop
      const aliasDomain = await t.ok('POST', `${o.orgUrl}/domains`, { name: `alias-${o.domainName}` }, o.orgAdmin);
      await t.ok('PUT', `${o.orgUrl}/domains/${aliasDomain.id}/accepted`, { aliasOf: o.domainId }, o.orgAdmin);
      const viaAlias = await t.ok('PATCH', `${o.orgUrl}/mailboxes/${f.id}`, { forwarding: { to: `Target@alias-${o.domainName}`, mode: 'forward_only' } }, o.orgAdmin);
      assert.deepEqual(viaAlias.forwarding, { to: `target@${o.domainName}`, mode: 'forward_only' });
      assertProblem(await t.call('PATCH', `${o.orgUrl}/mailboxes/${f.id}`, { token: o.orgAdmin, body: { forwarding: { to: `f@alias-${o.domainName}`, mode: 'forward_only' } } }), 400, 'invalid_request');
      await t.ok('PATCH', `${o.orgUrl}/mailboxes/${f.id}`, { forwarding: { to: `target@${o.domainName}`, mode: 'deliver_and_forward' } }, o.orgAdmin);
      // another tenant on the platform is outside the organization too (the data plane would not forward there)
      const other = await setupMailOrg(t, `fwd-other-${Date.now().toString(36)}`);
      assertProblem(await t.call('PATCH', `${o.orgUrl}/mailboxes/${f.id}`, { token: o.orgAdmin, body: { forwarding: { to: `x@${other.domainName}`, mode: 'forward_only' } } }), 403, 'external_forwarding_not_allowed');

      const moved = await t.ok('PUT', `${o.orgUrl}/mailboxes/${f.id}/plan`, { planId: open.id }, o.orgAdmin);
      assert.equal(moved.planId, open.id);
      assert.equal(moved.externalForwarding, true);
      assert.equal(moved.quotas.issueWarningQuota, MiB);
      const ext = await t.ok('PATCH', `${o.orgUrl}/mailboxes/${f.id}`, { forwarding: { to: 'x@elsewhere.example', mode: 'forward_only' } }, o.orgAdmin);
      assert.deepEqual(ext.forwarding, { to: 'x@elsewhere.example', mode: 'forward_only' });
      assertProblem(await t.call('PUT', `${o.orgUrl}/mailboxes/${f.id}/plan`, { token: o.orgAdmin, body: { planId: o.mailboxPlanId } }), 403, 'external_forwarding_not_allowed');
      const stopped = await t.ok('PATCH', `${o.orgUrl}/mailboxes/${f.id}`, { forwarding: null }, o.orgAdmin);
      assert.equal(stopped.forwarding, null);
      await t.ok('PUT', `${o.orgUrl}/mailboxes/${f.id}/plan`, { planId: o.mailboxPlanId }, o.orgAdmin);
      // a plan that is not available to the organization
      const foreign = await t.ok('POST', '/api/v1/plans/mailbox', { name: 'mb-fwd-unoffered', issueWarningQuota: MiB, prohibitSendQuota: MiB, prohibitSendReceiveQuota: GiB }, o.resellerAdmin);
      assertProblem(await t.call('PUT', `${o.orgUrl}/mailboxes/${target.id}/plan`, { token: o.orgAdmin, body: { planId: foreign.id } }), 400, 'plan_not_available');
      const events = await t.ok('GET', `/api/v1/events?org=${o.org.id}&event=plan_changed&limit=1000`);
      assert.ok(events.items.some((e: any) => e.objectId === f.id && e.event === 'plan_changed'), JSON.stringify(events.items.map((e: any) => e.event)));
    });

    test('aliases and primary rename: the old address stays an alias, or is quarantined', async () => {
      const o = await setupMailOrg(t, 'mb-rename');
      const m = await shared(t, o, 'jane.doe');
      const other = await shared(t, o, 'other');
      const withAlias = await t.ok('POST', `${o.orgUrl}/mailboxes/${m.id}/aliases`, { address: `jd@${o.domainName}` }, o.orgAdmin);
      assert.deepEqual(withAlias.aliases, [`jd@${o.domainName}`]);
      const renamed = await t.ok('POST', `${o.orgUrl}/mailboxes/${m.id}/primary-address`, { address: `jane.roe@${o.domainName}` }, o.orgAdmin);
      assert.equal(renamed.primaryAddress, `jane.roe@${o.domainName}`);
      assert.deepEqual(renamed.aliases, [`jane.doe@${o.domainName}`, `jd@${o.domainName}`]);
      assert.equal((await resolve(t, `jane.doe@${o.domainName}`))?.recipientId, m.id);
      // promote an alias; drop the old primary into quarantine
      const again = await t.ok('POST', `${o.orgUrl}/mailboxes/${m.id}/primary-address`, { address: `jd@${o.domainName}`, keepOldAsAlias: false }, o.orgAdmin);
      assert.equal(again.primaryAddress, `jd@${o.domainName}`);
      assert.deepEqual(again.aliases, [`jane.doe@${o.domainName}`]);
      assert.equal(await resolve(t, `jane.roe@${o.domainName}`), null);
      assertProblem(await t.call('POST', `${o.orgUrl}/mailboxes/${other.id}/aliases`, { token: o.orgAdmin, body: { address: `jane.roe@${o.domainName}` } }), 409, 'address_quarantined');
      // the former holder may take it back
      await t.ok('POST', `${o.orgUrl}/mailboxes/${m.id}/aliases`, { address: `jane.roe@${o.domainName}` }, o.orgAdmin);
      const removed = await t.ok('DELETE', `${o.orgUrl}/mailboxes/${m.id}/aliases?address=${encodeURIComponent(`jane.doe@${o.domainName}`)}`, undefined, o.orgAdmin);
      assert.deepEqual(removed.aliases, [`jane.roe@${o.domainName}`]);
      assertProblem(await t.call('DELETE', `${o.orgUrl}/mailboxes/${m.id}/aliases?address=${encodeURIComponent(`jd@${o.domainName}`)}`, { token: o.orgAdmin }), 400, 'invalid_request');
      assertProblem(await t.call('DELETE', `${o.orgUrl}/mailboxes/${m.id}/aliases?address=${encodeURIComponent(`nope@${o.domainName}`)}`, { token: o.orgAdmin }), 404, 'not_found');
      assertProblem(await t.call('POST', `${o.orgUrl}/mailboxes/${m.id}/primary-address`, { token: o.orgAdmin, body: { address: `other@${o.domainName}` } }), 409, 'address_taken');
    });

    test('editing a mailbox plan re-applies it per mailbox; a mailbox that no longer fits stays as it was; items are idempotent', async () => {
      const o = await setupMailOrg(t, 'mb-reapply', { storageBytes: 3 * GiB });
      const [m1, m2] = [await shared(t, o, 'r1'), await shared(t, o, 'r2')];
      const edited = await t.ok('PATCH', `/api/v1/plans/mailbox/${o.mailboxPlanId}`, { prohibitSendReceiveQuota: 2 * GiB }, o.resellerAdmin);
      assert.equal(edited.version, 2);
      assert.equal(typeof edited.reapplyRequestId, 'string');
      const req = await t.settle(edited.reapplyRequestId, 30_000);
      assert.equal(req.state, 'succeeded');
      assert.deepEqual(req.items, { total: 2, done: 2, failed: 1 });
      const items = (await t.ok('GET', `/api/v1/requests/${edited.reapplyRequestId}/items`)).items;
      assert.equal(items[0].state, 'succeeded');
      assert.equal(items[1].state, 'failed');
      assert.equal(items[1].error.code, 'STORAGE_LIMIT');
      const [a1, a2] = [await t.ok('GET', `${o.orgUrl}/mailboxes/${m1.id}`), await t.ok('GET', `${o.orgUrl}/mailboxes/${m2.id}`)];
      assert.deepEqual([a1.planVersion, a1.chargedBytes, a1.quotas.prohibitSendReceiveQuota], [2, 2 * GiB, 2 * GiB]);
      assert.deepEqual([a2.planVersion, a2.chargedBytes, a2.quotas.prohibitSendReceiveQuota], [1, GiB, GiB]);
      await assertCounters(t, o);
      // the same item again (a batch resumed after a crash) changes nothing
      const again = await t.platform.engine.submit<any>(SYSTEM, 'mail.reapply_mailbox_plan', { orgId: o.org.id, mailboxId: m1.id, planId: o.mailboxPlanId, version: 2 });
      assert.equal(again.result.skipped, true);
      assert.equal((await usage(t, o)).mailboxBytes, 3 * GiB);
    });

    test('contacts: external addresses, unique per organization, counted', async () => {
      const o = await setupMailOrg(t, 'mb-contacts', { maxContacts: 2 });
      const url = `${o.orgUrl}/contacts`;
      const r = await t.call('POST', url, { token: o.orgAdmin, body: { displayName: 'Supplier', externalAddress: 'Sales@Supplier.example' } });
      assert.equal(r.statusCode, 201, r.body);
      const c = r.json();
      assert.match(c.id, /^con_/);
      assert.equal(c.externalAddress, 'sales@supplier.example');
      assert.equal(c.hiddenFromAddressBook, false);
      assertProblem(await t.call('POST', url, { token: o.orgAdmin, body: { displayName: 'Again', externalAddress: 'sales@supplier.example' } }), 409, 'address_taken');
      assertProblem(await t.call('POST', url, { token: o.orgAdmin, body: { displayName: 'Own', externalAddress: `x@${o.domainName}` } }), 400, 'invalid_address');
      const c2 = await t.ok('POST', url, { displayName: 'Lawyer', externalAddress: 'law@firm.example', hiddenFromAddressBook: true }, o.orgAdmin);
      assertProblem(await t.call('POST', url, { token: o.orgAdmin, body: { displayName: 'Third', externalAddress: 'third@firm.example' } }), 422, 'PLAN_LIMIT');
      assert.equal((await usage(t, o)).contacts, 2);
      assert.deepEqual((await t.ok('GET', `${url}?q=law`, undefined, o.orgAdmin)).items.map((x: any) => x.id), [c2.id]);
      const patched = await t.ok('PATCH', `${url}/${c.id}`, { displayName: 'Supplier Ltd', externalAddress: 'orders@supplier.example' }, o.orgAdmin);
      assert.equal(patched.externalAddress, 'orders@supplier.example');
      assertProblem(await t.call('PATCH', `${url}/${c.id}`, { token: o.orgAdmin, body: { externalAddress: 'law@firm.example' } }), 409, 'address_taken');
      // another organization may have the same contact
      const other = await setupMailOrg(t, 'mb-contacts-2');
      await t.ok('POST', `${other.orgUrl}/contacts`, { displayName: 'Lawyer', externalAddress: 'law@firm.example' }, other.orgAdmin);
      assertProblem(await t.call('GET', `${url}/${c.id}`, { token: other.orgAdmin }), 404, 'not_found');
      await t.ok('DELETE', `${url}/${c.id}`, undefined, o.orgAdmin);
      assert.equal((await usage(t, o)).contacts, 1);
      assert.deepEqual((await t.ok('GET', url, undefined, o.orgAdmin)).items.map((x: any) => x.id), [c2.id]);
    });
  });
}
