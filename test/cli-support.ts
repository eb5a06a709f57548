import { fakeIo, type FakeIo } from '../src/cli/fake-io.js';
import type { TestPlatform } from './support.js';

/**
 * The CLI's IO for in-process tests: HTTP goes straight into the platform's Fastify app (inject), with
 * `token` as HMC_TOKEN; sleeps are real but short, so following a running request does not spin.
 */
export function inProcessIo(t: TestPlatform, token: string, stdin = ''): FakeIo {
  const f = fakeIo({ stdin, env: { HMC_TOKEN: token } });
  f.sleep = (ms: number) => new Promise((res) => setTimeout(res, Math.min(ms, 50)));
  f.fetch = (async (input: string | URL | Request, init: RequestInit = {}) => {
    const u = new URL(String(input));
    const r = await t.platform.app!.inject({
      method: (init.method ?? 'GET') as any, url: u.pathname + u.search, headers: init.headers as Record<string, string>,
      ...(typeof init.body === 'string' ? { payload: init.body } : {}),
    });
    const headers = new Headers();
    for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers.set(k, String(v));
    return new Response(r.statusCode === 204 ? null : new Uint8Array(r.rawPayload), { status: r.statusCode, headers });
  }) as typeof fetch;
  return f;
}
