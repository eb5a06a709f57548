/**
 * One registry of error codes. A code is persisted in clients' scripts and in request records:
 * never rename one, add a new one. HTTP mapping happens only in src/api/problem.ts.
 */
export type ErrorKind =
  | 'invalid'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'limit'
  | 'unavailable'
  | 'internal';

export interface FieldError {
  path: string;
  message: string;
}

/** The only error type that crosses layers. `code` is stable, `kind` decides the HTTP status. */
export class HmcError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  readonly errors: FieldError[] | undefined;
  /** Retryable errors (timeouts, back end down) make a job try again; anything else is permanent. */
  readonly retryable: boolean;

  constructor(
    code: string,
    kind: ErrorKind,
    message: string,
    opts: { cause?: unknown; errors?: FieldError[]; retryable?: boolean } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'HmcError';
    this.code = code;
    this.kind = kind;
    this.errors = opts.errors;
    this.retryable = opts.retryable ?? kind === 'unavailable';
  }

  toJSON(): { code: string; kind: ErrorKind; message: string; errors?: FieldError[] } {
    return { code: this.code, kind: this.kind, message: this.message, ...(this.errors ? { errors: this.errors } : {}) };
  }
}

function define(code: string, kind: ErrorKind) {
  const make = (message: string, opts?: { cause?: unknown; errors?: FieldError[]; retryable?: boolean }) =>
    new HmcError(code, kind, message, opts);
  return Object.assign(make, { code, kind });
}

/** Every error code HMC emits. */
export const Errors = {
  invalidRequest: define('invalid_request', 'invalid'),
  invalidName: define('invalid_name', 'invalid'),
  invalidDomain: define('invalid_domain', 'invalid'),
  invalidAddress: define('invalid_address', 'invalid'),
  invalidCursor: define('invalid_cursor', 'invalid'),
  invalidPasswordHash: define('invalid_password_hash', 'invalid'),
  passwordTooShort: define('password_too_short', 'invalid'),
  passwordTooLong: define('password_too_long', 'invalid'),
  domainNotInOrganization: define('domain_not_in_organization', 'invalid'),
  invalidCsv: define('invalid_csv', 'invalid'),
  unauthorized: define('unauthorized', 'unauthorized'),
  forbidden: define('forbidden', 'forbidden'),
  roleNotGrantable: define('role_not_grantable', 'forbidden'),
  notFound: define('not_found', 'not_found'),
  nameTaken: define('name_taken', 'conflict'),
  domainTaken: define('domain_taken', 'conflict'),
  addressTaken: define('address_taken', 'conflict'),
  organizationHasUsers: define('organization_has_users', 'conflict'),
  organizationHasMailboxes: define('organization_has_mailboxes', 'conflict'),
  resellerHasOrganizations: define('reseller_has_organizations', 'conflict'),
  domainInUse: define('domain_in_use', 'conflict'),
  stateConflict: define('state_conflict', 'conflict'),
  idempotencyKeyReused: define('idempotency_key_reused', 'conflict'),
  memberNotInOrganization: define('member_not_in_organization', 'invalid'),
  tooManyItems: define('too_many_items', 'limit'),
  // Hosted Email and plans. The first three codes are named by the Hosted Email issue in upper case; kept as named.
  planLimit: define('PLAN_LIMIT', 'limit'),
  storageLimit: define('STORAGE_LIMIT', 'limit'),
  quotaOrder: define('QUOTA_ORDER', 'invalid'),
  resellerPlanExceeded: define('reseller_plan_exceeded', 'limit'),
  noResellerPlan: define('no_reseller_plan', 'conflict'),
  notSubscribed: define('not_subscribed', 'conflict'),
  planNotAvailable: define('plan_not_available', 'invalid'),
  planInUse: define('plan_in_use', 'conflict'),
  featureDisabled: define('feature_disabled', 'forbidden'),
  domainNotAccepted: define('domain_not_accepted', 'invalid'),
  domainIsAlias: define('domain_is_alias', 'invalid'),
  addressQuarantined: define('address_quarantined', 'conflict'),
  recipientNotInOrganization: define('recipient_not_in_organization', 'invalid'),
  groupCycle: define('group_cycle', 'invalid'),
  externalForwardingNotAllowed: define('external_forwarding_not_allowed', 'forbidden'),
  // Resource Manager placement (src/resources/algorithms.ts throws them as PlacementError)
  dedicatedStoreHeld: define('dedicated_store_held', 'conflict'),
  shrinkNeedsSources: define('shrink_needs_sources', 'invalid'),
  invalidSources: define('invalid_sources', 'invalid'),
  userHasMailbox: define('user_has_mailbox', 'conflict'),
  groupNotMailEnabled: define('group_not_mail_enabled', 'conflict'),
  folderHasSubfolders: define('folder_has_subfolders', 'conflict'),
  invalidSchedule: define('invalid_schedule', 'invalid'),
  // Resource manager
  invalidEndpoint: define('invalid_endpoint', 'invalid'),
  invalidPath: define('invalid_path', 'invalid'),
  capacityBelowAllocated: define('capacity_below_allocated', 'limit'),
  storeInUse: define('store_in_use', 'conflict'),
  serverHasStores: define('server_has_stores', 'conflict'),
  // the data plane (a mail server this host does not manage, or its Dovecot not answering)
  dataplaneNotManaged: define('dataplane_not_managed', 'conflict'),
  dataplaneUnavailable: define('dataplane_unavailable', 'unavailable'),
  unavailable: define('unavailable', 'unavailable'),
  backendFailed: define('backend_failed', 'internal'),
  internal: define('internal_error', 'internal'),
} as const;

export function isHmcError(e: unknown): e is HmcError {
  return e instanceof HmcError;
}
