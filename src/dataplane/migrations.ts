import type { Migration } from '../store/migrate.js';
import { runDdl } from '../store/migrate.js';

/**
 * The data plane's lookup contract: views that Postfix (sqlite:/pgsql: maps) and Dovecot (passdb/userdb
 * `driver = sql`) query directly, with the same names and columns on SQLite and PostgreSQL. The servers read
 * what HMC stores, with no copy to keep in step: a committed change is what the next lookup sees.
 *
 * Only what may receive or log in shows up: an organization that is not `active` (suspended, being deleted)
 * has no domains, addresses or users here, so its mail is refused at RCPT and its users cannot log in.
 * A mailbox must be `active`, `enabled` and placed (store_id, whose server gives the LMTP route and mail root).
 *
 * - dp_virtual_domains(domain, org_id): authoritative accepted domains (virtual_mailbox_domains).
 * - dp_mailbox_addresses(address, mailbox_id, org_id, store_id, server_id): every address of such a mailbox,
 *   primary and secondary.
 * - dp_virtual_mailbox_maps(address, maildir): the same addresses (virtual_mailbox_maps, recipient validation);
 *   `maildir` is `<store>/<org>/<mailbox>/`, never empty (Postfix only needs a value: delivery is LMTP).
 * - dp_transport(address, transport): `lmtp:` + the store's server LMTP endpoint (`lmtp:inet:host:port` or
 *   `lmtp:unix:/path`, transport_maps syntax).
 * - dp_users(login, password, home, quota_bytes, protocols, mailbox_id, org_id, store_id, server_id): Dovecot's
 *   passdb/userdb for enabled users with a password whose user mailbox qualifies; home is
 *   `<mail_root>/<store>/<org>/<mailbox>` (the files mailstore's layout), quota the mailbox's
 *   prohibit_send_receive_quota in bytes, protocols the mailbox's JSON list.
 *
 * Not yet here: aliases (domain aliases, groups, forwarding), relay domains, send-as login maps.
 */
export const dataplaneMigrations: Migration[] = [
  {
    id: '0010_dataplane_views',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        CREATE VIEW dp_virtual_domains AS
          SELECT d.name AS domain, d.org_id AS org_id
          FROM accepted_domains d
          JOIN organizations o ON o.id = d.org_id
          WHERE o.state = 'active' AND d.type = 'authoritative';
        CREATE VIEW dp_mailbox_addresses AS
          SELECT a.address AS address, m.id AS mailbox_id, m.org_id AS org_id, m.store_id AS store_id, s.server_id AS server_id
          FROM addresses a
          JOIN mailboxes m ON m.id = a.recipient_id
          JOIN organizations o ON o.id = m.org_id
          JOIN mailstores s ON s.id = m.store_id
          WHERE a.recipient_kind = 'mailbox' AND a.org_id = m.org_id
            AND m.state = 'active' AND m.enabled = 1 AND o.state = 'active';
        CREATE VIEW dp_virtual_mailbox_maps AS
          SELECT address, store_id || '/' || org_id || '/' || mailbox_id || '/' AS maildir
          FROM dp_mailbox_addresses;
        CREATE VIEW dp_transport AS
          SELECT x.address AS address, 'lmtp:' || v.lmtp_endpoint AS transport
          FROM dp_mailbox_addresses x
          JOIN mail_servers v ON v.id = x.server_id;
        CREATE VIEW dp_users AS
          SELECT u.login AS login, u.password_hash AS password,
            v.mail_root || '/' || m.store_id || '/' || m.org_id || '/' || m.id AS home,
            m.prohibit_send_receive_quota AS quota_bytes, m.protocols AS protocols,
            m.id AS mailbox_id, m.org_id AS org_id, m.store_id AS store_id, s.server_id AS server_id
          FROM users u
          JOIN mailboxes m ON m.user_id = u.id
          JOIN organizations o ON o.id = m.org_id
          JOIN mailstores s ON s.id = m.store_id
          JOIN mail_servers v ON v.id = s.server_id
          WHERE u.enabled = 1 AND u.state = 'active' AND u.password_hash IS NOT NULL AND u.org_id = m.org_id
            AND m.kind = 'user' AND m.state = 'active' AND m.enabled = 1 AND o.state = 'active'
      `);
    },
  },
];
