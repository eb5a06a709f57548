import type { Migration } from '../store/migrate.js';
import { runDdl } from '../store/migrate.js';
import { sql } from 'kysely';

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
 * 0012 completes the contract (see the comment there): aliases, relay domains, send-as, userdb by any
 * address, protocol switches, warning quota, proxying to the user's server, and moves between servers.
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
  {
    /**
     * The whole lookup contract (issue 5 item 1). Every view shows only what belongs to a live tenant: an
     * organization that is `active` under a reseller that is `active` (dp_live_orgs), so a suspension takes
     * all of its domains, addresses and logins out of the mail path at once.
     *
     * - dp_virtual_domains(domain, org_id): authoritative accepted domains, domain aliases included (their
     *   addresses are resolved by the alias query, so unknown ones are refused like any other).
     * - dp_relay_domains(domain, org_id): internal_relay / external_relay domains (Postfix relay_domains):
     *   known mailboxes there still go to their mailstore (transport_maps), the rest is relayed.
     * - dp_mailbox_addresses: as in 0010, plus every mailbox kind (shared, room, equipment receive too).
     * - dp_virtual_aliases(address, destination): group addresses → each deliverable member (a mailbox's
     *   primary address, a contact's external address, a nested mail-enabled group's primary address; members
     *   are always of the group's organization), and forwarding: every address of a forwarding mailbox → the
     *   target, plus itself when it also delivers (Postfix keeps an address that maps to itself). Forwarding
     *   outside the organization only where the mailbox's plan allows external forwarding.
     *   Domain aliases are resolved at query time (dataplane/render.ts): user@alias → user@target only when
     *   that target exists, so an alias domain accepts exactly what its target does.
     * - dp_userdb(name, home, quota_bytes, quota_warning, mailbox_id, org_id, store_id, server_id): Dovecot's
     *   userdb under every name a mailbox is reached by (the user's login and each address: LMTP looks up the
     *   recipient address), home `<mail_root>/<store>/<org>/<mailbox>`. While a mailbox is being moved to
     *   another server (moving_from), its old server still resolves it to the old home, so mail that was
     *   already routed there is kept and copied along rather than refused.
     * - dp_userdb_names(name, server_id): one canonical name per mailbox (login, else primary address) for
     *   Dovecot's iterate_query (`doveadm … -A`).
     * - dp_users(login, password, home, quota_bytes, allow_imap, allow_pop3, allow_submission, …, imap_host,
     *   imap_port, pop_port): passdb for enabled users with a password, the plan's protocol switches, and
     *   where their server's IMAP/POP3 listens (a login on another server is proxied there).
     * - dp_sender_logins(address, login): who may use an address as envelope sender on submission
     *   (smtpd_sender_login_maps): the owner of a user mailbox's addresses, and trustees with send_as on a
     *   mailbox or a group, always of the same organization.
     */
    id: '0012_dataplane_lookups',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        DROP VIEW dp_users;
        DROP VIEW dp_transport;
        DROP VIEW dp_virtual_mailbox_maps;
        DROP VIEW dp_mailbox_addresses;
        DROP VIEW dp_virtual_domains;
        CREATE VIEW dp_live_orgs AS
          SELECT o.id AS id
          FROM organizations o
          JOIN resellers r ON r.id = o.reseller_id
          WHERE o.state = 'active' AND r.state = 'active';
        CREATE VIEW dp_virtual_domains AS
          SELECT d.name AS domain, d.org_id AS org_id
          FROM accepted_domains d
          JOIN dp_live_orgs o ON o.id = d.org_id
          WHERE d.type = 'authoritative';
        CREATE VIEW dp_relay_domains AS
          SELECT d.name AS domain, d.org_id AS org_id
          FROM accepted_domains d
          JOIN dp_live_orgs o ON o.id = d.org_id
          WHERE d.type IN ('internal_relay', 'external_relay');
        CREATE VIEW dp_mailbox_addresses AS
          SELECT a.address AS address, m.id AS mailbox_id, m.org_id AS org_id, m.store_id AS store_id, s.server_id AS server_id
          FROM addresses a
          JOIN mailboxes m ON m.id = a.recipient_id
          JOIN dp_live_orgs o ON o.id = m.org_id
          JOIN mailstores s ON s.id = m.store_id
          WHERE a.recipient_kind = 'mailbox' AND a.org_id = m.org_id
            AND m.state = 'active' AND m.enabled = 1;
        CREATE VIEW dp_virtual_mailbox_maps AS
          SELECT address, store_id || '/' || org_id || '/' || mailbox_id || '/' AS maildir
          FROM dp_mailbox_addresses;
        CREATE VIEW dp_transport AS
          SELECT x.address AS address, 'lmtp:' || v.lmtp_endpoint AS transport
          FROM dp_mailbox_addresses x
          JOIN mail_servers v ON v.id = x.server_id;
        CREATE VIEW dp_virtual_aliases AS
          SELECT ga.address AS address, mm.primary_address AS destination
          FROM addresses ga
          JOIN mail_groups g ON g.group_id = ga.recipient_id AND g.org_id = ga.org_id
          JOIN dp_live_orgs o ON o.id = g.org_id
          JOIN mail_group_members gm ON gm.group_id = g.group_id AND gm.org_id = g.org_id AND gm.member_kind = 'mailbox'
          JOIN mailboxes mm ON mm.id = gm.member_id AND mm.org_id = g.org_id
          WHERE ga.recipient_kind = 'group' AND mm.state = 'active' AND mm.enabled = 1 AND mm.store_id IS NOT NULL
          UNION ALL
          SELECT ga.address, c.external_address
          FROM addresses ga
          JOIN mail_groups g ON g.group_id = ga.recipient_id AND g.org_id = ga.org_id
          JOIN dp_live_orgs o ON o.id = g.org_id
          JOIN mail_group_members gm ON gm.group_id = g.group_id AND gm.org_id = g.org_id AND gm.member_kind = 'contact'
          JOIN contacts c ON c.id = gm.member_id AND c.org_id = g.org_id
          WHERE ga.recipient_kind = 'group'
          UNION ALL
          SELECT ga.address, ng.primary_address
          FROM addresses ga
          JOIN mail_groups g ON g.group_id = ga.recipient_id AND g.org_id = ga.org_id
          JOIN dp_live_orgs o ON o.id = g.org_id
          JOIN mail_group_members gm ON gm.group_id = g.group_id AND gm.org_id = g.org_id AND gm.member_kind = 'group'
          JOIN mail_groups ng ON ng.group_id = gm.member_id AND ng.org_id = g.org_id
          WHERE ga.recipient_kind = 'group'
          UNION ALL
          SELECT x.address, m.forward_to
          FROM dp_mailbox_addresses x
          JOIN mailboxes m ON m.id = x.mailbox_id
          WHERE m.forward_to IS NOT NULL
            AND (m.external_forwarding = 1 OR EXISTS (SELECT 1 FROM addresses t WHERE t.address = m.forward_to AND t.org_id = m.org_id))
          UNION ALL
          SELECT x.address, x.address
          FROM dp_mailbox_addresses x
          JOIN mailboxes m ON m.id = x.mailbox_id
          WHERE m.forward_mode = 'deliver_and_forward'
            AND (m.external_forwarding = 1 OR EXISTS (SELECT 1 FROM addresses t WHERE t.address = m.forward_to AND t.org_id = m.org_id));
        CREATE VIEW dp_userdb AS
          SELECT u.login AS name, v.mail_root || '/' || m.store_id || '/' || m.org_id || '/' || m.id AS home,
            m.prohibit_send_receive_quota AS quota_bytes,
            CASE WHEN m.issue_warning_quota > 0 AND m.issue_warning_quota < m.prohibit_send_receive_quota
              THEN 'bytes=' || m.issue_warning_quota || ' quota-warning ' || u.login || ' ' || m.issue_warning_quota END AS quota_warning,
            m.id AS mailbox_id, m.org_id AS org_id, m.store_id AS store_id, s.server_id AS server_id
          FROM users u
          JOIN mailboxes m ON m.user_id = u.id
          JOIN dp_live_orgs o ON o.id = m.org_id
          JOIN mailstores s ON s.id = m.store_id
          JOIN mail_servers v ON v.id = s.server_id
          WHERE u.enabled = 1 AND u.state = 'active' AND u.org_id = m.org_id
            AND m.kind = 'user' AND m.state = 'active' AND m.enabled = 1
          UNION
          SELECT x.address, v.mail_root || '/' || m.store_id || '/' || m.org_id || '/' || m.id,
            m.prohibit_send_receive_quota,
            CASE WHEN m.issue_warning_quota > 0 AND m.issue_warning_quota < m.prohibit_send_receive_quota
              THEN 'bytes=' || m.issue_warning_quota || ' quota-warning ' || x.address || ' ' || m.issue_warning_quota END,
            m.id, m.org_id, m.store_id, x.server_id
          FROM dp_mailbox_addresses x
          JOIN mailboxes m ON m.id = x.mailbox_id
          JOIN mail_servers v ON v.id = x.server_id
          UNION
          SELECT x.address, ov.mail_root || '/' || m.moving_from || '/' || m.org_id || '/' || m.id,
            m.prohibit_send_receive_quota, NULL, m.id, m.org_id, m.moving_from, os.server_id
          FROM dp_mailbox_addresses x
          JOIN mailboxes m ON m.id = x.mailbox_id
          JOIN mailstores os ON os.id = m.moving_from
          JOIN mail_servers ov ON ov.id = os.server_id
          WHERE os.server_id <> x.server_id;
        CREATE VIEW dp_userdb_names AS
          SELECT COALESCE(u.login, m.primary_address) AS name, s.server_id AS server_id
          FROM mailboxes m
          LEFT JOIN users u ON u.id = m.user_id AND u.org_id = m.org_id AND u.enabled = 1 AND u.state = 'active'
          JOIN dp_live_orgs o ON o.id = m.org_id
          JOIN mailstores s ON s.id = m.store_id
          WHERE m.state = 'active' AND m.enabled = 1;
        CREATE VIEW dp_users AS
          SELECT u.login AS login, u.password_hash AS password,
            v.mail_root || '/' || m.store_id || '/' || m.org_id || '/' || m.id AS home,
            m.prohibit_send_receive_quota AS quota_bytes, m.protocols AS protocols,
            CASE WHEN m.protocols LIKE '%"imap"%' THEN 1 ELSE 0 END AS allow_imap,
            CASE WHEN m.protocols LIKE '%"pop3"%' THEN 1 ELSE 0 END AS allow_pop3,
            CASE WHEN m.protocols LIKE '%"submission"%' THEN 1 ELSE 0 END AS allow_submission,
            m.id AS mailbox_id, m.org_id AS org_id, m.store_id AS store_id, s.server_id AS server_id,
            ltrim(rtrim(substr(rtrim(v.imap_endpoint, '0123456789'), 1, length(rtrim(v.imap_endpoint, '0123456789')) - 1), ']'), '[') AS imap_host,
            substr(v.imap_endpoint, length(rtrim(v.imap_endpoint, '0123456789')) + 1) AS imap_port,
            substr(v.pop_endpoint, length(rtrim(v.pop_endpoint, '0123456789')) + 1) AS pop_port
          FROM users u
          JOIN mailboxes m ON m.user_id = u.id
          JOIN dp_live_orgs o ON o.id = m.org_id
          JOIN mailstores s ON s.id = m.store_id
          JOIN mail_servers v ON v.id = s.server_id
          WHERE u.enabled = 1 AND u.state = 'active' AND u.password_hash IS NOT NULL AND u.org_id = m.org_id
            AND m.kind = 'user' AND m.state = 'active' AND m.enabled = 1;
        CREATE VIEW dp_sender_logins AS
          SELECT x.address AS address, u.login AS login
          FROM dp_mailbox_addresses x
          JOIN mailboxes m ON m.id = x.mailbox_id
          JOIN users u ON u.id = m.user_id AND u.org_id = m.org_id
          UNION ALL
          SELECT x.address, u.login
          FROM dp_mailbox_addresses x
          JOIN send_grants g ON g.object_id = x.mailbox_id AND g.object_kind = 'mailbox' AND g.right_name = 'send_as' AND g.org_id = x.org_id
          JOIN users u ON u.id = g.trustee_user_id AND u.org_id = x.org_id
          UNION ALL
          SELECT a.address, u.login
          FROM addresses a
          JOIN mail_groups mg ON mg.group_id = a.recipient_id AND mg.org_id = a.org_id
          JOIN dp_live_orgs o ON o.id = a.org_id
          JOIN send_grants g ON g.object_id = a.recipient_id AND g.object_kind = 'group' AND g.right_name = 'send_as' AND g.org_id = a.org_id
          JOIN users u ON u.id = g.trustee_user_id AND u.org_id = a.org_id
          WHERE a.recipient_kind = 'group'
      `);
    },
  },
  /**
   * PostgreSQL only: the lookups as PL/pgSQL functions over the same views. Postfix and Dovecot send each
   * lookup as a fresh statement, and PostgreSQL plans the nested views anew every time: measured 3 ms for a
   * mailbox lookup and 42 ms for an alias lookup, almost all of it planning (bench --suite dataplane). A
   * PL/pgSQL function keeps its plans for the connection, which Postfix and Dovecot hold open, so a lookup
   * costs its execution only. SQLite prepares each statement itself and keeps the plain queries (render.ts).
   * Bodies stay on one line each: runDdl splits statements at a semicolon that ends a line.
   */
  {
    id: '0014_dataplane_pg_functions',
    async up(db, dialect) {
      if (dialect !== 'postgres') return;
      const local = "regexp_replace(k, '@[^@]*$', '')";
      const domain = "substring(k from '@([^@]*)$')";
      await runDdl(db, dialect, `
        CREATE FUNCTION dp_pf_domain(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT v.domain::text FROM dp_virtual_domains v WHERE v.domain = k; END $$;
        CREATE FUNCTION dp_pf_relay_domain(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT v.domain::text FROM dp_relay_domains v WHERE v.domain = k; END $$;
        CREATE FUNCTION dp_pf_mailbox(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT v.maildir::text FROM dp_virtual_mailbox_maps v WHERE v.address = k; END $$;
        CREATE FUNCTION dp_pf_transport(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT v.transport::text FROM dp_transport v WHERE v.address = k; END $$;
        CREATE FUNCTION dp_pf_alias(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$ DECLARE l text := ${local}; d text := ${domain}; BEGIN RETURN QUERY SELECT v.destination::text FROM dp_virtual_aliases v WHERE v.address = k; IF d IS NOT NULL THEN RETURN QUERY SELECT l || '@' || t.name FROM accepted_domains a JOIN accepted_domains t ON t.domain_id = a.alias_of JOIN dp_live_orgs o ON o.id = a.org_id WHERE a.name = d AND t.org_id = a.org_id AND (EXISTS (SELECT 1 FROM dp_mailbox_addresses x WHERE x.address = l || '@' || t.name) OR EXISTS (SELECT 1 FROM dp_virtual_aliases y WHERE y.address = l || '@' || t.name)); END IF; END $$;
        CREATE FUNCTION dp_pf_sender_login(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$ DECLARE l text := ${local}; d text := ${domain}; BEGIN RETURN QUERY SELECT s.login::text FROM dp_sender_logins s WHERE s.address = k UNION SELECT s.login::text FROM accepted_domains a JOIN accepted_domains t ON t.domain_id = a.alias_of JOIN dp_sender_logins s ON s.address = l || '@' || t.name WHERE a.name = d AND t.org_id = a.org_id; END $$;
        CREATE FUNCTION dp_dv_passdb(login_ text, service_ text, server_ text) RETURNS TABLE (username text, password text, proxy text, host text, port text) LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT p.login::text, p.password::text, CASE WHEN p.server_id <> server_ THEN 'y' END, CASE WHEN p.server_id <> server_ THEN p.imap_host::text END, CASE WHEN p.server_id <> server_ THEN (CASE WHEN service_ = 'pop3' THEN p.pop_port ELSE p.imap_port END)::text END FROM dp_users p WHERE p.login = login_ AND ((p.allow_imap = 1 AND service_ = 'imap') OR (p.allow_pop3 = 1 AND service_ = 'pop3') OR (p.allow_submission = 1 AND service_ = 'smtp') OR service_ NOT IN ('imap', 'pop3', 'smtp')); END $$;
        CREATE FUNCTION dp_dv_userdb(name_ text, server_ text) RETURNS TABLE (home text, quota_bytes bigint, quota_warning text) LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT u.home::text, u.quota_bytes::bigint, u.quota_warning::text FROM dp_userdb u WHERE u.name = name_ AND u.server_id = server_; END $$
      `);
    },
  },
  /**
   * Public folders in the data plane (dataplane/public-folders.ts):
   * - dp_public_folder_addresses(address, folder_id, org_id, store_id, server_id, quota_bytes, warning_bytes,
   *   max_item_size): the addresses of mail-enabled public folders of live organizations that are placed;
   *   Postfix accepts and routes them (second virtual_mailbox_maps and transport_maps), Dovecot's second userdb
   *   delivers them into the folder (quota = prohibitPostQuota; crossing issueWarningQuota files one notice in
   *   the folder itself, where its readers see it), the policy service refuses items over maxItemSize.
   * - dp_public_folder_transport(address, transport): `lmtp:` + the LMTP endpoint of the folder's server.
   * - dp_user_acl_groups(login, group_id): the ACL identities of a user in Dovecot (`acl_groups`): its own id
   *   and every group its mailbox belongs to, directly or through nested groups; a folder permission is the ACL
   *   entry `group=<principal id>`, so a deleted user's successor with the same login inherits nothing.
   *   Lookups anchor the recursion on the login (PUBLIC_ACL_GROUPS_SQL, below; the view serves reading).
   * PostgreSQL gets lookup functions, as in 0014.
   */
  {
    id: '0016_dataplane_public_folders',
    async up(db, dialect) {
      await runDdl(db, dialect, `
        CREATE VIEW dp_public_folder_addresses AS
          SELECT a.address AS address, f.id AS folder_id, f.org_id AS org_id, f.store_id AS store_id, s.server_id AS server_id,
            f.prohibit_post_quota AS quota_bytes, f.issue_warning_quota AS warning_bytes, f.max_item_size AS max_item_size
          FROM addresses a
          JOIN public_folders f ON f.id = a.recipient_id AND f.org_id = a.org_id
          JOIN dp_live_orgs o ON o.id = f.org_id
          JOIN mailstores s ON s.id = f.store_id
          WHERE a.recipient_kind = 'public_folder' AND f.mail_enabled = 1;
        CREATE VIEW dp_public_folder_transport AS
          SELECT x.address AS address, 'lmtp:' || v.lmtp_endpoint AS transport
          FROM dp_public_folder_addresses x
          JOIN mail_servers v ON v.id = x.server_id;
        CREATE VIEW dp_user_acl_groups AS
          WITH RECURSIVE g (login, group_id) AS (
            SELECT u.login, u.id FROM users u
            UNION
            SELECT u.login, gm.group_id FROM users u
              JOIN mailboxes m ON m.user_id = u.id AND m.org_id = u.org_id AND m.kind = 'user'
              JOIN mail_group_members gm ON gm.member_id = m.id AND gm.member_kind = 'mailbox' AND gm.org_id = m.org_id
            UNION
            SELECT g.login, gm.group_id FROM g JOIN mail_group_members gm ON gm.member_id = g.group_id AND gm.member_kind = 'group'
          )
          SELECT login, group_id FROM g
      `);
      if (dialect !== 'postgres') return;
      await runDdl(db, dialect, `
        CREATE FUNCTION dp_pf_public_folder(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT x.folder_id::text FROM dp_public_folder_addresses x WHERE x.address = k; END $$;
        CREATE FUNCTION dp_pf_public_transport(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT x.transport::text FROM dp_public_folder_transport x WHERE x.address = k; END $$;
        CREATE FUNCTION dp_dv_public_userdb(name_ text, server_ text) RETURNS TABLE (folder_id text, org_id text, quota_bytes bigint, warning_bytes bigint) LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY SELECT x.folder_id::text, x.org_id::text, x.quota_bytes::bigint, x.warning_bytes::bigint FROM dp_public_folder_addresses x WHERE x.address = name_ AND x.server_id = server_; END $$;
        CREATE FUNCTION dp_dv_public(login_ text) RETURNS TABLE (login text, org_id text, acl_groups text) LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY ${publicAclGroupsSql('login_', 'postgres')}; END $$
      `);
    },
  },
  /**
   * Key-first lookups. SQLite plans without statistics, and for `… FROM dp_virtual_aliases WHERE address = ?`
   * it started at `mailboxes` by the index on `state` (every active mailbox of the platform, then each one's
   * addresses): a lookup cost grew with the platform, not with its answer. On SQLite every inner JOIN of the
   * dp_* views becomes CROSS JOIN, which SQLite's planner never reorders (same rows: CROSS JOIN … ON is an
   * inner join there), so each lookup starts at the table the view names first, and every view names first
   * the table its key is unique in (addresses.address, users.login, accepted_domains.name). The view texts
   * are read back from sqlite_master, so this stays one rule, not a second copy of the views.
   * PostgreSQL has statistics and plans by cost; there the lookup functions keep one generic plan
   * (plan_cache_mode) instead of planning the nested views anew for each key (custom plans, measured 1.7 ms
   * per alias lookup).
   */
  {
    id: '0021_dataplane_key_first',
    async up(db, dialect) {
      if (dialect === 'sqlite') {
        const views = await sql<{ name: string; sql: string }>`SELECT name, sql FROM sqlite_master WHERE type = 'view' AND substr(name, 1, 3) = 'dp_' ORDER BY name`.execute(db);
        for (const v of views.rows) {
          const text = keyFirst(v.sql);
          if (text === v.sql) continue;
          await sql.raw(`DROP VIEW ${v.name}`).execute(db);
          await sql.raw(text).execute(db);
        }
        return;
      }
      const fns = await sql<{ sig: string }>`SELECT p.oid::regprocedure::text AS sig FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace AND substr(p.proname, 1, 6) IN ('dp_pf_', 'dp_dv_')`.execute(db);
      for (const f of fns.rows) await sql.raw(`ALTER FUNCTION ${f.sig} SET plan_cache_mode = force_generic_plan`).execute(db);
      // Dovecot's userdb: the three ways a name reaches a mailbox of dp_userdb (login, address, old server
      // during a move), one at a time and in that order, instead of the whole UNION for every lookup (measured
      // 0.49 ms a call under load, three times any other lookup; LMTP and quota-status ask it for every
      // recipient). The branches are dp_userdb's (0012); test/dataplane-lookups.test.ts holds them equal.
      const home = (store: string) => `v.mail_root || '/' || ${store} || '/' || m.org_id || '/' || m.id`;
      const warning = (name: string) => `CASE WHEN m.issue_warning_quota > 0 AND m.issue_warning_quota < m.prohibit_send_receive_quota THEN 'bytes=' || m.issue_warning_quota || ' quota-warning ' || ${name} || ' ' || m.issue_warning_quota END`;
      await runDdl(db, dialect, `
        CREATE OR REPLACE FUNCTION dp_dv_userdb(name_ text, server_ text) RETURNS TABLE (home text, quota_bytes bigint, quota_warning text) LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$ BEGIN RETURN QUERY SELECT (${home('m.store_id')})::text, m.prohibit_send_receive_quota::bigint, (${warning('u.login')})::text FROM users u JOIN mailboxes m ON m.user_id = u.id JOIN dp_live_orgs o ON o.id = m.org_id JOIN mailstores s ON s.id = m.store_id JOIN mail_servers v ON v.id = s.server_id WHERE u.login = name_ AND s.server_id = server_ AND u.enabled = 1 AND u.state = 'active' AND u.org_id = m.org_id AND m.kind = 'user' AND m.state = 'active' AND m.enabled = 1; IF FOUND THEN RETURN; END IF; RETURN QUERY SELECT (${home('m.store_id')})::text, m.prohibit_send_receive_quota::bigint, (${warning('x.address')})::text FROM dp_mailbox_addresses x JOIN mailboxes m ON m.id = x.mailbox_id JOIN mail_servers v ON v.id = x.server_id WHERE x.address = name_ AND x.server_id = server_; IF FOUND THEN RETURN; END IF; RETURN QUERY SELECT (${home('m.moving_from')})::text, m.prohibit_send_receive_quota::bigint, NULL::text FROM dp_mailbox_addresses x JOIN mailboxes m ON m.id = x.mailbox_id JOIN mailstores os ON os.id = m.moving_from JOIN mail_servers v ON v.id = os.server_id WHERE x.address = name_ AND os.server_id = server_ AND os.server_id <> x.server_id; END $$
      `);
      // the alias lookup answers nothing for most keys (a plain mailbox's address): its gate says so first
      await runDdl(db, dialect, gatedPgAliasFunction());
    },
  },
  /**
   * Selective routing through the transport agent (transport/agent.ts). Filtering every message after the
   * queue costs a second queue pass whatever the filter does (measured: 0.78-0.86 of the throughput without
   * it, bench --suite transport, loop variant), and most messages need nothing from the agent. The mail that
   * does: a recipient whose auto-reply answers now. dp_auto_reply_addresses(address, mailbox_id) holds the
   * addresses of mailboxes whose auto-reply is on, or scheduled and inside its window at the time of the lookup
   * (whether the mailbox takes mail at all is dp_transport's to say: every lookup asks both, and this one is two
   * primary-key probes). Postfix's transport map sends those recipients to the agent, which delivers to the
   * mailbox's LMTP itself and then answers. PostgreSQL: dp_pf_transport_via(key, via) is that transport lookup,
   * `via` (the agent's Postfix transport) where the key is such an address, else the mailbox's LMTP route;
   * SQLite does the same in the map's query (render.ts).
   */
  {
    id: '0022_dataplane_auto_reply_route',
    async up(db, dialect) {
      const nowMs = dialect === 'postgres' ? '(extract(epoch from now()) * 1000)::bigint' : "(CAST(strftime('%s', 'now') AS INTEGER) * 1000)";
      const join = dialect === 'postgres' ? 'JOIN' : 'CROSS JOIN';
      await runDdl(db, dialect, `
        CREATE VIEW dp_auto_reply_addresses AS
          SELECT a.address AS address, a.recipient_id AS mailbox_id
          FROM addresses a
          ${join} auto_replies r ON r.mailbox_id = a.recipient_id
          WHERE a.recipient_kind = 'mailbox' AND (r.mode = 'on' OR (r.mode = 'scheduled' AND r.starts_at <= ${nowMs} AND ${nowMs} < r.ends_at))
      `);
      if (dialect !== 'postgres') return;
      await runDdl(db, dialect, `
        CREATE FUNCTION dp_pf_transport_via(k text, via text) RETURNS SETOF text LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$ BEGIN IF EXISTS (SELECT 1 FROM dp_auto_reply_addresses a WHERE a.address = k) THEN RETURN QUERY SELECT via FROM dp_transport v WHERE v.address = k; RETURN; END IF; RETURN QUERY SELECT v.transport::text FROM dp_transport v WHERE v.address = k; END $$
      `);
    },
  },
  /**
   * One copy per mailbox. Every address of a mailbox was a mailbox address of its own (virtual_mailbox_maps,
   * an LMTP recipient each), so a message to two addresses of one mailbox (its primary and an alias, or the
   * alias and a group the mailbox is in) was delivered to it twice: Postfix removes duplicate recipients by
   * address, and they were different addresses (the isolation test counted 31 duplicate copies in 7,133).
   * Now a secondary address rewrites to the mailbox's primary address (dp_virtual_aliases), as postfixadmin-style
   * setups do, and cleanup's duplicate filter sees one recipient. A mailbox that forwards and keeps a copy
   * keeps it under its primary address only (the self-row of a secondary address would be a second recipient).
   * The alias gate admits secondary addresses. Secondary addresses stay valid at RCPT (virtual_mailbox_maps)
   * and in Dovecot's userdb. Data planes rendered before this keep the old SQLite gate (a file of the rendering)
   * and their duplicates until they are rendered again; PostgreSQL's gate is in dp_pf_alias, replaced here.
   */
  {
    id: '0023_dataplane_secondary_to_primary',
    async up(db, dialect) {
      if (dialect === 'sqlite') {
        await sql.raw('DROP VIEW dp_virtual_aliases').execute(db);
        await sql.raw(keyFirst(VIRTUAL_ALIASES_VIEW)).execute(db);
        return;
      }
      await sql.raw(VIRTUAL_ALIASES_VIEW.replace('CREATE VIEW', 'CREATE OR REPLACE VIEW')).execute(db);
      await runDdl(db, dialect, gatedPgAliasFunction());
    },
  },
];

/** dp_virtual_aliases as of 0023 (0012's, with the secondary-address rows; see 0023). */
const VIRTUAL_ALIASES_VIEW = `CREATE VIEW dp_virtual_aliases AS
  SELECT ga.address AS address, mm.primary_address AS destination
  FROM addresses ga
  JOIN mail_groups g ON g.group_id = ga.recipient_id AND g.org_id = ga.org_id
  JOIN dp_live_orgs o ON o.id = g.org_id
  JOIN mail_group_members gm ON gm.group_id = g.group_id AND gm.org_id = g.org_id AND gm.member_kind = 'mailbox'
  JOIN mailboxes mm ON mm.id = gm.member_id AND mm.org_id = g.org_id
  WHERE ga.recipient_kind = 'group' AND mm.state = 'active' AND mm.enabled = 1 AND mm.store_id IS NOT NULL
  UNION ALL
  SELECT ga.address, c.external_address
  FROM addresses ga
  JOIN mail_groups g ON g.group_id = ga.recipient_id AND g.org_id = ga.org_id
  JOIN dp_live_orgs o ON o.id = g.org_id
  JOIN mail_group_members gm ON gm.group_id = g.group_id AND gm.org_id = g.org_id AND gm.member_kind = 'contact'
  JOIN contacts c ON c.id = gm.member_id AND c.org_id = g.org_id
  WHERE ga.recipient_kind = 'group'
  UNION ALL
  SELECT ga.address, ng.primary_address
  FROM addresses ga
  JOIN mail_groups g ON g.group_id = ga.recipient_id AND g.org_id = ga.org_id
  JOIN dp_live_orgs o ON o.id = g.org_id
  JOIN mail_group_members gm ON gm.group_id = g.group_id AND gm.org_id = g.org_id AND gm.member_kind = 'group'
  JOIN mail_groups ng ON ng.group_id = gm.member_id AND ng.org_id = g.org_id
  WHERE ga.recipient_kind = 'group'
  UNION ALL
  SELECT x.address, m.forward_to
  FROM dp_mailbox_addresses x
  JOIN mailboxes m ON m.id = x.mailbox_id
  WHERE m.forward_to IS NOT NULL AND x.address = m.primary_address
    AND (m.external_forwarding = 1 OR EXISTS (SELECT 1 FROM addresses t WHERE t.address = m.forward_to AND t.org_id = m.org_id))
  UNION ALL
  SELECT x.address, x.address
  FROM dp_mailbox_addresses x
  JOIN mailboxes m ON m.id = x.mailbox_id
  WHERE m.forward_mode = 'deliver_and_forward' AND x.address = m.primary_address
    AND (m.external_forwarding = 1 OR EXISTS (SELECT 1 FROM addresses t WHERE t.address = m.forward_to AND t.org_id = m.org_id))
  UNION ALL
  SELECT x.address, m.primary_address
  FROM dp_mailbox_addresses x
  JOIN mailboxes m ON m.id = x.mailbox_id
  WHERE x.address <> m.primary_address`;

/**
 * The alias lookup's gate: `key` where an alias answer for it is possible (the address of a group, of a
 * forwarding mailbox, a mailbox's secondary address, or any address on a domain alias, `domain` being the key's
 * domain), else no row.
 * Cheap where the alias query is not: most keys are plain mailboxes' addresses, which no alias answers.
 */
export function aliasGateSql(key: string, domain: string): string {
  return `SELECT ${key} FROM addresses ka WHERE ka.address = ${key} AND (ka.recipient_kind = 'group' `
    + "OR EXISTS (SELECT 1 FROM mailboxes km WHERE km.id = ka.recipient_id AND ka.recipient_kind = 'mailbox' AND (km.forward_to IS NOT NULL OR km.primary_address <> ka.address))) "
    + `UNION ALL SELECT ${key} FROM accepted_domains kd WHERE kd.name = ${domain} AND kd.alias_of IS NOT NULL`;
}

/**
 * PostgreSQL's alias lookup behind its gate (0021; 0023 replaces it so the function carries the gate of the day:
 * the gate's text is built into the function when it is created).
 */
function gatedPgAliasFunction(): string {
  const local = "regexp_replace(k, '@[^@]*$', '')";
  const domain = "substring(k from '@([^@]*)$')";
  return `CREATE OR REPLACE FUNCTION dp_pf_alias(k text) RETURNS SETOF text LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$ DECLARE l text := ${local}; d text := ${domain}; BEGIN IF NOT EXISTS (${aliasGateSql('k', 'd')}) THEN RETURN; END IF; RETURN QUERY SELECT v.destination::text FROM dp_virtual_aliases v WHERE v.address = k; IF d IS NOT NULL THEN RETURN QUERY SELECT l || '@' || t.name FROM accepted_domains a JOIN accepted_domains t ON t.domain_id = a.alias_of JOIN dp_live_orgs o ON o.id = a.org_id WHERE a.name = d AND t.org_id = a.org_id AND (EXISTS (SELECT 1 FROM dp_mailbox_addresses x WHERE x.address = l || '@' || t.name) OR EXISTS (SELECT 1 FROM dp_virtual_aliases y WHERE y.address = l || '@' || t.name)); END IF; END $$`;
}

/**
 * A view's text with every inner JOIN made a CROSS JOIN (SQLite: the planner keeps the written order).
 * LEFT JOINs stay; so do recursive views, whose recursion SQLite drives itself.
 */
export function keyFirst(viewSql: string): string {
  if (/\bWITH\s+RECURSIVE\b/i.test(viewSql)) return viewSql;
  return viewSql.replace(/(?<!\b(?:LEFT|CROSS|INNER)\s+)\bJOIN\b/g, 'CROSS JOIN');
}

/**
 * A user's public-folder identity for Dovecot's login (the passdb that only adds fields): login, org_id and
 * acl_groups (its id and its groups, comma-separated), for the login `key` (an SQL expression). The recursion
 * starts from that one user, so a login costs its own groups, not the platform's. One line (PostgreSQL
 * function bodies are one line: runDdl splits at a semicolon ending a line).
 */
export function publicAclGroupsSql(key: string, dialect: 'sqlite' | 'postgres'): string {
  const pg = dialect === 'postgres';
  const agg = pg ? "string_agg(x.id, ',' ORDER BY x.id)" : "group_concat(x.id, ',')";
  const text = pg ? '::text' : '';
  return 'WITH RECURSIVE me AS (SELECT u.id AS user_id, u.login AS login, m.id AS mailbox_id, m.org_id AS org_id FROM users u '
    + "JOIN mailboxes m ON m.user_id = u.id AND m.org_id = u.org_id AND m.kind = 'user' AND m.state = 'active' "
    + `JOIN dp_live_orgs o ON o.id = m.org_id WHERE u.login = ${key} AND u.state = 'active' AND u.enabled = 1), `
    + "g (group_id) AS (SELECT gm.group_id FROM me JOIN mail_group_members gm ON gm.member_id = me.mailbox_id AND gm.member_kind = 'mailbox' AND gm.org_id = me.org_id "
    + "UNION SELECT gm.group_id FROM g JOIN mail_group_members gm ON gm.member_id = g.group_id AND gm.member_kind = 'group') "
    + `SELECT me.login${text} AS login, me.org_id${text} AS org_id, (SELECT ${agg} FROM (SELECT me.user_id AS id UNION SELECT g.group_id FROM g) x)${text} AS acl_groups FROM me`;
}
