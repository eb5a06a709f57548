import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { DIALECTS } from '../src/store/testing.js';
import { renderDataplane } from '../src/dataplane/render.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { eventually, freePorts, registerMailServer } from './dataplane-support.js';

/**
 * `hmc serve` starts the transport agent of a data plane rendered under HMC_DATAPLANE_ROOT after it started
 * (HMC_TRANSPORT_DISCOVER_SECONDS), once, moves it when the plane is rendered again with other agent ports, and an
 * unreadable manifest next to it does not stop that. The agent
 * needs no running Postfix to listen: the test talks to its MX port directly.
 */

/** The first line a listener sends. */
function greeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    s.setEncoding('utf8');
    s.once('data', (d: string) => {
      s.end('QUIT\r\n');
      resolve(d.split('\r\n')[0]!);
    });
    s.once('error', reject);
  });
}

for (const dialect of DIALECTS) {
  describe(`transport agents for data planes rendered after the start (${dialect})`, () => {
    let t: TestPlatform;
    let root: string;

    before(async () => {
      root = mkdtempSync('/tmp/hmc-discover-');
      t = await startTestPlatform(dialect, { config: { port: 0, dataplaneRoot: root, transportSecret: 'discovery-test-secret-0123456789abcdef', transportDiscoverSeconds: 1 } });
      await t.platform.listen();
    });
    after(async () => {
      try {
        await t?.close();
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    test('a data plane rendered with an agent gets it within seconds, once; a broken manifest beside it is skipped', async () => {
      assert.equal(t.platform.agents.length, 0);
      // a directory whose manifest is not JSON (a render in progress, a hand edit gone wrong)
      mkdirSync(join(root, 'broken'));
      writeFileSync(join(root, 'broken', 'dataplane.json'), '{ "half');
      const [smtpPort, lmtp, imap, mxPort, reinjectPort, replyPort, deliverPort] = await freePorts(7);
      await registerMailServer(t, 'dp-late', join(root, 'mail'), { lmtp: lmtp!, imap: imap! });
      const database = dialect === 'sqlite' ? { sqlitePath: t.tdb.sqlitePath! } : { url: t.tdb.url! };
      const m = await renderDataplane(t.platform.store.db, 'dp-late', {
        outDir: join(root, 'dp-late'), database, smtpPort: smtpPort!, plaintextAuth: true,
        transportAgent: { mxPort: mxPort!, submissionPort: null, deliverPort: deliverPort!, reinjectPort: reinjectPort!, replyPort: replyPort! },
      });
      await eventually('the agent of dp-late', async () => t.platform.agents.length, (n) => n === 1, 15_000);
      assert.match(await greeting(m.agent!.mxPort), /^220 /);
      // later passes find nothing new: still one agent, still answering
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(t.platform.agents.length, 1);
      assert.match(await greeting(m.agent!.mxPort), /^220 /);

      // rendered again with other agent ports: the agent moves to them, still one
      const [mx2, reinject2, reply2, deliver2] = await freePorts(4);
      const m2 = await renderDataplane(t.platform.store.db, 'dp-late', {
        outDir: join(root, 'dp-late'), database, smtpPort: smtpPort!, plaintextAuth: true,
        transportAgent: { mxPort: mx2!, submissionPort: null, deliverPort: deliver2!, reinjectPort: reinject2!, replyPort: reply2! },
      });
      await eventually('the agent on its new MX port', () => greeting(m2.agent!.mxPort).catch(() => 'refused'), (g) => /^220 /.test(g), 15_000);
      assert.equal(t.platform.agents.length, 1);
      assert.equal(t.platform.agents[0]!.port('mx'), mx2);
      await assert.rejects(greeting(m.agent!.mxPort), 'the old MX port is closed');
    });
  });
}
