import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { randomInt } from 'node:crypto';

/**
 * Ports for servers a test starts as other processes (Postfix, Dovecot, `hmc serve`): chosen here, bound there
 * a moment later. Not from the kernel's ephemeral range (listen(0) picks from it): every outgoing connection of
 * the tests running beside this one takes its local port from that range too, and one of them taking the
 * chosen port in between made Postfix fail with "bind 127.0.0.1 port …: Address already in use" (a fresh-clone
 * run, 1 of 812 tests). Below the range only other listeners compete, and each choice is checked by binding it.
 */
export async function freePorts(n: number): Promise<number[]> {
  const [low] = ephemeralRange();
  const top = Math.max(2048, Math.min(low, 65536));
  const bottom = Math.max(1024, top - 20_000);
  const held: Server[] = [];
  const chosen = new Set<number>();
  try {
    for (let tries = 0; held.length < n; tries++) {
      if (tries > 1000) throw new Error(`no ${n} free ports in ${bottom}-${top - 1}`);
      const port = randomInt(bottom, top);
      if (chosen.has(port)) continue;
      const s = createServer();
      const ok = await new Promise<boolean>((res) => {
        s.once('error', () => res(false));
        s.listen(port, '127.0.0.1', () => res(true));
      });
      if (!ok) continue;
      chosen.add(port);
      held.push(s);
    }
    return [...chosen];
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

function ephemeralRange(): [number, number] {
  try {
    const [a, b] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(a) && Number.isInteger(b)) return [a!, b!];
  } catch {
    // not Linux: the IANA dynamic range
  }
  return [49152, 65535];
}
