import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { main } from '../src/cli/main.js';
import type { FakeIo } from '../src/cli/fake-io.js';
import { inProcessIo } from './cli-support.js';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { ensureStores, GiB, setupMailOrg, TiB, type MailOrg } from './mail-support.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

/**
 * `hmc check` and `--repair`: drift is injected behind the engine's back (direct SQL on the platform's
 * database), the check must report each case with its code and figures, and the repair (a batch request of
 * audited procedures) must bring every total back to the sum of its parts. The check is platform-wide, so
 * each test starts by asserting the platform is clean and leaves it clean.
 */
for (const dialect of DIALECTS) {
  describe(`hmc check [${dialect}]`, () => {
    let t: TestPlatform;
    let seq = 0;
    before(async () => {
      t = await startTestPlatform(dialect);
      await ensureStores(t);
    });
    after(async () => { await t?.close(); });

    const db = () => t.platform.store.db;
    const check = () => t.ok('GET', '/api/v1/check');

    async function mailOrg(boxes: number): Promise<MailOrg & { boxes: string[] }> {
      const o = await setupMailOrg(t, `chk${++seq}`);
      const ids: string[] = [];
      for (let i = 0; i < boxes; i++) {
        ids.push((await t.ok('POST', `${o.orgUrl}/mailboxes`, { kind: 'shared', primaryAddress: `box${i}@${o.domainName}`, planId: o.mailboxPlanId }, o.orgAdmin)).id);
      }
      return { ...o, boxes: ids };
    }

    const pieceOf = async (orgId: string, purpose = 'mailbox') =>
      (await db().selectFrom('store_allocations as a').innerJoin('mailstores as s', 's.id', 'a.store_id').select(['a.store_id', 'a.bytes', 'a.charged_bytes', 'a.mailbox_count'])
        .where('a.org_id', '=', orgId).where('s.purpose', '=', purpose).execute());

    /** Every stored total equals the sum of its parts, read straight from the tables. */
    async function assertSums(orgIds: string[]) {
      for (const orgId of orgIds) {
        const sub = await db().selectFrom('org_subscriptions').selectAll().where('org_id', '=', orgId).executeTakeFirstOrThrow();
        const boxes = await db().selectFrom('mailboxes').select(['charged_bytes', 'store_id']).where('org_id', '=', orgId).where('state', '=', 'active').execute();
        assert.equal(Number(sub.mailbox_count), boxes.length);
        assert.equal(Number(sub.mailbox_bytes), boxes.reduce((s, b) => s + Number(b.charged_bytes), 0));
        const pieces = await pieceOf(orgId);
        assert.equal(pieces.reduce((s, p) => s + Number(p.bytes), 0), 100 * GiB, 'the pieces add up to the allocation');
        for (const p of pieces) {
          const on = boxes.filter((b) => b.store_id === p.store_id);
          assert.equal(Number(p.mailbox_count), on.length);
          assert.equal(Number(p.charged_bytes), on.reduce((s, b) => s + Number(b.charged_bytes), 0));
        }
      }
      const stores = await db().selectFrom('mailstores').selectAll().execute();
      for (const st of stores) {
        const pieces = await db().selectFrom('store_allocations').select(['bytes', 'mailbox_count']).where('store_id', '=', st.id).execute();
        assert.equal(Number(st.allocated_bytes), pieces.reduce((s, p) => s + Number(p.bytes), 0), `store ${st.name} allocated`);
        assert.equal(Number(st.mailbox_count), pieces.reduce((s, p) => s + Number(p.mailbox_count), 0), `store ${st.name} count`);
      }
    }

    /** Runs the repair request and waits for its batch; every item must succeed with nothing left unresolved. */
    async function repair(): Promise<any> {
      const started = await t.ok('POST', '/api/v1/check/repair');
      assert.ok(started.repairRequestId, JSON.stringify(started));
      const done = await t.settle(started.repairRequestId);
      assert.equal(done.state, 'succeeded', JSON.stringify(done));
      const items = (await t.ok('GET', `/api/v1/requests/${started.repairRequestId}/items?limit=1000`)).items;
      return { started, done, items };
    }

    test('reports each injected drift with its code and figures; --repair clears it through the engine', async () => {
      assert.deepEqual(await check(), { ok: true, findings: [] }, 'a platform used only through the API has no drift');
      const { serverId, publicFolder } = await ensureStores(t);
      const a = await mailOrg(3);
      const b = await mailOrg(2);
      const c = await mailOrg(2);
      const d = await mailOrg(2);
      await t.ok('DELETE', `${a.orgUrl}/mailboxes/${a.boxes[2]}`, undefined, a.orgAdmin);
      const folder = await t.ok('POST', `${b.orgUrl}/public-folders`, { name: 'projects', issueWarningQuota: 1024, prohibitPostQuota: 2048 }, b.orgAdmin);
      const dedicated = await t.ok('POST', `/api/v1/mail-servers/${serverId}/stores`, { name: `dedicated-${seq}`, sharing: 'dedicated', capacityBytes: TiB });
      assert.deepEqual(await check(), { ok: true, findings: [] });

      // ---- drift, behind the engine's back ----
      const [pa] = await pieceOf(a.org.id);
      const [pb] = await pieceOf(b.org.id);
      const [pbf] = await pieceOf(b.org.id, 'public_folder');
      const [pc] = await pieceOf(c.org.id);
      const [pd] = await pieceOf(d.org.id);
      assert.ok(pa && pb && pbf && pc && pd);
      assert.equal(pbf.store_id, (await db().selectFrom('public_folders').select('store_id').where('id', '=', folder.id).executeTakeFirstOrThrow()).store_id);
      assert.ok(publicFolder.includes(pbf.store_id));
      // A: two counters bumped, a deleted mailbox still charged
      await db().updateTable('org_subscriptions').set({ mailbox_bytes: sql`mailbox_bytes + 5`, contact_count: 2 }).where('org_id', '=', a.org.id).execute();
      await db().updateTable('mailboxes').set({ charged_bytes: 5 }).where('id', '=', a.boxes[2]!).execute();
      // B: its mailbox piece undercharged, its public-folder piece counting a folder too many
      await db().updateTable('store_allocations').set({ charged_bytes: GiB }).where('org_id', '=', b.org.id).where('store_id', '=', pb.store_id).execute();
      await db().updateTable('store_allocations').set({ mailbox_count: 2 }).where('org_id', '=', b.org.id).where('store_id', '=', pbf.store_id).execute();
      const pfStore = await db().selectFrom('mailstores').select('mailbox_count').where('id', '=', pbf.store_id).executeTakeFirstOrThrow();
      // C: a mailbox charged twice its plan
      await db().updateTable('mailboxes').set({ charged_bytes: 2 * GiB }).where('id', '=', c.boxes[0]!).execute();
      // D: a mailbox on no store, and a piece 1 GiB larger than the allocation (its store's total with it)
      await db().updateTable('mailboxes').set({ store_id: null }).where('id', '=', d.boxes[0]!).execute();
      await db().updateTable('store_allocations').set({ bytes: sql`bytes + ${GiB}` }).where('org_id', '=', d.org.id).where('store_id', '=', pd.store_id).execute();
      await db().updateTable('mailstores').set({ allocated_bytes: sql`allocated_bytes + ${GiB}` }).where('id', '=', pd.store_id).execute();
      // a store's total one byte off (read after D's change, which may be on the same store); a dedicated store naming an owner that holds nothing on it
      const storeA = await db().selectFrom('mailstores').select('allocated_bytes').where('id', '=', pa.store_id).executeTakeFirstOrThrow();
      await db().updateTable('mailstores').set({ allocated_bytes: sql`allocated_bytes + 1` }).where('id', '=', pa.store_id).execute();
      await db().updateTable('mailstores').set({ owner_org_id: a.org.id }).where('id', '=', dedicated.id).execute();

      const report = await check();
      assert.equal(report.ok, false);
      const got = report.findings.map((f: any) => [f.code, f.orgId, f.storeId, f.objectId, f.field, f.stored, f.expected, f.repairable]);
      const want = [
        ['org_counter_drift', a.org.id, null, null, 'mailbox_bytes', 2 * GiB + 5, 2 * GiB, true],
        ['org_counter_drift', a.org.id, null, null, 'contact_count', 2, 0, true],
        ['mailbox_charge_drift', a.org.id, pa.store_id, a.boxes[2], 'charged_bytes', 5, 0, true],
        ['piece_drift', b.org.id, pb.store_id, null, 'charged_bytes', GiB, 2 * GiB, true],
        ['piece_drift', b.org.id, pbf.store_id, null, 'mailbox_count', 2, 1, true],
        ['store_drift', null, pbf.store_id, null, 'mailbox_count', Number(pfStore.mailbox_count), Number(pfStore.mailbox_count) + 1, true],
        ['org_counter_drift', c.org.id, null, null, 'mailbox_bytes', 2 * GiB, 3 * GiB, true],
        ['piece_drift', c.org.id, pc.store_id, null, 'charged_bytes', 2 * GiB, 3 * GiB, true],
        ['mailbox_charge_drift', c.org.id, pc.store_id, c.boxes[0], 'charged_bytes', 2 * GiB, GiB, true],
        ['allocation_drift', d.org.id, null, null, 'mailbox_bytes', 101 * GiB, 100 * GiB, true],
        ['piece_drift', d.org.id, pd.store_id, null, 'charged_bytes', 2 * GiB, GiB, true],
        ['piece_drift', d.org.id, pd.store_id, null, 'mailbox_count', 2, 1, true],
        ['mailboxes_unplaced', d.org.id, null, null, 'store_id', 1, 0, true],
        ['store_drift', null, pa.store_id, null, 'allocated_bytes', Number(storeA.allocated_bytes) + 1, Number(storeA.allocated_bytes), true],
        ['store_owner_drift', a.org.id, dedicated.id, null, 'owner_org_id', a.org.id, null, true],
      ];
      const order = (x: any[]) => [...x].map((r) => JSON.stringify(r)).sort();
      assert.deepEqual(order(got), order(want), JSON.stringify(report.findings, null, 1));
      for (const f of report.findings) assert.ok(typeof f.message === 'string' && f.message.length > 0);

      // ---- repair ----
      const { started, items } = await repair();
      assert.deepEqual([started.findings, started.repairable], [want.length, want.length]);
      const orgItems = items.filter((i: any) => i.input.orgId).map((i: any) => i.input.orgId);
      const storeItems = items.filter((i: any) => i.input.storeId).map((i: any) => i.input.storeId);
      assert.deepEqual(orgItems, [a.org.id, b.org.id, c.org.id, d.org.id].sort());
      assert.ok(items.findIndex((i: any) => i.input.storeId) === orgItems.length, 'stores come after every organization');
      for (const s of [pa.store_id, pbf.store_id, dedicated.id]) assert.ok(storeItems.includes(s), `store ${s} is repaired`);
      for (const i of items) {
        assert.equal(i.state, 'succeeded', JSON.stringify(i));
        assert.deepEqual(i.result.unresolved, [], JSON.stringify(i.result));
      }
      assert.deepEqual(await check(), { ok: true, findings: [] });

      // the figures are the sums of their parts again, and each injected value is back
      await assertSums([a.org.id, b.org.id, c.org.id, d.org.id]);
      const sub = (o: MailOrg) => t.ok('GET', `${o.orgUrl}/subscription`);
      assert.equal((await sub(a)).usage.mailboxBytes, 2 * GiB);
      assert.equal((await sub(c)).usage.mailboxBytes, 2 * GiB);
      assert.equal(Number((await db().selectFrom('org_subscriptions').select('contact_count').where('org_id', '=', a.org.id).executeTakeFirstOrThrow()).contact_count), 0);
      const boxC = await t.ok('GET', `${c.orgUrl}/mailboxes/${c.boxes[0]}`);
      assert.equal(boxC.chargedBytes, GiB);
      const placedD = await db().selectFrom('mailboxes').select('store_id').where('id', '=', d.boxes[0]!).executeTakeFirstOrThrow();
      assert.ok(placedD.store_id, 'the unplaced mailbox is on a store again');
      assert.equal((await t.ok('GET', `/api/v1/mailstores/${dedicated.id}`)).ownerOrgId, null);
      assert.equal((await t.ok('GET', `/api/v1/mailstores/${pbf.store_id}`)).mailboxCount, 1);
      // audited: each item's before and after
      const audit = (await t.ok('GET', `/api/v1/audit?request=${started.repairRequestId}&limit=1000`)).items;
      const orgAudit = audit.find((x: any) => x.procedure === 'resources.repair_step' && x.target?.id === c.org.id);
      assert.ok(orgAudit, JSON.stringify(audit.map((x: any) => [x.procedure, x.target])));
      assert.deepEqual(orgAudit.before.mailboxes, [{ id: c.boxes[0], chargedBytes: 2 * GiB, storeId: pc.store_id }]);
      assert.deepEqual(orgAudit.after.mailboxes, [{ id: c.boxes[0], chargedBytes: GiB, storeId: pc.store_id }]);
      const dAudit = audit.find((x: any) => x.procedure === 'resources.repair_step' && x.target?.id === d.org.id);
      assert.deepEqual([dAudit.before.pieces[0].bytes, dAudit.after.pieces[0].bytes], [101 * GiB, 100 * GiB]);
      // a second repair has nothing to do
      assert.equal((await t.ok('POST', '/api/v1/check/repair')).repairRequestId, null);
    });

    test('public folders: a charge off its quota and a folder on no store are reported and repaired', async () => {
      assert.deepEqual(await check(), { ok: true, findings: [] });
      const o = await setupMailOrg(t, `chkpf${++seq}`);
      const f1 = await t.ok('POST', `${o.orgUrl}/public-folders`, { name: 'one', issueWarningQuota: 1024, prohibitPostQuota: 4096 }, o.orgAdmin);
      const f2 = await t.ok('POST', `${o.orgUrl}/public-folders`, { name: 'two', issueWarningQuota: 1024, prohibitPostQuota: 2048 }, o.orgAdmin);
      const [p] = await pieceOf(o.org.id, 'public_folder');
      await db().updateTable('public_folders').set({ charged_bytes: 1000 }).where('id', '=', f1.id).execute();
      await db().updateTable('public_folders').set({ store_id: null }).where('id', '=', f2.id).execute();
      const got = (await check()).findings.map((f: any) => [f.code, f.objectId, f.field, f.stored, f.expected]);
      const want = [
        ['org_counter_drift', null, 'public_folder_bytes', 6144, 3048],
        ['piece_drift', null, 'charged_bytes', 6144, 1000],
        ['piece_drift', null, 'mailbox_count', 2, 1],
        ['folders_unplaced', null, 'store_id', 1, 0],
        ['folder_charge_drift', f1.id, 'charged_bytes', 1000, 4096],
      ];
      assert.deepEqual(got.map((x: any) => JSON.stringify(x)).sort(), want.map((x) => JSON.stringify(x)).sort());
      const { items } = await repair();
      for (const i of items) assert.deepEqual([i.state, i.result.unresolved], ['succeeded', []], JSON.stringify(i));
      assert.deepEqual(await check(), { ok: true, findings: [] });
      const sub = await t.ok('GET', `${o.orgUrl}/subscription`);
      assert.deepEqual([sub.usage.publicFolders, sub.usage.publicFolderBytes], [2, 6144]);
      const [after] = await pieceOf(o.org.id, 'public_folder');
      assert.deepEqual([Number(after!.charged_bytes), Number(after!.mailbox_count), after!.store_id], [6144, 2, p!.store_id]);
    });

    test('a mailbox with a quota override is charged the override; drift from it is reported against it', async () => {
      assert.deepEqual(await check(), { ok: true, findings: [] });
      const o = await setupMailOrg(t, `chkov${++seq}`);
      const body = { kind: 'shared', primaryAddress: `big@${o.domainName}`, planId: o.mailboxPlanId, overrides: { prohibitSendReceiveQuota: 1.25 * GiB } };
      const m = await t.ok('POST', `${o.orgUrl}/mailboxes`, body, o.orgAdmin);
      assert.equal(m.chargedBytes, 1.25 * GiB);
      assert.deepEqual(await check(), { ok: true, findings: [] }, 'the override is what the check expects');
      await db().updateTable('mailboxes').set({ charged_bytes: GiB }).where('id', '=', m.id).execute();
      const drift = (await check()).findings.filter((f: any) => f.code === 'mailbox_charge_drift');
      assert.deepEqual(drift.map((f: any) => [f.objectId, f.stored, f.expected]), [[m.id, GiB, 1.25 * GiB]]);
      await repair();
      assert.deepEqual(await check(), { ok: true, findings: [] });
      assert.equal((await t.ok('GET', `${o.orgUrl}/mailboxes/${m.id}`)).chargedBytes, 1.25 * GiB);
    });

    test('only provider roles see the check; only a provider admin repairs', async () => {
      const o = await setupMailOrg(t, `chkauth${++seq}`);
      for (const token of [o.orgAdmin, o.resellerAdmin]) {
        for (const [method, url] of [['GET', '/api/v1/check'], ['POST', '/api/v1/check/repair']] as const) {
          const r = await t.call(method, url, { token });
          assert.equal(r.statusCode, 404, r.body);
          assert.equal(r.json().code, 'not_found');
        }
      }
      const helpdesk = (await t.ok('POST', '/api/v1/tokens', { name: 'provider helpdesk', role: 'provider_helpdesk' })).token;
      assert.equal((await t.call('GET', '/api/v1/check', { token: helpdesk })).statusCode, 200);
      const r = await t.call('POST', '/api/v1/check/repair', { token: helpdesk });
      assert.equal(r.statusCode, 403, r.body);
    });

    const io = (): FakeIo => inProcessIo(t, t.adminToken);
    async function hmc(argv: string[]): Promise<{ code: number; out: string; err: string }> {
      const x = io();
      const code = await main(argv, x);
      return { code, out: x.output(), err: x.errors() };
    }

    test('hmc check: exit 0 when clean, 1 with drift; --repair fixes it; what cannot be repaired stays reported', async () => {
      let r = await hmc(['check']);
      assert.deepEqual([r.code, r.out], [0, 'no drift found\n'], r.err);
      const o = await mailOrg(2);
      // one mailbox charged above its plan, one below
      await db().updateTable('mailboxes').set({ charged_bytes: 3 * GiB }).where('id', '=', o.boxes[1]!).execute();
      await db().updateTable('mailboxes').set({ charged_bytes: 1 }).where('id', '=', o.boxes[0]!).execute();

      r = await hmc(['check', '--json']);
      assert.equal(r.code, 1, r.err);
      const report = JSON.parse(r.out);
      assert.equal(report.ok, false);
      assert.ok(report.findings.some((f: any) => f.code === 'mailbox_charge_drift' && f.objectId === o.boxes[1] && f.stored === 3 * GiB && f.expected === GiB));
      assert.ok(report.findings.some((f: any) => f.code === 'mailbox_charge_drift' && f.objectId === o.boxes[0] && f.stored === 1 && f.expected === GiB));
      assert.ok(report.findings.some((f: any) => f.code === 'org_counter_drift' && f.field === 'mailbox_bytes' && f.stored === 2 * GiB && f.expected === 3 * GiB + 1));
      r = await hmc(['check']);
      assert.equal(r.code, 1);
      assert.match(r.out, /^CODE +ORG ID +STORE ID +OBJECT ID +FIELD +STORED +EXPECTED +REPAIRABLE +MESSAGE\n/);
      assert.match(r.out, new RegExp(`mailbox_charge_drift +${o.org.id} .*${o.boxes[1]} +charged_bytes +${3 * GiB} +${GiB} +yes`));
      assert.match(r.out, /4 finding\(s\), 4 repairable \(hmc check --repair\)\n$/);

      r = await hmc(['check', '--repair']);
      assert.equal(r.code, 0, r.err + r.out);
      assert.match(r.out, /^repaired: 4 finding\(s\) before, \d+ organization\(s\) and store\(s\) repaired \(request req_\w+\)\nno drift found\n$/);
      assert.match(r.err, /repair: request req_\w+/);
      for (const id of o.boxes) assert.equal((await t.ok('GET', `${o.orgUrl}/mailboxes/${id}`)).chargedBytes, GiB);
      assert.equal((await t.ok('GET', `${o.orgUrl}/subscription`)).usage.mailboxBytes, 2 * GiB);

      // a store holding more mailboxes than its maximum: reported, not repairable by a recount
      const [p] = await pieceOf(o.org.id);
      await db().updateTable('mailstores').set({ max_mailboxes: 0 }).where('id', '=', p!.store_id).execute();
      try {
        r = await hmc(['check', '--repair', '--json']);
        assert.equal(r.code, 1, r.err);
        const out = JSON.parse(r.out);
        assert.equal(out.repair.repairRequestId, null);
        assert.deepEqual(out.findings.map((f: any) => [f.code, f.storeId, f.repairable]), [['store_over_max_mailboxes', p!.store_id, false]]);
      } finally {
        await db().updateTable('mailstores').set({ max_mailboxes: null }).where('id', '=', p!.store_id).execute();
      }
      r = await hmc(['check']);
      assert.equal(r.code, 0, r.out);
    });

    test('hmc check is refused to a tenant like an unknown route', async () => {
      const o = await setupMailOrg(t, `chkcli${++seq}`);
      const x = inProcessIo(t, o.orgAdmin);
      assert.equal(await main(['check'], x), 1);
      assert.match(x.errors(), /not found|not_found/i);
    });
  });
}
