import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import pg from 'pg';
import { sql } from 'kysely';
import { createTestDatabase, DIALECTS, TEST_PG_URL } from '../src/store/testing.js';
import { migrate } from '../src/store/migrate.js';
import { MIGRATIONS } from '../src/migrations.js';
import { DomainCache, type CachedDomain } from '../src/transport/domain-cache.js';
import { readSnapshot } from '../src/transport/domain-cache-snapshot.js';
import { startTestPlatform, unreachableDatabase, type TestPlatform } from './support.js';
import { setupMailOrg } from './mail-support.js';

/**
 * The transport agent's domain cache (issue 6 item 1) against the real platform: changes made through the API
 * reach it by the change feed (LISTEN/NOTIFY, SQLite's change log), and it serves its snapshot while the database
 * cannot be read. Waits poll with a generous deadline; how fast changes arrive is the benchmark's business.
 */

async function eventually<T>(what: string, fn: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A logger whose warnings the test can read. */
function capturingLogger(): { log: Logger; lines: () => Array<{ level: number; msg: string; err?: { message?: string } }> } {
  const out: string[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void out.push(s) });
  return { log, lines: () => out.map((s) => JSON.parse(s)) };
}

for (const dialect of DIALECTS) {
  describe(`transport domain cache [${dialect}]`, () => {
    let t: TestPlatform;
    let cache: DomainCache;
    before(async () => {
      t = await startTestPlatform(dialect, { domainCache: true });
      cache = t.platform.domainCache!;
    });
    after(async () => { await t?.close(); });

    const entry = (name: string): CachedDomain | undefined => cache.lookup(name);

    test('an accepted domain is seen, an alias maps to its organization, type, removal, IDN and case', async () => {
      const a = await setupMailOrg(t, 'dc-a');
      const d = await eventually(`${a.domainName} in the cache`, () => entry(a.domainName));
      assert.equal(d.orgId, a.org.id);
      assert.equal(d.resellerId, a.reseller.id);
      assert.equal(d.domainId, a.domainId);
      assert.equal(d.live, true);
      assert.equal(d.orgState, 'active');
      assert.equal(d.type, 'authoritative');
      assert.equal(d.aliasOfName, null);
      assert.equal(cache.orgOfAddress(`Someone@${a.domainName.toUpperCase()}`)?.orgId, a.org.id);
      assert.equal(cache.lookup(`${a.domainName}.`)?.orgId, a.org.id, 'a trailing dot is the same domain');
      assert.equal(cache.orgOfAddress('someone@not-accepted.example'), undefined);
      assert.equal(cache.orgOfAddress(''), undefined, 'the null sender has no organization');

      // a domain alias maps to the alias's (same) organization and names its target
      const alias = await t.ok('POST', `${a.orgUrl}/domains`, { name: 'dc-a-alias.example' }, a.orgAdmin);
      await t.ok('PUT', `${a.orgUrl}/domains/${alias.id}/accepted`, { aliasOf: a.domainId }, a.orgAdmin);
      const al = await eventually('the alias', () => entry('dc-a-alias.example'));
      assert.equal(al.orgId, a.org.id);
      assert.equal(al.aliasOfId, a.domainId);
      assert.equal(al.aliasOfName, a.domainName);

      // IDN: stored as A-label, found by either form in any case
      const idn = await t.ok('POST', `${a.orgUrl}/domains`, { name: 'bücher-dca.example' }, a.orgAdmin);
      assert.match(idn.name, /^xn--/);
      await t.ok('PUT', `${a.orgUrl}/domains/${idn.id}/accepted`, { type: 'external_relay' }, a.orgAdmin);
      const i = await eventually('the IDN domain', () => entry(idn.name));
      assert.equal(i.type, 'external_relay');
      assert.equal(cache.lookup('BÜCHER-dca.example')?.domainId, idn.id);
      assert.equal(cache.orgOfAddress('Info@Bücher-DCA.example')?.orgId, a.org.id);

      // a change of type
      await t.ok('PUT', `${a.orgUrl}/domains/${a.domainId}/accepted`, { type: 'internal_relay' }, a.orgAdmin);
      await eventually('the type change', () => entry(a.domainName)?.type === 'internal_relay');

      // removed → gone, and nothing else of the organization with it
      await t.ok('DELETE', `${a.orgUrl}/domains/${alias.id}/accepted`, undefined, a.orgAdmin);
      await eventually('the alias gone', () => entry('dc-a-alias.example') === undefined);
      assert.equal(entry(a.domainName)?.orgId, a.org.id);
      assert.equal(entry(idn.name)?.orgId, a.org.id);
    });

    test('two organizations are told apart; suspending an organization or its reseller makes it not live', async () => {
      const a = await setupMailOrg(t, 'dc-s1');
      const b = await setupMailOrg(t, 'dc-s2');
      await eventually('both domains', () => entry(a.domainName) && entry(b.domainName));
      assert.notEqual(entry(a.domainName)!.orgId, entry(b.domainName)!.orgId);

      await t.ok('POST', `/api/v1/organizations/${a.org.id}/suspend`);
      await eventually('the organization not live', () => entry(a.domainName)?.live === false);
      assert.equal(entry(a.domainName)!.orgState, 'suspended');
      assert.equal(entry(a.domainName)!.orgId, a.org.id, 'a suspended organization still owns its domain');
      assert.equal(entry(b.domainName)!.live, true);
      await t.ok('POST', `/api/v1/organizations/${a.org.id}/resume`);
      await eventually('the organization live again', () => entry(a.domainName)?.live === true);

      // the reseller: every organization under it, none elsewhere
      await t.ok('POST', `/api/v1/resellers/${b.reseller.id}/suspend`);
      await eventually("the reseller's organization not live", () => entry(b.domainName)?.live === false);
      assert.equal(entry(b.domainName)!.orgState, 'active', 'the organization itself stays active');
      assert.equal(entry(a.domainName)!.live, true);
      await t.ok('POST', `/api/v1/resellers/${b.reseller.id}/resume`);
      await eventually("the reseller's organization live again", () => entry(b.domainName)?.live === true);
    });

    test('an organization moved to another reseller, then deleted and purged by its job, is followed', async () => {
      const a = await setupMailOrg(t, 'dc-mv');
      const other = await t.ok('POST', '/api/v1/resellers', { name: 'dc-mv-target' });
      await eventually('the domain', () => entry(a.domainName));
      await t.ok('POST', `/api/v1/organizations/${a.org.id}/move`, { resellerId: other.id });
      await eventually('the new reseller', () => entry(a.domainName)?.resellerId === other.id);
      // the purge job deletes the accepted domains and records no billing event: the triggers still tell
      await t.ok('DELETE', `/api/v1/organizations/${a.org.id}?force=true&wait=true`);
      await eventually('the purged domain gone', () => entry(a.domainName) === undefined);
    });

    test('metrics: size, age, refreshes, lookups in /metrics', async () => {
      const a = await setupMailOrg(t, 'dc-metrics');
      await eventually('the domain', () => entry(a.domainName));
      cache.lookup('nowhere-dc-metrics.example');
      const r = await t.call('GET', '/metrics', { token: '' });
      assert.equal(r.statusCode, 200);
      const text = r.body;
      const value = (re: RegExp) => {
        const m = re.exec(text);
        assert.ok(m, `${re} in /metrics`);
        return Number(m[1]);
      };
      assert.equal(value(/^hmc_domain_cache_domains (\S+)$/m), cache.size);
      assert.ok(value(/^hmc_domain_cache_age_seconds (\S+)$/m) >= 0);
      assert.ok(value(/^hmc_domain_cache_refreshes_total\{kind="full",outcome="ok"\} (\S+)$/m) >= 1);
      assert.ok(value(/^hmc_domain_cache_refreshes_total\{kind="incremental",outcome="ok"\} (\S+)$/m) >= 1);
      assert.ok(value(/^hmc_domain_cache_lookups_total\{result="hit"\} (\S+)$/m) >= 1);
      assert.ok(value(/^hmc_domain_cache_lookups_total\{result="miss"\} (\S+)$/m) >= 1);
      assert.equal(value(/^hmc_domain_cache_feed_connected (\S+)$/m), 1);
      assert.equal(value(/^hmc_domain_cache_serving_snapshot (\S+)$/m), 0);
    });

    describe('snapshot', () => {
      let dir: string;
      before(() => { dir = mkdtempSync(join(tmpdir(), 'hmc-domain-cache-')); });
      after(() => rmSync(dir, { recursive: true, force: true }));

      const unreachable = () => unreachableDatabase(dialect);

      test('a cache whose database cannot be read serves the snapshot of the last one that could', async () => {
        const a = await setupMailOrg(t, 'dc-snap');
        const path = join(dir, 'good.json');
        const writer = new DomainCache({ store: t.platform.store, databaseUrl: t.config.databaseUrl, snapshotPath: path });
        await writer.start();
        assert.equal(writer.status().source, 'database');
        assert.equal(writer.lookup(a.domainName)?.orgId, a.org.id);
        await writer.stop();
        assert.ok(existsSync(path), 'the snapshot was written');
        assert.equal(readSnapshot(path)!.domains.length, writer.size);

        const db = await unreachable();
        const { log, lines } = capturingLogger();
        const reader = new DomainCache({ store: db.store, databaseUrl: db.url, snapshotPath: path, log, startTimeoutMs: 5_000 });
        try {
          await reader.start();
          assert.equal(reader.status().source, 'snapshot');
          assert.equal(reader.size, writer.size);
          const d = reader.orgOfAddress(`x@${a.domainName}`);
          assert.equal(d?.orgId, a.org.id);
          assert.equal(d?.live, true);
          assert.ok(lines().some((l) => /serving the snapshot/.test(l.msg)), 'a warning says the snapshot is served');
        } finally {
          await reader.stop();
          await db.close();
        }
        // serving a snapshot never rewrites it
        assert.equal(readSnapshot(path)!.domains.length, writer.size);
      });

      test('a running cache whose database stops keeps serving what it holds, says why, and takes the database back', async () => {
        // its own platform: this test takes the database away
        const t2 = await startTestPlatform(dialect);
        const c = new DomainCache({ store: t2.platform.store, databaseUrl: t2.config.databaseUrl, snapshotPath: join(dir, 'stopping.json') });
        let down = false;
        // PostgreSQL: the server refuses the database and drops its sessions (the feed's LISTEN connection with them).
        // SQLite is a file inside the process: what "stopped" can mean there is that it cannot be read, here by
        // renaming the table the cache reads.
        const setDown = async (on: boolean) => {
          if (dialect === 'postgres') {
            const admin = new pg.Client({ connectionString: TEST_PG_URL });
            await admin.connect();
            try {
              const name = new URL(t2.tdb.url!).pathname.slice(1);
              await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS ${on ? 'false' : 'true'}`);
              if (on) await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
            } finally {
              await admin.end();
            }
          } else {
            await sql.raw(on ? 'ALTER TABLE accepted_domains RENAME TO accepted_domains_away' : 'ALTER TABLE accepted_domains_away RENAME TO accepted_domains').execute(t2.platform.store.db);
          }
          down = on;
        };
        try {
          const a = await setupMailOrg(t2, 'dc-stop');
          await c.start();
          assert.equal(c.status().source, 'database');
          const size = c.size;
          assert.ok(size > 0 && c.lookup(a.domainName)?.orgId === a.org.id);

          await setDown(true);
          await assert.rejects(c.refresh(), /domain cache refresh failed/);
          await assert.rejects(c.refresh(), /domain cache refresh failed/, 'still down');
          assert.equal(c.size, size, 'nothing forgotten');
          assert.equal(c.orgOfAddress(`someone@${a.domainName}`)?.orgId, a.org.id, 'lookups answer from memory');
          assert.ok(c.status().lastError, 'the status says why');
          if (dialect === 'postgres') await eventually('the feed noticing', () => !c.status().feedConnected);

          await setDown(false);
          // back: the feed reconnects and a full read follows by itself (an explicit refresh must not be needed)
          if (dialect === 'postgres') await eventually('the feed back', () => c.status().feedConnected, 60_000);
          else await c.refresh();
          await eventually('a good refresh', () => c.status().lastError === null, 60_000);
          assert.equal(c.size, size);
          assert.equal(c.lookup(a.domainName)?.orgId, a.org.id);
        } finally {
          if (down) await setDown(false).catch(() => {});
          await c.stop();
          await t2.close();
        }
      });

      test('a corrupt snapshot: an empty cache and a warning, never a crash', async () => {
        const path = join(dir, 'corrupt.json');
        writeFileSync(path, '{"format":"hmc-domain-cache","version":1,"refreshedAt":"2024-01-01T00:00:00Z","count":2,"domains":[["trunc');
        const db = await unreachable();
        const { log, lines } = capturingLogger();
        const c = new DomainCache({ store: db.store, databaseUrl: db.url, snapshotPath: path, log, startTimeoutMs: 5_000 });
        try {
          await c.start();
          assert.equal(c.size, 0);
          assert.equal(c.status().source, 'empty');
          assert.match(c.status().snapshotError ?? '', /not JSON/);
          assert.equal(c.lookup('anything.example'), undefined);
          assert.ok(lines().some((l) => l.level === 40 && /snapshot is unusable/.test(l.msg)), 'a warning names the unusable snapshot');
        } finally {
          await c.stop();
          await db.close();
        }
      });

      test('serving the snapshot, the cache takes the database as soon as it can be read', async () => {
        const path = join(dir, 'recover.json');
        const writer = new DomainCache({ store: t.platform.store, databaseUrl: t.config.databaseUrl, snapshotPath: path });
        await writer.start();
        await writer.stop();
        assert.ok(writer.size > 0);
        // a database without the platform's tables cannot be read, until it is migrated
        const tdb = await createTestDatabase(dialect);
        const store = tdb.open({ poolSize: 2 });
        const c = new DomainCache({ store, databaseUrl: tdb.url, snapshotPath: path, startTimeoutMs: 5_000 });
        try {
          await c.start();
          assert.equal(c.status().source, 'snapshot');
          assert.equal(c.size, writer.size);
          await migrate(store, MIGRATIONS);
          await eventually('the database read', () => c.status().source === 'database', 60_000);
          assert.equal(c.size, 0, 'the new database has no domains');
          await c.stop();
          assert.equal(readSnapshot(path)!.domains.length, 0, 'the snapshot now holds what the database holds');
        } finally {
          await c.stop();
          await store.close();
          await tdb.destroy();
        }
      });
    });
  });
}
