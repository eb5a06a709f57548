import { randomBytes } from 'node:crypto';
import type { TestPlatform, Tenant } from './support.js';

/** Options of a mail-enabled test organization; sizes in bytes, null limits = unlimited. */
export interface MailOrgOptions {
  maxMailboxes?: number | null;
  maxDomains?: number | null;
  maxGroups?: number | null;
  maxContacts?: number | null;
  maxPublicFolders?: number | null;
  storageBytes?: number | null;
  dynamicStorage?: boolean;
  maxMailboxBytes?: number | null;
  publicFolderBytes?: number;
  features?: Record<string, unknown>;
  /** More fields of the organization plan (mailstoreKind, placement, …). */
  orgPlan?: Record<string, unknown>;
  /** false: do not register the shared test stores (the test registers its own layout). */
  defaultStores?: boolean;
  /** Fields of the organization's mailbox plan (default: 1 GiB mailboxes). */
  mailboxPlan?: Record<string, unknown>;
}

export interface MailOrg extends Tenant {
  orgUrl: string;
  /** The reseller's own (ceiling) plan, a provider plan. */
  ceilingPlanId: string;
  orgPlanId: string;
  mailboxPlanId: string;
  /** The accepted (authoritative) domain's name and directory id. */
  domainName: string;
  domainId: string;
}

export const GiB = 1024 ** 3;
export const TiB = 1024 ** 4;
export const PiB = 1024 ** 5;

/**
 * A tenant ready for Hosted Email, made through the API as a hoster would: a provider ceiling plan for the
 * reseller, an organization plan and a mailbox plan owned by the reseller (made with the reseller admin's
 * token), the organization subscribed, the mailbox plan available to it, and its domain accepted as
 * authoritative. Each call makes its own reseller, so tests never share plans.
 */
export async function setupMailOrg(t: TestPlatform, name: string, o: MailOrgOptions = {}): Promise<MailOrg> {
  return mailEnable(t, await t.tenant(name), name, o);
}

/** Make an existing tenant (from `t.tenant`) ready for Hosted Email, as `setupMailOrg` does. */
export async function mailEnable(t: TestPlatform, tenant: Tenant, name: string, o: MailOrgOptions = {}): Promise<MailOrg> {
  if (o.defaultStores !== false) await ensureStores(t);
  const ceiling = await t.ok('POST', '/api/v1/plans/organization', {
    name: `${name}-ceiling`, storageBytes: null, dynamicStorage: true, publicFolderBytes: 8 * 1024 ** 5,
    features: { publicFolders: true, mobility: true, unifiedMessaging: true, collaboration: true },
  });
  await t.ok('PUT', `/api/v1/resellers/${tenant.reseller.id}/plan`, { orgPlanId: ceiling.id });
  const orgPlanBody: Record<string, unknown> = {
    name: `${name}-org`,
    maxMailboxes: o.maxMailboxes === undefined ? null : o.maxMailboxes,
    maxDomains: o.maxDomains === undefined ? null : o.maxDomains,
    maxGroups: o.maxGroups === undefined ? null : o.maxGroups,
    maxContacts: o.maxContacts === undefined ? null : o.maxContacts,
    maxPublicFolders: o.maxPublicFolders === undefined ? null : o.maxPublicFolders,
    storageBytes: o.storageBytes === undefined ? 100 * GiB : o.storageBytes,
    dynamicStorage: o.dynamicStorage ?? false,
    maxMailboxBytes: o.maxMailboxBytes === undefined ? null : o.maxMailboxBytes,
    publicFolderBytes: o.publicFolderBytes ?? 10 * GiB,
    features: { publicFolders: true, ...(o.features ?? {}) },
    ...(o.orgPlan ?? {}),
  };
  const orgPlan = await t.ok('POST', '/api/v1/plans/organization', orgPlanBody, tenant.resellerAdmin);
  const mailboxPlan = await t.ok('POST', '/api/v1/plans/mailbox', {
    name: `${name}-mbx`, issueWarningQuota: 900 * 1024 ** 2, prohibitSendQuota: 950 * 1024 ** 2, prohibitSendReceiveQuota: GiB, ...(o.mailboxPlan ?? {}),
  }, tenant.resellerAdmin);
  const orgUrl = `/api/v1/organizations/${tenant.org.id}`;
  await t.ok('PUT', `${orgUrl}/subscription`, { orgPlanId: orgPlan.id }, tenant.resellerAdmin);
  await t.ok('PUT', `${orgUrl}/available-plans/${mailboxPlan.id}`, undefined, tenant.resellerAdmin);
  await t.ok('PUT', `${orgUrl}/domains/${tenant.domain.id}/accepted`, { type: 'authoritative' }, tenant.orgAdmin);
  return {
    ...tenant, orgUrl, ceilingPlanId: ceiling.id, orgPlanId: orgPlan.id, mailboxPlanId: mailboxPlan.id,
    domainName: tenant.domain.name, domainId: tenant.domain.id,
  };
}

const registries = new WeakMap<TestPlatform, Promise<TestStores>>();

export interface TestStores {
  serverId: string;
  /** Shared mailbox stores of 8 PiB each (the largest size HMC takes). */
  mailbox: string[];
  publicFolder: string[];
}

/**
 * The platform's shared mailstores for tests that are not about placement: one mail server with four
 * shared mailbox stores and two shared public-folder stores, 8 PiB each, registered once per platform by
 * the provider admin, so any organization a test subscribes has room to be placed.
 */
export function ensureStores(t: TestPlatform): Promise<TestStores> {
  let p = registries.get(t);
  if (!p) {
    p = (async () => {
      const srv = await t.ok('POST', '/api/v1/mail-servers', { name: 'test-mail', lmtpEndpoint: '127.0.0.1:24', imapEndpoint: '127.0.0.1:143', mailRoot: '/var/mail/test' });
      const mailbox: string[] = [];
      for (let i = 1; i <= 4; i++) {
        mailbox.push((await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: `shared-${i}`, capacityBytes: 2 ** 53 })).id);
      }
      const publicFolder: string[] = [];
      for (let i = 1; i <= 2; i++) {
        publicFolder.push((await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: `public-${i}`, purpose: 'public_folder', capacityBytes: 2 ** 53 })).id);
      }
      return { serverId: srv.id, mailbox, publicFolder };
    })();
    registries.set(t, p);
  }
  return p;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/** Users with mailboxes made through the API, remembered by login: password, user row and mailbox row. */
export function people(): {
  pw: Map<string, string>;
  users: Map<string, any>;
  boxes: Map<string, any>;
  /** A user `local@<org domain>` with a mailbox of the org's mailbox plan (and these overrides); returns the login. */
  person(t: TestPlatform, o: MailOrg, local: string, overrides?: Record<string, unknown>): Promise<string>;
} {
  const pw = new Map<string, string>();
  const users = new Map<string, any>();
  const boxes = new Map<string, any>();
  return {
    pw, users, boxes,
    async person(t, o, local, overrides) {
      const login = `${local}@${o.domainName}`;
      const password = `pw-${randomBytes(4).toString('hex')}`;
      const u = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login, password });
      const m = await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: u.id, planId: o.mailboxPlanId, ...(overrides ? { overrides } : {}) });
      pw.set(login, password);
      users.set(login, u);
      boxes.set(login, m);
      return login;
    },
  };
}
