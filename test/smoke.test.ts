import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';

for (const dialect of DIALECTS) {
  describe(`smoke [${dialect}]`, () => {
    let t: TestPlatform;
    before(async () => { t = await startTestPlatform(dialect); });
    after(async () => { await t?.close(); });

    test('create a user, its home appears, delete it, its home goes', async () => {
      const { org } = await t.tenant('smoke');
      const r = await t.call('POST', `/api/v1/organizations/${org.id}/users`, { body: { login: 'Jane@Smoke.example', password: 'secret-pass-1' } });
      assert.equal(r.statusCode, 202, r.body);
      const user = r.json();
      assert.equal(user.login, 'jane@smoke.example');
      const req = await t.settle(r.headers['hmc-request-id'] as string);
      assert.equal(req.state, 'succeeded');
      assert.ok(existsSync(join(t.config.filesRoot, org.id, user.id)));
      const d = await t.call('DELETE', `/api/v1/organizations/${org.id}/users/${user.id}?wait=true`);
      assert.equal(d.statusCode, 200, d.body);
      assert.ok(!existsSync(join(t.config.filesRoot, org.id, user.id)));
      const g = await t.call('GET', `/api/v1/organizations/${org.id}/users/${user.id}`);
      assert.equal(g.statusCode, 404);
    });

    test('logs can be read newest first, page by page', async () => {
      const { org } = await t.tenant('order');
      const asc = await t.ok('GET', `/api/v1/audit?org=${org.id}&limit=1000`);
      assert.ok(asc.items.length >= 2);
      const desc = await t.ok('GET', `/api/v1/audit?org=${org.id}&order=desc&limit=1`);
      assert.equal(desc.items[0].id, asc.items.at(-1).id, 'newest first');
      const next = await t.ok('GET', `/api/v1/audit?org=${org.id}&order=desc&limit=1&cursor=${desc.next}`);
      assert.equal(next.items[0].id, asc.items.at(-2).id, 'the cursor continues downwards');
    });
  });
}
