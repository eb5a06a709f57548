import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { DIALECTS } from '../src/store/testing.js';
import { renderFiles, type ServerRow } from '../src/dataplane/render.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';
import { registerMailServer } from './dataplane-support.js';

/**
 * The lookups Postfix and Dovecot run for every message and login (dataplane/render.ts, migration 0021):
 * on SQLite each starts at its key's unique index and never walks a table, whatever the platform holds; the
 * alias map's gate (SQLite: pipemap:{gate, aliases}; PostgreSQL: inside dp_pf_alias) answers exactly what
 * the whole alias query answers, for every kind of key; PostgreSQL's lookup functions keep a generic plan.
 * No servers: the rendered queries run against the database as Postfix would send them.
 */

/** Postfix's expansion of %s, %u and %d in an SQL map query (null: Postfix suppresses the query). */
function postfixQuery(query: string, key: string): string | null {
  const q = (v: string) => v.replace(/'/g, "''");
  const at = key.lastIndexOf('@');
  const local = at < 0 ? key : key.slice(0, at);
  const domain = at < 0 ? '' : key.slice(at + 1);
  if (query.includes('%u') && local === '') return null;
  if (query.includes('%d') && domain === '') return null;
  return query.replaceAll('%s', q(key)).replaceAll('%u', q(local)).replaceAll('%d', q(domain));
}

/** Dovecot's expansion of the variables its queries here use. */
function dovecotQuery(query: string, name: string, service = 'imap'): string {
  const q = (v: string) => v.replace(/'/g, "''");
  return query.replaceAll('%Lu', q(name.toLowerCase())).replaceAll('%s', q(service));
}

const setting = (text: string, name: string) => new RegExp(`^${name} = (.*)$`, 'm').exec(text)?.[1];

for (const dialect of DIALECTS) {
  describe(`data plane lookups run key-first (${dialect})`, () => {
    let t: TestPlatform;
    let a: MailOrg;
    let server: ServerRow;
    let files: Record<string, { text: string }>;
    /** The same data plane rendered with the transport agent (its transport map routes answering auto-replies to it). */
    let agentFiles: Record<string, { text: string }>;
    const ids = new Map<string, string>();
    /** Every kind of key the maps are asked: mailboxes, secondary addresses, groups, forwarders, alias-domain spellings, unknowns, domains. */
    const keys: string[] = [];

    before(async () => {
      t = await startTestPlatform(dialect);
      const srv = await registerMailServer(t, 'lk-1', '/var/tmp/hmc-lookups-mail', { lmtp: 24001, imap: 14301 });
      server = (await t.platform.store.db.selectFrom('mail_servers').select(['id', 'name', 'lmtp_endpoint', 'imap_endpoint', 'pop_endpoint', 'mail_root'])
        .where('id', '=', srv.id).executeTakeFirstOrThrow()) as ServerRow;
      a = await setupMailOrg(t, 'lka', { defaultStores: false });
      const A = a.domainName;
      for (const local of ['ann', 'bob', 'carl']) {
        const u = await t.ok('POST', `${a.orgUrl}/users?wait=true`, { login: `${local}@${A}`, password: 'Secret-pass-1' });
        const m = await t.ok('POST', `${a.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: u.id, planId: a.mailboxPlanId });
        ids.set(local, m.id);
      }
      await t.ok('POST', `${a.orgUrl}/mailboxes/${ids.get('ann')}/aliases?wait=true`, { address: `annie@${A}` });
      await t.ok('PATCH', `${a.orgUrl}/mailboxes/${ids.get('bob')}?wait=true`, { forwarding: { to: `carl@${A}`, mode: 'deliver_and_forward' } });
      const team = await t.ok('POST', `${a.orgUrl}/groups`, { name: 'team' });
      await t.ok('PUT', `${a.orgUrl}/groups/${team.id}/mail?wait=true`, { primaryAddress: `team@${A}` });
      const contact = await t.ok('POST', `${a.orgUrl}/contacts?wait=true`, { displayName: 'Partner', externalAddress: 'partner@outside.example' });
      for (const m of [ids.get('ann'), ids.get('carl'), contact.id]) await t.ok('POST', `${a.orgUrl}/groups/${team.id}/mail-members?wait=true`, { memberId: m });
      const all = await t.ok('POST', `${a.orgUrl}/groups`, { name: 'all' });
      await t.ok('PUT', `${a.orgUrl}/groups/${all.id}/mail?wait=true`, { primaryAddress: `all@${A}` });
      await t.ok('POST', `${a.orgUrl}/groups/${all.id}/mail-members?wait=true`, { memberId: team.id });
      const alias = await t.ok('POST', `${a.orgUrl}/domains`, { name: `alias-${A}` });
      await t.ok('PUT', `${a.orgUrl}/domains/${alias.id}/accepted`, { aliasOf: a.domainId });
      for (const local of ['ann', 'annie', 'bob', 'carl', 'team', 'all', 'nobody', "o'brien"]) keys.push(`${local}@${A}`, `${local}@alias-${A}`);
      keys.push(A, `alias-${A}`, `@${A}`, 'ann', 'partner@outside.example', 'someone@elsewhere.example', 'elsewhere.example');

      const database = dialect === 'sqlite' ? { sqlitePath: t.tdb.sqlitePath! } : { url: t.tdb.url! };
      files = renderFiles(server, { outDir: '/nonexistent/lookups', database, smtpPort: 2525, plaintextAuth: true, submissionPort: 2587 }).files;
      agentFiles = renderFiles(server, {
        outDir: '/nonexistent/lookups', database, smtpPort: 2525, plaintextAuth: true, submissionPort: 2587,
        transportAgent: { mxPort: 10025, submissionPort: 10026, deliverPort: 10027, reinjectPort: 10028, replyPort: 10029 },
      }).files;
    });
    after(() => t?.close());

    const mapQueries = () => [...Object.entries(files), ['postfix/etc/dp-transport.cf (agent)', agentFiles['postfix/etc/dp-transport.cf']!] as const]
      .filter(([p]) => p.startsWith('postfix/etc/') && p.includes('.cf') && !p.endsWith('/main.cf') && !p.endsWith('/master.cf'))
      .map(([p, f]) => ({ map: p.slice('postfix/etc/'.length), query: setting(f.text, 'query')! }));
    const run = async (q: string) => (await sql.raw<Record<string, unknown>>(q).execute(t.platform.store.db)).rows;
    const firstColumn = (rows: Record<string, unknown>[]) => rows.map((r) => String(Object.values(r)[0])).sort();

    test("Dovecot's auth cache keeps positive answers only, for the TTL asked (0 = no cache); Postfix skips the sanity lookups of relay_domains", () => {
      const conf = files['dovecot/dovecot.conf']!.text;
      assert.equal(setting(conf, 'auth_cache_size'), '16M');
      assert.equal(setting(conf, 'auth_cache_ttl'), '300 secs');
      assert.equal(setting(conf, 'auth_cache_negative_ttl'), '0', 'an unknown user is never cached: a user made a moment ago is found at once');
      const database = { sqlitePath: '/nonexistent/hmc.db' };
      const off = renderFiles(server, { outDir: '/nonexistent/lookups', database, smtpPort: 2525, plaintextAuth: true, authCacheTtlSeconds: 0 }).files;
      assert.equal(setting(off['dovecot/dovecot.conf']!.text, 'auth_cache_size'), '0');
      const minute = renderFiles(server, { outDir: '/nonexistent/lookups', database, smtpPort: 2525, plaintextAuth: true, authCacheTtlSeconds: 60 }).files;
      assert.equal(setting(minute['dovecot/dovecot.conf']!.text, 'auth_cache_ttl'), '60 secs');
      assert.throws(() => renderFiles(server, { outDir: '/nonexistent/lookups', database, smtpPort: 2525, plaintextAuth: true, authCacheTtlSeconds: -1 }), (e: any) => e.code === 'invalid_request');
      // trivial-rewrite would otherwise ask relay_domains (the domain and each parent) for every hosted recipient
      assert.equal(setting(files['postfix/etc/main.cf']!.text, 'helpful_warnings'), 'no');
    });

    test('the gated alias lookup answers exactly what the whole alias query answers, for every kind of key', async () => {
      const main = files['postfix/etc/main.cf']!.text;
      const aliasSetting = setting(main, 'virtual_alias_maps')!;
      const whole = async (key: string) => {
        const q = dialect === 'sqlite' ? postfixQuery(setting(files['postfix/etc/dp-virtual-aliases.cf']!.text, 'query')!, key) : null;
        // PostgreSQL: the answer of the 0012 view and the domain-alias rule, without the function's gate
        if (dialect === 'postgres') {
          const at = key.lastIndexOf('@');
          if (at <= 0 || at === key.length - 1) return [];
          const rows = await run(`SELECT destination AS v FROM dp_virtual_aliases WHERE address = '${key.replace(/'/g, "''")}'`);
          const local = key.slice(0, at).replace(/'/g, "''");
          const dom = key.slice(at + 1).replace(/'/g, "''");
          rows.push(...await run(`SELECT '${local}@' || t.name AS v FROM accepted_domains a JOIN accepted_domains t ON t.domain_id = a.alias_of JOIN dp_live_orgs o ON o.id = a.org_id `
            + `WHERE a.name = '${dom}' AND t.org_id = a.org_id AND (EXISTS (SELECT 1 FROM dp_mailbox_addresses x WHERE x.address = '${local}@' || t.name) `
            + `OR EXISTS (SELECT 1 FROM dp_virtual_aliases y WHERE y.address = '${local}@' || t.name))`));
          return firstColumn(rows);
        }
        return q === null ? [] : firstColumn(await run(q));
      };
      const gated = async (key: string) => {
        if (dialect === 'postgres') {
          const q = postfixQuery(setting(files['postfix/etc/dp-virtual-aliases.cf']!.text, 'query')!, key);
          return q === null ? [] : firstColumn(await run(q));
        }
        assert.match(aliasSetting, /^pipemap:\{sqlite:\S+dp-virtual-alias-gate\.cf, sqlite:\S+dp-virtual-aliases\.cf\}$/);
        // pipemap: the gate's answer is the alias query's key
        const g = postfixQuery(setting(files['postfix/etc/dp-virtual-alias-gate.cf']!.text, 'query')!, key);
        const through = g === null ? [] : firstColumn(await run(g));
        if (through.length === 0) return [];
        assert.deepEqual(through, [key], `the gate passes ${key} on unchanged`);
        const q = postfixQuery(setting(files['postfix/etc/dp-virtual-aliases.cf']!.text, 'query')!, key);
        return q === null ? [] : firstColumn(await run(q));
      };
      let answered = 0;
      for (const key of keys) {
        const expected = await whole(key);
        assert.deepEqual(await gated(key), expected, key);
        if (expected.length > 0) answered++;
      }
      // groups, forwarding and the alias domain answered (so the comparison saw every kind of answer)
      assert.ok(answered >= 8, `only ${answered} keys had an alias answer`);
      const A = a.domainName;
      assert.deepEqual(await gated(`team@${A}`), [`ann@${A}`, `carl@${A}`, 'partner@outside.example']);
      assert.deepEqual(await gated(`ann@alias-${A}`), [`ann@${A}`]);
      assert.deepEqual(await gated(`bob@${A}`), [`bob@${A}`, `carl@${A}`]);
      assert.deepEqual(await gated(`ann@${A}`), []);
      // a secondary address rewrites to its mailbox's primary address (one recipient per mailbox: cleanup's duplicate filter)
      assert.deepEqual(await gated(`annie@${A}`), [`ann@${A}`]);
      assert.deepEqual(await gated(`annie@alias-${A}`), [`annie@${A}`]);
    });

    test('with the agent, the transport map routes exactly the addresses of mailboxes whose auto-reply answers now to it', async () => {
      const A = a.domainName;
      const route = async (key: string) => {
        const q = postfixQuery(setting(agentFiles['postfix/etc/dp-transport.cf']!.text, 'query')!, key);
        return q === null ? [] : firstColumn(await run(q));
      };
      const plain = async (key: string) => {
        const q = postfixQuery(setting(files['postfix/etc/dp-transport.cf']!.text, 'query')!, key);
        return q === null ? [] : firstColumn(await run(q));
      };
      const reply = (local: string, body: Record<string, unknown>) => t.ok('PUT', `${a.orgUrl}/mailboxes/${ids.get(local)}/auto-reply`, { internalMessage: 'in', externalMessage: 'out', externalAudience: 'all', ...body });
      const now = Date.now();
      await reply('ann', { mode: 'on' });
      await reply('bob', { mode: 'scheduled', startsAt: new Date(now + 3600_000).toISOString(), endsAt: new Date(now + 7200_000).toISOString() });
      await reply('carl', { mode: 'scheduled', startsAt: new Date(now - 3600_000).toISOString(), endsAt: new Date(now + 3600_000).toISOString() });
      const via = ['hmcdeliver:[127.0.0.1]:10027'];
      for (const key of keys) {
        const want = [`ann@${A}`, `annie@${A}`, `carl@${A}`].includes(key) ? via : await plain(key);
        assert.deepEqual(await route(key), want, key);
      }
      assert.match((await plain(`bob@${A}`))[0] ?? '', /^lmtp:/, 'a window to come: straight to LMTP');
      await reply('ann', { mode: 'off' });
      assert.deepEqual(await route(`ann@${A}`), await plain(`ann@${A}`));
      // a disabled mailbox with an auto-reply on: no route at all, like without the agent
      await reply('ann', { mode: 'on' });
      await t.ok('PATCH', `${a.orgUrl}/mailboxes/${ids.get('ann')}?wait=true`, { enabled: false });
      assert.deepEqual(await route(`ann@${A}`), []);
      await t.ok('PATCH', `${a.orgUrl}/mailboxes/${ids.get('ann')}?wait=true`, { enabled: true });
      await reply('ann', { mode: 'off' });
      await reply('carl', { mode: 'off' });
      await reply('bob', { mode: 'off' });
    });

    test('address maps are keyed on %u@%d: Postfix never sends them a bare domain, @domain or bare local part', () => {
      for (const { map, query } of mapQueries()) {
        if (/domain/.test(map) && !/alias/.test(map)) continue; // the domain maps take the bare domain
        assert.ok(!query.includes("'%s'"), `${map}: ${query}`);
        for (const key of ['example.com', '@example.com', 'ann']) assert.equal(postfixQuery(query, key), null, `${map} with ${key}`);
      }
    });

    if (dialect === 'sqlite') {
      test('every lookup starts at its key\'s index: no table is walked, no index is entered by a column other than a key', async () => {
        const indexTable = new Map((await run("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")).map((r) => [String(r.name), String(r.tbl_name)]));
        const sqlConf = files['dovecot/sql.conf.ext']!.text;
        const queries: Array<{ what: string; q: string }> = [];
        const A = a.domainName;
        for (const { map, query } of mapQueries()) {
          const q = postfixQuery(query, /domain/.test(map) && !/alias|gate/.test(map) ? A : `ann@${A}`);
          if (q) queries.push({ what: map, q });
        }
        for (const name of ['password_query', 'user_query']) queries.push({ what: `dovecot ${name}`, q: dovecotQuery(setting(sqlConf, name)!, `ann@${A}`) });
        assert.ok(queries.length >= 10);
        // a key column: the unique key of a lookup (address, name, login) or a row reached by its id
        const keyed = /\b(address|name|login|id|group_id|domain_id|user_id|object_id|mailbox_id)=\?/;
        for (const { what, q } of queries) {
          const plan = (await run(`EXPLAIN QUERY PLAN ${q}`)).map((r) => String(r.detail));
          for (const line of plan) {
            const m = /^(SCAN|SEARCH) (\S+)(?: USING (?:COVERING )?INDEX (\S+)(?: \(([^)]*)\))?| USING INTEGER PRIMARY KEY \(([^)]*)\))?/.exec(line);
            if (!m) continue;
            const [, how, alias, index, constraint, rowid] = m;
            if (how === 'SCAN') {
              // a co-routine's rows (a UNION view, filtered inside) and a recursive CTE's queue (the public-folder
              // identity starts at the login) are read whole by design; a table never is
              if (plan.includes(`CO-ROUTINE ${alias}`) || plan.includes(`MATERIALIZE ${alias}`)) continue;
              assert.match(q, new RegExp(`\\b${alias}\\s*(\\([^)]*\\))?\\s+AS\\s*\\(`), `${what} walks ${alias}: ${line}\n${plan.join('\n')}`);
              continue;
            }
            if (rowid !== undefined) continue;
            assert.ok(index && indexTable.has(index), `${what}: ${line}`);
            assert.match(constraint ?? '', keyed, `${what} enters ${indexTable.get(index!)} by ${line}\n${plan.join('\n')}`);
          }
        }
      });
    } else {
      test('every lookup function keeps one generic plan', async () => {
        const rows = await run("SELECT p.proname AS name, array_to_string(p.proconfig, ',') AS config FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace AND substr(p.proname, 1, 6) IN ('dp_pf_', 'dp_dv_')");
        assert.ok(rows.length >= 10);
        for (const r of rows) assert.match(String(r.config), /plan_cache_mode=force_generic_plan/, String(r.name));
      });

      test('Dovecot\'s userdb function answers what dp_userdb answers, for logins, addresses and unknown names', async () => {
        const lit = (v: string) => `'${v.replace(/'/g, "''")}'`;
        let found = 0;
        for (const name of keys) {
          for (const srv of [server.id, 'srv_elsewhere']) {
            const fn = await run(`SELECT home, quota_bytes::text AS q, quota_warning FROM dp_dv_userdb(${lit(name)}, ${lit(srv)})`);
            const view = await run(`SELECT home, quota_bytes::text AS q, quota_warning FROM dp_userdb WHERE name = ${lit(name)} AND server_id = ${lit(srv)}`);
            assert.deepEqual(fn, view, `${name} on ${srv}`);
            found += fn.length;
          }
        }
        assert.ok(found >= 4, `only ${found} names resolved`);
      });
    }
  });
}
