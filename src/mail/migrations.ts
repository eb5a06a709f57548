import type { Migration } from '../store/migrate.js';
import { runDdl } from '../store/migrate.js';

/**
 * Hosted Email: accepted domains, the platform-wide address namespace with its quarantine, mailboxes,
 * contacts, the mail side of groups, public folders, send-as / send-on-behalf grants, full access to mailboxes
 * and auto-replies.
 *
 * `addresses.address` is the primary key: an address (normalised: lower-case, A-label) belongs to at most
 * one recipient on the whole platform, enforced by the database inside the creating transaction. A released
 * address moves to `address_quarantine` with the recipient that held it; it cannot be claimed by anyone else
 * until `until`, and restoring is the only way back to the former recipient. Mailbox quotas are materialised
 * (effective = plan + overrides) because the data plane reads them; `charged_bytes` is what the organization's
 * counters hold for that object (DESIGN §3: a mailbox is charged its prohibit_send_receive_quota, a public
 * folder its prohibit_post_quota).
 */
export const mailMigrations: Migration[] = [
  {
    id: '0004_mail',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        CREATE TABLE shared_domains (
          id TEXT PRIMARY KEY,
          name TEXT NOT NULL UNIQUE,
          created_at BIGINT NOT NULL
        );
        CREATE TABLE accepted_domains (
          domain_id TEXT PRIMARY KEY REFERENCES domains (id),
          org_id TEXT NOT NULL REFERENCES organizations (id),
          reseller_id TEXT NOT NULL,
          name TEXT NOT NULL UNIQUE,
          type TEXT NOT NULL CHECK (type IN ('authoritative','internal_relay','external_relay')),
          alias_of TEXT REFERENCES accepted_domains (domain_id),
          shared_domain_id TEXT REFERENCES shared_domains (id),
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          CHECK (alias_of IS NULL OR alias_of <> domain_id)
        );
        CREATE INDEX accepted_domains_org ON accepted_domains (org_id, domain_id);
        CREATE INDEX accepted_domains_alias ON accepted_domains (alias_of);
        CREATE TABLE mailboxes (
          id TEXT PRIMARY KEY,
          org_id TEXT NOT NULL REFERENCES organizations (id),
          reseller_id TEXT NOT NULL,
          kind TEXT NOT NULL CHECK (kind IN ('user','shared','room','equipment')),
          user_id TEXT UNIQUE REFERENCES users (id),
          display_name TEXT NOT NULL,
          primary_address TEXT NOT NULL,
          mailbox_plan_id TEXT NOT NULL REFERENCES mailbox_plans (id),
          plan_version INTEGER NOT NULL,
          overrides TEXT NOT NULL,
          issue_warning_quota BIGINT NOT NULL,
          prohibit_send_quota BIGINT NOT NULL,
          prohibit_send_receive_quota BIGINT NOT NULL,
          max_send_size BIGINT NOT NULL,
          max_receive_size BIGINT NOT NULL,
          recipient_limit INTEGER NOT NULL,
          protocols TEXT NOT NULL,
          external_forwarding INTEGER NOT NULL CHECK (external_forwarding IN (0,1)),
          charged_bytes BIGINT NOT NULL,
          hidden INTEGER NOT NULL CHECK (hidden IN (0,1)),
          enabled INTEGER NOT NULL CHECK (enabled IN (0,1)),
          forward_to TEXT,
          forward_mode TEXT CHECK (forward_mode IN ('forward_only','deliver_and_forward')),
          state TEXT NOT NULL CHECK (state IN ('active','deleted','purging')),
          deleted_at BIGINT,
          purge_after BIGINT,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          CHECK (0 <= issue_warning_quota AND issue_warning_quota <= prohibit_send_quota AND prohibit_send_quota <= prohibit_send_receive_quota),
          CHECK (charged_bytes >= 0),
          CHECK ((kind = 'user') = (user_id IS NOT NULL)),
          CHECK ((forward_to IS NULL) = (forward_mode IS NULL))
        );
        CREATE INDEX mailboxes_org ON mailboxes (org_id, id);
        CREATE INDEX mailboxes_org_address ON mailboxes (org_id, primary_address);
        CREATE INDEX mailboxes_org_kind ON mailboxes (org_id, kind, id);
        CREATE INDEX mailboxes_org_state ON mailboxes (org_id, state, id);
        CREATE INDEX mailboxes_plan ON mailboxes (mailbox_plan_id, id);
        CREATE INDEX mailboxes_purge ON mailboxes (state, purge_after);
        CREATE TABLE contacts (
          id TEXT PRIMARY KEY,
          org_id TEXT NOT NULL REFERENCES organizations (id),
          reseller_id TEXT NOT NULL,
          display_name TEXT NOT NULL,
          external_address TEXT NOT NULL,
          hidden INTEGER NOT NULL CHECK (hidden IN (0,1)),
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          UNIQUE (org_id, external_address)
        );
        CREATE INDEX contacts_org ON contacts (org_id, id);
        CREATE TABLE mail_groups (
          group_id TEXT PRIMARY KEY REFERENCES groups (id),
          org_id TEXT NOT NULL REFERENCES organizations (id),
          reseller_id TEXT NOT NULL,
          primary_address TEXT NOT NULL,
          hidden INTEGER NOT NULL CHECK (hidden IN (0,1)),
          send_policy TEXT NOT NULL CHECK (send_policy IN ('organization','anyone','listed')),
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL
        );
        CREATE INDEX mail_groups_org ON mail_groups (org_id, group_id);
        CREATE TABLE mail_group_members (
          group_id TEXT NOT NULL REFERENCES groups (id),
          org_id TEXT NOT NULL,
          member_id TEXT NOT NULL,
          member_kind TEXT NOT NULL CHECK (member_kind IN ('mailbox','contact','group')),
          PRIMARY KEY (group_id, member_id),
          CHECK (member_id <> group_id)
        );
        CREATE INDEX mail_group_members_member ON mail_group_members (member_id);
        CREATE TABLE group_managers (
          group_id TEXT NOT NULL REFERENCES groups (id),
          org_id TEXT NOT NULL,
          user_id TEXT NOT NULL REFERENCES users (id),
          PRIMARY KEY (group_id, user_id)
        );
        CREATE INDEX group_managers_user ON group_managers (user_id);
        CREATE TABLE group_senders (
          group_id TEXT NOT NULL REFERENCES groups (id),
          org_id TEXT NOT NULL,
          sender_id TEXT NOT NULL,
          sender_kind TEXT NOT NULL CHECK (sender_kind IN ('mailbox','contact','group')),
          PRIMARY KEY (group_id, sender_id)
        );
        CREATE INDEX group_senders_sender ON group_senders (sender_id);
        CREATE TABLE public_folders (
          id TEXT PRIMARY KEY,
          org_id TEXT NOT NULL REFERENCES organizations (id),
          reseller_id TEXT NOT NULL,
          parent_id TEXT REFERENCES public_folders (id),
          name TEXT NOT NULL,
          path TEXT NOT NULL,
          issue_warning_quota BIGINT NOT NULL,
          prohibit_post_quota BIGINT NOT NULL,
          max_item_size BIGINT NOT NULL,
          charged_bytes BIGINT NOT NULL,
          mail_enabled INTEGER NOT NULL CHECK (mail_enabled IN (0,1)),
          primary_address TEXT,
          hidden INTEGER NOT NULL CHECK (hidden IN (0,1)),
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          UNIQUE (org_id, path),
          CHECK (0 <= issue_warning_quota AND issue_warning_quota <= prohibit_post_quota),
          CHECK (charged_bytes >= 0),
          CHECK ((mail_enabled = 1) = (primary_address IS NOT NULL))
        );
        CREATE INDEX public_folders_org ON public_folders (org_id, id);
        CREATE INDEX public_folders_parent ON public_folders (parent_id);
        CREATE TABLE public_folder_permissions (
          folder_id TEXT NOT NULL REFERENCES public_folders (id),
          org_id TEXT NOT NULL,
          principal_id TEXT NOT NULL,
          principal_kind TEXT NOT NULL CHECK (principal_kind IN ('user','group')),
          role TEXT NOT NULL CHECK (role IN ('owner','editor','author','reviewer')),
          PRIMARY KEY (folder_id, principal_id)
        );
        CREATE INDEX public_folder_permissions_principal ON public_folder_permissions (principal_id);
        CREATE TABLE send_grants (
          object_id TEXT NOT NULL,
          org_id TEXT NOT NULL REFERENCES organizations (id),
          object_kind TEXT NOT NULL CHECK (object_kind IN ('mailbox','group')),
          trustee_user_id TEXT NOT NULL REFERENCES users (id),
          right_name TEXT NOT NULL CHECK (right_name IN ('send_as','send_on_behalf')),
          created_at BIGINT NOT NULL,
          PRIMARY KEY (object_id, trustee_user_id, right_name)
        );
        CREATE INDEX send_grants_org ON send_grants (org_id, object_id);
        CREATE INDEX send_grants_trustee ON send_grants (trustee_user_id);
        CREATE TABLE auto_replies (
          mailbox_id TEXT PRIMARY KEY REFERENCES mailboxes (id),
          org_id TEXT NOT NULL,
          mode TEXT NOT NULL CHECK (mode IN ('off','on','scheduled')),
          starts_at BIGINT,
          ends_at BIGINT,
          internal_message TEXT NOT NULL,
          external_message TEXT NOT NULL,
          external_audience TEXT NOT NULL CHECK (external_audience IN ('none','known','all')),
          updated_at BIGINT NOT NULL,
          CHECK (mode <> 'scheduled' OR (starts_at IS NOT NULL AND ends_at IS NOT NULL AND starts_at < ends_at))
        );
        CREATE TABLE addresses (
          address TEXT PRIMARY KEY,
          org_id TEXT NOT NULL REFERENCES organizations (id),
          reseller_id TEXT NOT NULL,
          domain_id TEXT NOT NULL REFERENCES accepted_domains (domain_id),
          recipient_id TEXT NOT NULL,
          recipient_kind TEXT NOT NULL CHECK (recipient_kind IN ('mailbox','group','public_folder')),
          is_primary INTEGER NOT NULL CHECK (is_primary IN (0,1)),
          created_at BIGINT NOT NULL
        );
        CREATE INDEX addresses_recipient ON addresses (recipient_id, address);
        CREATE INDEX addresses_org ON addresses (org_id, address);
        CREATE INDEX addresses_domain ON addresses (domain_id);
        CREATE TABLE address_quarantine (
          address TEXT PRIMARY KEY,
          org_id TEXT NOT NULL,
          former_recipient_id TEXT NOT NULL,
          released_at BIGINT NOT NULL,
          until BIGINT NOT NULL
        );
        CREATE INDEX address_quarantine_recipient ON address_quarantine (former_recipient_id);
        CREATE INDEX address_quarantine_until ON address_quarantine (until)
      `);
    },
  },
  {
    // PostgreSQL: address prefix search (?q=) on mailboxes and contacts, as for logins (0005).
    id: '0006_address_prefix_index',
    async up(db, dialect) {
      if (dialect !== 'postgres') return;
      await runDdl(db, dialect, `
        CREATE INDEX mailboxes_org_address_pattern ON mailboxes (org_id, primary_address text_pattern_ops);
        CREATE INDEX contacts_org_address_pattern ON contacts (org_id, external_address text_pattern_ops)
      `);
    },
  },
  {
    // full access to a mailbox (mail/full-access.ts): a user of the mailbox's organization may open it
    id: '0013_mailbox_access',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        CREATE TABLE mailbox_access (
          mailbox_id TEXT NOT NULL REFERENCES mailboxes (id),
          org_id TEXT NOT NULL REFERENCES organizations (id),
          trustee_user_id TEXT NOT NULL REFERENCES users (id),
          created_at BIGINT NOT NULL,
          PRIMARY KEY (mailbox_id, trustee_user_id)
        );
        CREATE INDEX mailbox_access_org ON mailbox_access (org_id, mailbox_id);
        CREATE INDEX mailbox_access_trustee ON mailbox_access (trustee_user_id)
      `);
    },
  },
];
