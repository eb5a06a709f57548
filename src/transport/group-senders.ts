import { sql, type RawBuilder } from 'kysely';
import type { SendPolicy } from '../mail/groups-model.js';
import type { Db } from '../store/db.js';

/**
 * Who may send to a distribution group, decided in the mail path (issue 6 item 3) by the Postfix policy service
 * (dataplane/policy.ts) when a recipient is one of the group's addresses. The group's send policy
 * (mail/groups-model.ts SEND_POLICIES) is Exchange's delivery restriction:
 *
 * - `anyone`: everybody, the Internet included.
 * - `organization` (the default): only authenticated senders of the group's own organization, the way Exchange's
 *   "require that all senders are authenticated" works. Mail from the MX is unauthenticated and refused, whatever
 *   its envelope sender claims (a forged MAIL FROM on the organization's own domain included).
 * - `listed`: only the group's listed senders (group_senders): an authenticated login whose mailbox is listed, or
 *   is a member (directly or through nested groups) of a listed group; or, from the MX, an envelope sender equal to
 *   the external address of a listed contact (or of a contact in a listed group). That last one is only as good as
 *   MAIL FROM, as in Exchange without authentication: it lets partners write to a list, it does not prove who they are.
 *
 * Everything is read within the group's organization (org_id on every join), so an authenticated sender of another
 * organization is refused by `organization` and `listed` alike, and a listing cannot name another tenant's objects.
 * A refusal is `550 5.7.1` at RCPT: permanent, the sender is told at once, nothing is queued to bounce.
 *
 * Not decided here: groups nested in the addressed group. Postfix expands them after RCPT (virtual_alias_maps in
 * cleanup), so only the addressed group's rule applies to a message; a member group's own rule does not filter its
 * share of the message (Exchange checks it during expansion). Expansion itself never leaves the organization
 * (dp_virtual_aliases joins members on the group's org_id).
 */

export interface MailGroup {
  groupId: string;
  orgId: string;
  sendPolicy: SendPolicy;
}

/** Who is sending: the authenticated login's mailbox (null on the MX) and the envelope sender. */
export interface GroupSender {
  mailbox: { id: string; orgId: string } | null;
  envelopeSender: string;
}

/** The mail-enabled group `groupId` of a live organization (active under an active reseller), or null. */
export async function liveMailGroup(db: Db, groupId: string): Promise<MailGroup | null> {
  const r = await db.selectFrom('mail_groups as g')
    .innerJoin('dp_live_orgs as o', 'o.id', 'g.org_id')
    .select(['g.group_id', 'g.org_id', 'g.send_policy'])
    .where('g.group_id', '=', groupId)
    .executeTakeFirst();
  return r ? { groupId: r.group_id, orgId: r.org_id, sendPolicy: r.send_policy } : null;
}

/** Whether `sender` may send to `group`; `listed` costs one query, the other policies none. */
export async function maySendToGroup(db: Db, group: MailGroup, sender: GroupSender): Promise<boolean> {
  const own = sender.mailbox !== null && sender.mailbox.orgId === group.orgId;
  switch (group.sendPolicy) {
    case 'anyone':
      return true;
    case 'organization':
      return own;
    case 'listed':
      if (sender.mailbox) return own && isListed(db, group, sql`SELECT CAST(${sender.mailbox.id} AS TEXT) AS id`);
      if (!sender.envelopeSender) return false; // the null sender (bounces) is nobody's listed address
      // contacts are unique per (org_id, external_address): the anchor is at most one row, found on that index
      return isListed(db, group, sql`SELECT c.id AS id FROM contacts c WHERE c.org_id = ${group.orgId} AND c.external_address = ${sender.envelopeSender}`);
    default:
      return false; // a policy this code does not know refuses: the safe side
  }
}

/**
 * True when the recipient(s) `anchor` selects (a mailbox id, or a contact's id) are listed senders of the group,
 * directly or as members of a listed group. The recursion climbs from the sender to the groups it is in, so it
 * costs the sender's own memberships (mail_group_members_member index), not the size of the listed groups.
 */
async function isListed(db: Db, group: MailGroup, anchor: RawBuilder<unknown>): Promise<boolean> {
  const org = group.orgId;
  const r = await sql<{ one: number }>`
    WITH RECURSIVE anchor (id) AS (${anchor}),
    up (id) AS (
      SELECT gm.group_id FROM mail_group_members gm JOIN anchor a ON gm.member_id = a.id WHERE gm.org_id = ${org}
      UNION
      SELECT gm.group_id FROM up JOIN mail_group_members gm ON gm.member_id = up.id WHERE gm.member_kind = 'group' AND gm.org_id = ${org}
    )
    SELECT 1 AS one FROM group_senders s
    WHERE s.group_id = ${group.groupId} AND s.org_id = ${org} AND (s.sender_id IN (SELECT id FROM anchor) OR s.sender_id IN (SELECT id FROM up))
    LIMIT 1`.execute(db);
  return r.rows.length > 0;
}
