/**
 * Readable output. Shapes come from the server and may grow fields, so formatting is driven by the fields
 * present (with a preferred order per resource) instead of a fixed schema: a new field shows up instead of
 * being silently dropped, and a missing one does not print an empty column.
 */

type Row = Record<string, unknown>;

/** `JSON.stringify` with two-space indentation and a newline: what `--json` prints. */
export function toJson(v: unknown): string {
  return `${JSON.stringify(v ?? null, null, 2)}\n`;
}

/** One cell: null is "-", booleans yes/no, scalar arrays comma-joined, objects compact JSON. */
export function formatValue(v: unknown): string {
  if (v === null || v === undefined || v === '') return '-';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'string') return v.replace(/[\r\n\t]+/g, ' ');
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v) && v.every((x) => x === null || typeof x !== 'object')) return v.length ? v.map(formatValue).join(', ') : '-';
  return JSON.stringify(v);
}

/** Reads a dotted path (`items.total`) out of a row. */
export function getPath(row: unknown, p: string): unknown {
  let cur: unknown = row;
  for (const k of p.split('.')) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Row)[k];
  }
  return cur;
}

/** `displayName` -> `DISPLAY NAME`, `items.total` -> `ITEMS TOTAL`. */
export function label(p: string): string {
  return p.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/\./g, ' ').toUpperCase();
}

/** The preferred columns some row has; if none match (an unknown shape), the first row's scalar fields. */
export function pickColumns(rows: Row[], preferred: string[]): string[] {
  const present = preferred.filter((c) => rows.some((r) => getPath(r, c) !== undefined));
  if (present.length > 0 || rows.length === 0) return present;
  const first = rows[0]!;
  return Object.keys(first).filter((k) => first[k] === null || typeof first[k] !== 'object').slice(0, 8);
}

/** A plain-text table, columns padded to their widest cell; the last column is not padded. */
export function formatTable(rows: Row[], preferred: string[]): string {
  if (rows.length === 0) return '(none)\n';
  const cols = pickColumns(rows, preferred);
  const cells = [cols.map(label), ...rows.map((r) => cols.map((c) => formatValue(getPath(r, c))))];
  const widths = cols.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells.map((line) => line.map((c, i) => (i === line.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

/** Flattens nested plain objects to dotted keys, one level of arrays kept as values. */
function flatten(obj: Row, prefix = '', out: [string, unknown][] = []): [string, unknown][] {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) flatten(v as Row, key, out);
    else out.push([key, v]);
  }
  return out;
}

/** `key: value` lines for one object; `first` keys lead in that order, the rest follow as sent. */
export function formatRecord(obj: unknown, first: string[] = []): string {
  if (!obj || typeof obj !== 'object') return `${formatValue(obj)}\n`;
  const entries = flatten(obj as Row);
  const rank = (k: string) => {
    const i = first.findIndex((f) => k === f || k.startsWith(`${f}.`));
    return i === -1 ? first.length : i;
  };
  const sorted = entries.map((e, i) => ({ e, i })).sort((a, b) => rank(a.e[0]) - rank(b.e[0]) || a.i - b.i).map((x) => x.e);
  if (sorted.length === 0) return '(empty)\n';
  const width = Math.max(...sorted.map(([k]) => k.length)) + 1;
  return sorted.map(([k, v]) => `${`${k}:`.padEnd(width)} ${formatValue(v)}`).join('\n') + '\n';
}

/** Preferred fields per resource: the table columns of lists and the leading lines of `show`. */
export const COLUMNS = {
  reseller: ['id', 'name', 'displayName', 'state', 'createdAt'],
  organization: ['id', 'name', 'displayName', 'resellerId', 'state', 'createdAt'],
  domain: ['id', 'name', 'unicodeName', 'createdAt'],
  user: ['id', 'login', 'displayName', 'role', 'enabled', 'state'],
  group: ['id', 'name', 'displayName', 'description'],
  member: ['userId', 'login', 'displayName'],
  token: ['id', 'name', 'role', 'resellerId', 'orgId', 'userId', 'expiresAt', 'revokedAt'],
  request: ['id', 'procedure', 'state', 'actor', 'target.id', 'createdAt', 'durationMs'],
  audit: ['at', 'actor', 'procedure', 'phase', 'outcome', 'target.id', 'requestId'],
  event: ['at', 'event', 'objectType', 'objectId', 'orgId', 'requestId'],
  mailEvent: ['at', 'event', 'login', 'data.scope', 'data.limit', 'data.max', 'mailboxId'],
  step: ['id', 'kind', 'phase', 'state', 'attempts', 'lastError', 'finishedAt'],
  orgPlan: ['id', 'name', 'displayName', 'owner', 'maxMailboxes', 'storageBytes', 'dynamicStorage', 'version'],
  mailboxPlan: ['id', 'name', 'displayName', 'owner', 'prohibitSendReceiveQuota', 'protocols', 'version'],
  subscription: ['orgId', 'orgPlanId', 'allocation', 'usage'],
  resellerPlan: ['resellerId', 'orgPlanId', 'updatedAt'],
  availablePlan: ['planId', 'name', 'displayName'],
  acceptedDomain: ['domainId', 'name', 'type', 'aliasOf'],
  mailbox: ['id', 'primaryAddress', 'kind', 'displayName', 'planId', 'enabled', 'state'],
  contact: ['id', 'displayName', 'externalAddress', 'hiddenFromAddressBook'],
  publicFolder: ['id', 'path', 'prohibitPostQuota', 'issueWarningQuota', 'mailEnabled', 'primaryAddress'],
  mailGroup: ['groupId', 'primaryAddress', 'hiddenFromAddressBook', 'sendPolicy'],
  autoReply: ['mailboxId', 'mode', 'startsAt', 'endsAt', 'externalAudience'],
  mailServer: ['id', 'name', 'state', 'lmtpEndpoint', 'imapEndpoint', 'popEndpoint', 'mailRoot'],
  mailstore: ['id', 'serverId', 'name', 'purpose', 'sharing', 'state', 'capacityBytes', 'allocatedBytes', 'chargedBytes', 'freeBytes', 'mailboxCount', 'maxMailboxes', 'ownerOrgId'],
  resources: ['orgId', 'mailboxBytes', 'publicFolderBytes', 'dynamic', 'stores'],
  storePiece: ['storeId', 'serverId', 'storeName', 'purpose', 'sharing', 'bytes', 'chargedBytes', 'mailboxCount'],
  consumer: ['orgId', 'resellerId', 'bytes', 'chargedBytes', 'mailboxCount'],
  recipient: ['id', 'orgId', 'name', 'chargedBytes', 'state'],
  move: ['mailboxId', 'storeId', 'movingFrom', 'moved'],
  orgMove: ['orgId', 'storeId', 'mailboxes', 'batchRequestId'],
} as const satisfies Record<string, readonly string[]>;

export type ResourceKind = keyof typeof COLUMNS;

/** Columns of a resource as a mutable list (the `as const` table is shared). */
export function columnsOf(kind: ResourceKind): string[] {
  return [...COLUMNS[kind]];
}
