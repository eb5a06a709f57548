import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { SmtpPool } from './smtp-pool.js';

/** A real SMTP server on loopback that records connections and messages and can be told to refuse or hang up. */
function recorder() {
  const state = { connections: 0, quits: 0, messages: [] as Array<{ from: string; to: string[]; body: string; session: string }>, refuseNext: false, sockets: new Set<Socket>() };
  const server = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS'], logger: false,
    onConnect(session, cb) {
      state.connections++;
      cb();
    },
    onClose() {
      state.quits++;
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (state.refuseNext) {
          state.refuseNext = false;
          return cb(Object.assign(new Error('4.3.0 try later'), { responseCode: 451 }));
        }
        const env = session.envelope;
        state.messages.push({ from: env.mailFrom ? env.mailFrom.address : '', to: env.rcptTo.map((r) => r.address), body: Buffer.concat(chunks).toString(), session: session.id });
        cb(null, `Ok: queued as Q${state.messages.length}` as unknown as undefined);
      });
    },
  });
  server.server.on('connection', (s: Socket) => {
    state.sockets.add(s);
    s.on('close', () => state.sockets.delete(s));
  });
  return { server, state };
}

const msg = (n: number) => Buffer.from(`Subject: m${n}\r\n\r\nbody ${n}\r\n`);

describe('SmtpPool: reused connections to one SMTP listener', () => {
  const { server, state } = recorder();
  let port = 0;
  before(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('sequential messages share one connection and arrive whole, each with its own envelope', async () => {
    const pool = new SmtpPool({ host: '127.0.0.1', port }, 'agent.test');
    const before = state.connections;
    for (let i = 0; i < 5; i++) {
      const r = await pool.send({ from: `s${i}@a.example`, to: [`r${i}@b.example`, `x${i}@b.example`] }, msg(i));
      assert.deepEqual(r.accepted, [`r${i}@b.example`, `x${i}@b.example`]);
      assert.match(r.response, new RegExp(`queued as Q${state.messages.length}$`));
    }
    assert.equal(state.connections - before, 1);
    const last5 = state.messages.slice(-5);
    assert.deepEqual(last5.map((m) => m.from), ['s0@a.example', 's1@a.example', 's2@a.example', 's3@a.example', 's4@a.example']);
    assert.ok(last5.every((m, i) => m.body.includes(`body ${i}`) && m.to.length === 2));
    assert.equal(new Set(last5.map((m) => m.session)).size, 1);
    pool.close();
  });

  test('concurrent messages open what they need, and no more than maxIdle stay open', async () => {
    const pool = new SmtpPool({ host: '127.0.0.1', port }, 'agent.test', { maxIdle: 2 });
    const before = state.connections;
    await Promise.all(Array.from({ length: 6 }, (_, i) => pool.send({ from: 'c@a.example', to: ['r@b.example'] }, msg(i))));
    assert.equal(state.connections - before, 6);
    assert.equal(pool.idleCount, 2);
    pool.close();
    assert.equal(pool.idleCount, 0);
  });

  test('a connection the server closed is never reused: the next message goes over a new one', async () => {
    const pool = new SmtpPool({ host: '127.0.0.1', port }, 'agent.test');
    await pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(1));
    const before = state.connections;
    for (const s of state.sockets) s.destroy(); // the listener goes away under the idle connection
    await new Promise((r) => setTimeout(r, 50));
    const r = await pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(2));
    assert.deepEqual(r.accepted, ['r@b.example']);
    assert.equal(state.connections - before, 1);
    pool.close();
  });

  test('a refused transaction fails, its connection is dropped, and the next message still goes through', async () => {
    const pool = new SmtpPool({ host: '127.0.0.1', port }, 'agent.test');
    await pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(1));
    state.refuseNext = true;
    await assert.rejects(pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(2)), /451|try later/);
    assert.equal(pool.idleCount, 0);
    const n = state.messages.length;
    await pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(3));
    assert.equal(state.messages.length, n + 1);
    pool.close();
  });

  test('a connection is retired after maxUses transactions and after idleMs idle', async () => {
    const pool = new SmtpPool({ host: '127.0.0.1', port }, 'agent.test', { maxUses: 2, idleMs: 100 });
    const before = state.connections;
    for (let i = 0; i < 4; i++) await pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(i));
    assert.equal(state.connections - before, 2);
    await pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(5));
    assert.equal(pool.idleCount, 1);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(pool.idleCount, 0); // swept
    await pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(6));
    assert.equal(state.connections - before, 4);
    pool.close();
  });

  test('nothing listening: the send fails at once', async () => {
    const pool = new SmtpPool({ host: '127.0.0.1', port: 1 }, 'agent.test');
    await assert.rejects(pool.send({ from: 'a@a.example', to: ['r@b.example'] }, msg(1)), /ECONNREFUSED|connect/);
    pool.close();
  });
});

describe('SmtpPool: LMTP over a unix socket (how the transport agent delivers to Dovecot)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hmc-lmtp-'));
  const path = join(dir, 'lmtp');
  const got: string[] = [];
  const server = new SMTPServer({
    lmtp: true, authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
    onData(stream, session, cb) {
      stream.on('data', () => {});
      stream.on('end', () => {
        got.push(...session.envelope.rcptTo.map((r) => r.address));
        // one answer per recipient: the second one's mailbox is full
        cb(null, session.envelope.rcptTo.map((r, i) => (i === 1 ? Object.assign(new Error(`5.2.2 <${r.address}> Quota exceeded`), { responseCode: 552 }) : `2.0.0 <${r.address}> Saved`)) as unknown as undefined);
      });
    },
  });
  before(() => new Promise<void>((r) => server.listen(path, () => r())));
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('per-recipient answers after the data come back as accepted and rejected, with the server\'s code', async () => {
    const pool = new SmtpPool({ host: 'localhost', port: 0, path }, 'agent.test', { lmtp: true });
    try {
      const r = await pool.send({ from: 's@a.example', to: ['ok@b.example', 'full@b.example'] }, msg(1));
      assert.deepEqual(r.accepted, ['ok@b.example']);
      assert.deepEqual(r.rejected, ['full@b.example']);
      assert.equal(r.rejectedResponses[0]!.code, 552);
      assert.match(r.rejectedResponses[0]!.response, /Quota exceeded/);
      // the connection is reused for the next delivery
      const again = await pool.send({ from: 's@a.example', to: ['ok2@b.example'] }, msg(2));
      assert.deepEqual(again.accepted, ['ok2@b.example']);
      assert.deepEqual(got, ['ok@b.example', 'full@b.example', 'ok2@b.example']);
    } finally {
      pool.close();
    }
  });
});
