import { connect, Socket } from 'node:net';
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

/** Where a Postfix listener (or an LMTP server) is: TCP, or a unix socket when `path` is given. */
export interface Endpoint {
  host: string;
  port: number;
  path?: string;
}

export interface SendResult {
  accepted: string[];
  rejected: string[];
  response: string;
  /** The server's answer for each rejected recipient (LMTP answers per recipient after the data). */
  rejectedResponses: { recipient: string; code: number; response: string }[];
}

/**
 * DSN parameters (RFC 3461) for one transaction: RET and ENVID of MAIL FROM, NOTIFY and ORCPT given to every
 * RCPT TO (nodemailer has one set per transaction). Sent only when the server announces DSN.
 */
export interface Dsn {
  ret?: 'FULL' | 'HDRS' | null;
  envid?: string | null;
  notify?: string | null;
  orcpt?: string | null;
}

export interface SmtpPoolOptions {
  /** Connections kept open between messages (each holds one of the listener's smtpd processes). */
  maxIdle?: number;
  /** Transactions per connection before it is closed (Postfix's smtpd serves ~100 clients a process). */
  maxUses?: number;
  /** An idle connection older than this is closed rather than reused (ms). */
  idleMs?: number;
  /** Speak LMTP (LHLO, an answer per recipient after the data), e.g. to Dovecot's LMTP. */
  lmtp?: boolean;
}

interface Conn {
  c: SMTPConnection;
  uses: number;
  idleSince: number;
  dead: boolean;
  /** The transaction under way, told when the connection fails under it. */
  onFail: ((e: Error) => void) | null;
}

/**
 * SMTP transactions to one Postfix listener over connections that are kept open and reused: the transport
 * agent hands every message back to Postfix, and a connection per message cost a connect, a greeting, EHLO
 * and QUIT on both sides each time. A connection that fails or is closed by Postfix (timeout, reload, stop) is
 * dropped, never reused; a transaction that fails on it fails (the agent answers 4xx and Postfix retries).
 * Connections in use are not capped: the listener's process limit and Postfix's own concurrency are.
 */
export class SmtpPool {
  private idle: Conn[] = [];
  private readonly maxIdle: number;
  private readonly maxUses: number;
  private readonly idleMs: number;
  private readonly lmtp: boolean;
  private sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly to: Endpoint, private readonly name: string, o: SmtpPoolOptions = {}) {
    this.maxIdle = o.maxIdle ?? 8;
    this.maxUses = o.maxUses ?? 100;
    this.idleMs = o.idleMs ?? 5000;
    this.lmtp = o.lmtp ?? false;
    this.sweeper = setInterval(() => this.sweep(), Math.max(250, this.idleMs / 2));
    this.sweeper.unref();
  }

  /** Connections open and waiting (for metrics and tests). */
  get idleCount(): number {
    return this.idle.length;
  }

  /** One transaction; resolves when Postfix answered the end of data. */
  async send(envelope: { from: string; to: string[]; dsn?: Dsn }, message: Readable | Buffer): Promise<SendResult> {
    const conn = this.take() ?? (await this.open());
    return new Promise<SendResult>((resolve, reject) => {
      let settled = false;
      conn.onFail = (e) => {
        if (settled) return;
        settled = true;
        this.discard(conn);
        reject(e);
      };
      conn.c.send({ ...envelope, use8BitMime: true } as SMTPConnection.Envelope, message, (err, info) => {
        if (settled) return;
        if (err) {
          conn.onFail?.(err);
          return;
        }
        settled = true;
        conn.onFail = null;
        conn.uses++;
        this.release(conn);
        const rejectedErrors = ((info as { rejectedErrors?: { recipient?: string; responseCode?: number; response?: string }[] }).rejectedErrors ?? []);
        resolve({
          accepted: (info.accepted ?? []).map(String), rejected: (info.rejected ?? []).map(String), response: String(info.response ?? ''),
          rejectedResponses: rejectedErrors.map((e) => ({ recipient: String(e.recipient ?? ''), code: Number(e.responseCode ?? 451), response: String(e.response ?? '') })),
        });
      });
    });
  }

  /** Close every idle connection; later sends open new ones unless closed for good. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const conn of this.idle.splice(0)) this.quit(conn);
  }

  private take(): Conn | null {
    const now = Date.now();
    while (this.idle.length > 0) {
      const conn = this.idle.pop()!;
      if (!conn.dead && now - conn.idleSince < this.idleMs) return conn;
      this.quit(conn);
    }
    return null;
  }

  private open(): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const c = new SMTPConnection({
        host: this.to.host, port: this.to.port, ignoreTLS: true, name: this.name, lmtp: this.lmtp, connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 120_000,
        // a unix socket: handed over connecting (nodemailer connects only TCP itself). TCP: a socket of ours with
        // Nagle's algorithm off, which nodemailer connects: pipelined commands go out at once, never held back
        // for the peer's delayed ACK
        ...(this.to.path ? { connection: connect(this.to.path) } : { socket: new Socket().setNoDelay(true) }),
      });
      const conn: Conn = { c, uses: 0, idleSince: 0, dead: false, onFail: null };
      let connected = false;
      const gone = (e: Error) => {
        conn.dead = true;
        this.idle = this.idle.filter((x) => x !== conn);
        if (!connected) {
          connected = true;
          c.close();
          reject(e);
          return;
        }
        conn.onFail?.(e);
      };
      c.on('error', gone);
      c.on('end', () => gone(new Error('the SMTP connection was closed')));
      c.connect(() => {
        connected = true;
        resolve(conn);
      });
    });
  }

  private release(conn: Conn): void {
    if (this.closed || conn.dead || conn.uses >= this.maxUses || this.idle.length >= this.maxIdle) {
      this.quit(conn);
      return;
    }
    conn.idleSince = Date.now();
    this.idle.push(conn);
  }

  private sweep(): void {
    const now = Date.now();
    const keep: Conn[] = [];
    for (const conn of this.idle) {
      if (conn.dead || now - conn.idleSince >= this.idleMs) this.quit(conn);
      else keep.push(conn);
    }
    this.idle = keep;
  }

  private discard(conn: Conn): void {
    conn.dead = true;
    conn.onFail = null;
    this.idle = this.idle.filter((x) => x !== conn);
    conn.c.close();
  }

  private quit(conn: Conn): void {
    conn.dead = true;
    conn.onFail = null;
    try {
      conn.c.quit();
    } catch {
      conn.c.close();
    }
  }
}
