/**
 * The isolation test's own model of a hosted-mail setup (test/transport-isolation.test.ts): where a message to
 * an address must land and which auto-reply, if any, a mailbox owes its sender, worked out from what the test
 * configured through the API — never from the database's lookup views, which are what is under test.
 *
 * Routing follows the product's rules as documented (mail/groups-model.ts, dataplane/migrations.ts 0012,
 * transport/auto-replies.ts):
 * - an address of a domain alias stands for the same local part at its target domain;
 * - a group delivers to each member: a mailbox (its primary address), a contact (its external address), a
 *   nested group (its primary address), recursively;
 * - a forwarding mailbox sends to its target, and keeps a copy with deliver_and_forward; a target in another
 *   organization or outside the platform only takes effect when the mailbox's plan allows external forwarding.
 *   The test sets such forwarding only on those plans: the API also accepts a target in another organization
 *   (or at a domain alias of the mailbox's own) on other plans, and the data plane then ignores the forwarding,
 *   a mismatch that is no leak and is left out here;
 * - any other address of a hosted domain is refused (the generator never produces one), an address elsewhere
 *   leaves the platform (the sink).
 * Auto-replies: the internal text only to an authenticated sender of the mailbox's own organization, else the
 * external text per audience (known = the organization's contacts and its own addresses), never to the mailbox
 * itself, once per sender and mailbox.
 */

export type ForwardMode = 'forward_only' | 'deliver_and_forward';
export type Audience = 'none' | 'known' | 'all';

export interface ModelMailbox {
  id: string;
  org: number;
  local: string;
  primary: string;
  aliases: string[];
  displayName: string;
  /** Login (user mailboxes) and its password; null for a shared mailbox. */
  login: string | null;
  password: string | null;
  forwarding: { to: string; mode: ForwardMode } | null;
  reply: { internal: string; external: string; audience: Audience } | null;
}

export type Member = { mailbox: ModelMailbox } | { contact: string } | { group: ModelGroup };

export interface ModelGroup {
  org: number;
  name: string;
  primary: string;
  members: Member[];
}

export interface ModelOrg {
  index: number;
  domain: string;
  aliasDomain: string | null;
  /** The mailbox plan allows forwarding outside the organization. */
  externalForwarding: boolean;
  mailboxes: ModelMailbox[];
  groups: ModelGroup[];
  contacts: string[];
}

export interface Routed {
  /** Final recipient addresses (lower case) of hosted mailboxes → the mailbox. */
  final: Map<string, ModelMailbox>;
  /** Addresses outside the platform (lower case). */
  external: Set<string>;
}

export type ReplyKind = 'internal' | 'external';

const lower = (a: string) => a.toLowerCase();
const domainOf = (a: string) => lower(a.slice(a.lastIndexOf('@') + 1));
const localOf = (a: string) => lower(a.slice(0, a.lastIndexOf('@')));

export class World {
  readonly orgs: ModelOrg[] = [];
  private readonly byAddress = new Map<string, { mailbox: ModelMailbox } | { group: ModelGroup }>();
  /** Every hosted domain (accepted and alias) → its organization. */
  private readonly orgOfDomain = new Map<string, number>();
  /** Alias domain → the domain it stands for. */
  private readonly aliasOf = new Map<string, string>();

  addOrg(o: ModelOrg): void {
    this.orgs[o.index] = o;
    this.orgOfDomain.set(lower(o.domain), o.index);
    if (o.aliasDomain) {
      this.orgOfDomain.set(lower(o.aliasDomain), o.index);
      this.aliasOf.set(lower(o.aliasDomain), lower(o.domain));
    }
  }

  /** Call once every organization's mailboxes and groups are in place. */
  index(): void {
    this.byAddress.clear();
    for (const o of this.orgs) {
      for (const m of o.mailboxes) for (const a of [m.primary, ...m.aliases]) this.byAddress.set(lower(a), { mailbox: m });
      for (const g of o.groups) this.byAddress.set(lower(g.primary), { group: g });
    }
  }

  mailboxes(): ModelMailbox[] {
    return this.orgs.flatMap((o) => o.mailboxes);
  }

  /** The organization a hosted address belongs to (alias domains included), or null for an outside address. */
  orgOfAddress(address: string): number | null {
    return this.orgOfDomain.get(domainOf(address)) ?? null;
  }

  /** user@alias-domain → user@target-domain; anything else unchanged (lower case). */
  canonical(address: string): string {
    const target = this.aliasOf.get(domainOf(address));
    return target ? `${localOf(address)}@${target}` : lower(address);
  }

  /** Whether Postfix must accept `address` as a recipient (a hosted mailbox or group, any spelling). */
  receives(address: string): boolean {
    return this.byAddress.has(this.canonical(address));
  }

  /** The mailbox an address (any spelling) belongs to, if it is a mailbox's. */
  mailboxOf(address: string): ModelMailbox | undefined {
    const e = this.byAddress.get(this.canonical(address));
    return e && 'mailbox' in e ? e.mailbox : undefined;
  }

  /** Where a message to these recipients lands. */
  route(recipients: string[]): Routed {
    const out: Routed = { final: new Map(), external: new Set() };
    for (const r of recipients) this.expand(r, out, 0);
    return out;
  }

  private expand(address: string, out: Routed, depth: number): void {
    if (depth > 20) throw new Error(`model: forwarding/group loop at ${address}`);
    const a = lower(address);
    if (this.orgOfAddress(a) === null) {
      out.external.add(a);
      return;
    }
    const canonical = this.canonical(a);
    const e = this.byAddress.get(canonical);
    if (!e) throw new Error(`model: ${address} is not a hosted recipient (the generator must not produce it)`);
    if (canonical !== a) return this.expand(canonical, out, depth + 1);
    if ('group' in e) {
      for (const m of e.group.members) {
        if ('mailbox' in m) this.expand(m.mailbox.primary, out, depth + 1);
        else if ('contact' in m) this.expand(m.contact, out, depth + 1);
        else this.expand(m.group.primary, out, depth + 1);
      }
      return;
    }
    const m = e.mailbox;
    if (!m.forwarding) {
      out.final.set(a, m);
      return;
    }
    this.expand(m.forwarding.to, out, depth + 1);
    if (m.forwarding.mode === 'deliver_and_forward') out.final.set(a, m);
  }

  /** The organization's address book for an external audience of `known`: its contacts and its own addresses. */
  known(org: number, sender: string): boolean {
    const s = lower(sender);
    const o = this.orgs[org]!;
    if (o.contacts.some((c) => lower(c) === s)) return true;
    const e = this.byAddress.get(s);
    return e !== undefined && ('mailbox' in e ? e.mailbox.org : e.group.org) === org;
  }

  /**
   * The reply `m` owes the sender of one message it received (null: none), before the once-per-period rule.
   * `authenticated`: the message came through authenticated submission.
   */
  replyFor(m: ModelMailbox, sender: string, authenticated: boolean): ReplyKind | null {
    if (!m.reply || sender === '') return null;
    if (this.mailboxOf(sender) === m) return null;
    const senderOrg = authenticated ? this.orgOfAddress(sender) : null;
    if (senderOrg === m.org) return m.reply.internal.trim() ? 'internal' : null;
    if (!m.reply.external.trim()) return null;
    if (m.reply.audience === 'all') return 'external';
    if (m.reply.audience === 'known' && this.known(m.org, sender)) return 'external';
    return null;
  }
}
