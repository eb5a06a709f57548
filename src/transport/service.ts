import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../core/config.js';
import { Errors } from '../core/errors.js';
import type { Db } from '../store/db.js';
import { readManifest } from '../dataplane/instance.js';
import type { Manifest } from '../dataplane/render.js';
import type { DomainCache } from './domain-cache.js';
import type { TransportAgent } from './agent.js';
import { parseListenAddress } from '../dataplane/policy.js';

/**
 * Running the transport agents: one per rendered data plane that routes its mail through an agent (a Postfix
 * instance hands mail back only to its own listeners, so each needs its own), sharing one domain cache. Under
 * `hmc serve` they run in the platform's process (their metrics in its /metrics); `hmc transport` runs them
 * alone, next to the Postfix instances of a node, with its own /healthz, /readyz and /metrics.
 */

const MIN_SECRET = 32;

/** The stamp key: HMC_TRANSPORT_SECRET, or a random one kept in the data directory (created on first use, 0600). */
export function loadTransportSecret(config: Config): Buffer {
  if (config.transportSecret !== undefined) {
    if (config.transportSecret.length < MIN_SECRET) throw Errors.invalidRequest(`HMC_TRANSPORT_SECRET must be at least ${MIN_SECRET} characters`);
    return Buffer.from(config.transportSecret, 'utf8');
  }
  const file = join(config.dataDir, 'transport-secret');
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  }
  chmodSync(file, 0o600);
  const key = readFileSync(file, 'utf8').trim();
  if (key.length < MIN_SECRET) throw Errors.invalidRequest(`${file} must hold at least ${MIN_SECRET} characters`);
  return Buffer.from(key, 'utf8');
}

/**
 * The rendered data planes under `root` (one directory per mail server) whose Postfix routes through an agent.
 * A manifest that cannot be read throws, unless `skip` is given: then it is reported there and left out.
 */
export function agentDataplanes(root: string, skip?: (dir: string, e: unknown) => void): Manifest[] {
  if (!existsSync(root)) return [];
  const out: Manifest[] = [];
  for (const e of readdirSync(root, { withFileTypes: true })) {
    if (!e.isDirectory() || !existsSync(join(root, e.name, 'dataplane.json'))) continue;
    let m: Manifest;
    try {
      m = readManifest(join(root, e.name));
    } catch (err) {
      if (!skip) throw err;
      skip(join(root, e.name), err);
      continue;
    }
    if (m.agent) out.push(m);
  }
  return out;
}

export interface AgentRuntime {
  db: Db;
  cache: DomainCache;
  secret: Buffer;
  replyPeriodMs: number;
  log: Logger;
  registry: Registry;
}

/**
 * The agent of one data plane, from its manifest (not started). The agent's SMTP and MIME libraries
 * (smtp-server, nodemailer, libmime and its charset tables) are loaded only here, by a process that runs an
 * agent: a platform without data planes never needs them (about 3.6 MB of live heap, bench/README.md).
 */
export async function agentFor(m: Manifest, rt: AgentRuntime): Promise<TransportAgent> {
  const a = m.agent;
  if (!a) throw Errors.invalidRequest(`the data plane in ${m.dir} was rendered without a transport agent (--agent-port)`);
  const { TransportAgent } = await import('./agent.js');
  return new TransportAgent({
    db: rt.db, cache: rt.cache, secret: rt.secret, replyPeriodMs: rt.replyPeriodMs, hostname: a.hostname,
    mx: { host: a.host, port: a.mxPort },
    submission: a.submissionPort === null ? null : { host: a.host, port: a.submissionPort },
    // a manifest rendered before the agent delivered (no deliverPort) routes no recipient to it
    deliver: typeof a.deliverPort === 'number' ? { host: a.host, port: a.deliverPort } : null,
    reinject: { host: m.listen, port: a.reinjectPort },
    reply: { host: m.listen, port: a.replyPort },
    log: rt.log.child({ component: 'transport-agent', server: m.server.name }),
    registry: rt.registry,
  });
}

/** Start an agent for every manifest; on any failure stops those started and throws. */
export async function startAgents(manifests: Manifest[], rt: AgentRuntime): Promise<TransportAgent[]> {
  const agents: TransportAgent[] = [];
  try {
    for (const m of manifests) {
      const a = await agentFor(m, rt);
      await a.start();
      agents.push(a);
    }
  } catch (e) {
    await Promise.all(agents.map((a) => a.close()));
    throw e;
  }
  return agents;
}

/** `hmc transport`'s health and metrics: /healthz (alive), /readyz (agents listening, cache loaded), /metrics. */
export async function startHealthServer(at: string, registry: Registry, ready: () => { ok: boolean; detail: unknown }): Promise<{ server: Server; port: number }> {
  const { host, port } = parseListenAddress(at);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else if (path === '/readyz') {
      const r = ready();
      res.writeHead(r.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: r.ok ? 'ready' : 'not ready', ...{ detail: r.detail } }));
    } else if (path === '/metrics') {
      registry.metrics().then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text), () => res.writeHead(500).end());
    } else {
      res.writeHead(404, { 'content-type': 'application/problem+json' }).end('{"type":"about:blank","title":"Not Found","status":404,"code":"not_found"}');
    }
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => res());
  });
  return { server, port: (server.address() as { port: number }).port };
}
