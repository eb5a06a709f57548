import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { configFromEnv, type Config } from '../src/core/config.js';
import { createPlatform, initPlatform, type Platform, type PlatformOptions } from '../src/app.js';
import { createTestDatabase, type TestDatabase } from '../src/store/testing.js';
import { openStore, type Dialect, type Store } from '../src/store/db.js';

/** A platform on a fresh database of one dialect, with its provider-admin token and HTTP helpers. */
export interface TestPlatform {
  dialect: Dialect;
  tdb: TestDatabase;
  config: Config;
  platform: Platform;
  adminToken: string;
  call(method: string, url: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string>; raw?: string; contentType?: string }): Promise<LightMyRequestResponse>;
  /** A call that must succeed (2xx); returns the parsed body. */
  ok<T = any>(method: string, url: string, body?: unknown, token?: string): Promise<T>;
  /** Wait until a request is terminal. */
  settle(requestId: string, timeoutMs?: number): Promise<any>;
  /** Reseller + organization + domain, made by the provider admin; plus an org-admin and a reseller-admin token. */
  tenant(name: string): Promise<Tenant>;
  close(): Promise<void>;
}

export interface Tenant {
  reseller: any;
  org: any;
  domain: any;
  orgAdmin: string;
  resellerAdmin: string;
}

export async function startTestPlatform(dialect: Dialect, opts: PlatformOptions & { config?: Partial<Config> } = {}): Promise<TestPlatform> {
  const tdb = await createTestDatabase(dialect);
  const config = configFromEnv({}, {
    dataDir: tdb.dir, databaseUrl: tdb.url, filesRoot: join(tdb.dir, 'homes'), bcryptCost: 4, jobLeaseMs: 2000, logLevel: 'silent',
    // tests start the agents they need themselves; one that tests discovery turns it on
    transportDiscoverSeconds: 0, ...opts.config,
  });
  const init = await initPlatform(config);
  const platform = await createPlatform(config, { logger: false, workers: 1, ...opts });
  const app = platform.app!;
  const adminToken = init.token!;
  const tp: TestPlatform = {
    dialect, tdb, config, platform, adminToken,
    call(method, url, o = {}) {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      const token = o.token === undefined ? adminToken : o.token;
      if (token) headers.authorization = `Bearer ${token}`;
      if (o.raw !== undefined) {
        headers['content-type'] = o.contentType ?? 'text/plain';
        return app.inject({ method: method as any, url, headers, payload: o.raw });
      }
      return app.inject({ method: method as any, url, headers, ...(o.body !== undefined ? { payload: o.body as any } : {}) });
    },
    async ok(method, url, body, token) {
      const r = await tp.call(method, url, { body, token });
      if (r.statusCode >= 300) throw new Error(`${method} ${url} -> ${r.statusCode} ${r.body}`);
      return r.json();
    },
    async settle(requestId, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = await tp.ok('GET', `/api/v1/requests/${requestId}`);
        if (r.state === 'succeeded' || r.state === 'failed') return r;
        if (Date.now() > deadline) {
          // what it waits for: its jobs and their last errors
          const jobs = await platform.store.db.selectFrom('jobs').select(['kind', 'state', 'attempts', 'last_error']).where('request_id', '=', requestId).execute().catch(() => []);
          throw new Error(`request ${requestId} still ${r.state}; jobs: ${JSON.stringify(jobs)}`);
        }
        await new Promise((res) => setTimeout(res, 20));
      }
    },
    async tenant(name) {
      const reseller = await tp.ok('POST', '/api/v1/resellers', { name: `${name}-rsl` });
      const org = await tp.ok('POST', '/api/v1/organizations', { resellerId: reseller.id, name: `${name}-org` });
      const domain = await tp.ok('POST', `/api/v1/organizations/${org.id}/domains`, { name: `${name}.example` });
      const orgAdmin = (await tp.ok('POST', '/api/v1/tokens', { name: `${name} org admin`, role: 'organization_admin', orgId: org.id })).token;
      const resellerAdmin = (await tp.ok('POST', '/api/v1/tokens', { name: `${name} reseller admin`, role: 'reseller_admin', resellerId: reseller.id })).token;
      return { reseller, org, domain, orgAdmin, resellerAdmin };
    },
    async close() {
      await platform.close();
      await tdb.destroy();
    },
  };
  return tp;
}

/** A database that cannot be read: SQLite, a closed store on a removed file; PostgreSQL, a pool on a dropped database. */
export async function unreachableDatabase(dialect: Dialect): Promise<{ store: Store; url: string | undefined; close(): Promise<void> }> {
  const tdb = await createTestDatabase(dialect);
  const url = tdb.url;
  if (dialect === 'sqlite') {
    const store = tdb.open();
    await store.close();
    await tdb.destroy();
    return { store, url, close: async () => {} };
  }
  await tdb.destroy();
  const store = openStore({ url: url! }, { poolSize: 2 });
  return { store, url, close: () => store.close() };
}
