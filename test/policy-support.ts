import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';

/**
 * The Postfix policy protocol from the client side, for tests of HMC's policy service (dataplane/policy.ts): a
 * connection that sends requests with every attribute Postfix 3.7 sends and reads the replies in order.
 */

const tag = () => randomBytes(4).toString('hex');
let instanceSeq = 0;
/** A fresh Postfix-style message instance id. */
export const newInstance = () => `${process.pid.toString(16)}.${tag()}.${++instanceSeq}`;

export interface Ask {
  instance: string;
  state?: string;
  login?: string;
  sender?: string;
  recipient?: string;
  size?: number;
  recipientCount?: number;
}

/** A request with every attribute Postfix 3.7 sends (values for an SMTP client on 127.0.0.1). */
export function request(a: Ask): Record<string, string> {
  return {
    request: 'smtpd_access_policy', protocol_state: a.state ?? 'RCPT', protocol_name: a.login ? 'ESMTPA' : 'ESMTP',
    helo_name: 'client.example', queue_id: '', sender: a.sender ?? 'someone@remote.example', recipient: a.recipient ?? '',
    recipient_count: String(a.recipientCount ?? 0), client_address: '127.0.0.1', client_name: 'localhost', client_port: '40000',
    reverse_client_name: 'localhost', server_address: '127.0.0.1', server_port: '25', instance: a.instance,
    sasl_method: a.login ? 'PLAIN' : '', sasl_username: a.login ?? '', sasl_sender: '', size: String(a.size ?? 0),
    ccert_subject: '', ccert_issuer: '', ccert_fingerprint: '', ccert_pubkey_fingerprint: '', encryption_protocol: '',
    encryption_cipher: '', encryption_keysize: '0', etrn_domain: '', stress: '', compatibility_level: '3.6', mail_version: '3.7.11',
  };
}

/** One policy connection, as one smtpd process holds it: requests answered in order. */
export class PolicyClient {
  private buffer = '';
  private waiting: { resolve(v: string): void; reject(e: Error): void }[] = [];
  /** Replies nobody asked for. */
  readonly unasked: string[] = [];
  readonly closed: Promise<void>;

  private constructor(private socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf('\n\n'); end >= 0; end = this.buffer.indexOf('\n\n')) {
        const reply = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        const w = this.waiting.shift();
        if (!w) this.unasked.push(reply);
        else if (!/^action=[^\n]+$/.test(reply)) w.reject(new Error(`not one action= line: ${JSON.stringify(reply)}`));
        else w.resolve(reply.slice('action='.length));
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.on('close', () => {
      for (const w of this.waiting.splice(0)) w.reject(new Error('connection closed without a reply'));
      resolve();
    }));
  }

  static open(port: number): Promise<PolicyClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => resolve(new PolicyClient(s)));
      s.once('error', reject);
    });
  }

  /** Send raw bytes (malformed input). */
  raw(text: string): void {
    this.socket.write(text);
  }

  /** Ask one request; resolves to the action. */
  ask(a: Ask): Promise<string> {
    const attrs = request(a);
    const p = new Promise<string>((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.socket.write(`${Object.entries(attrs).map(([k, v]) => `${k}=${v}`).join('\n')}\n\n`);
    return p;
  }

  close(): Promise<void> {
    this.socket.end();
    return this.closed;
  }
}
