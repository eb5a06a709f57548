import { newId } from '../core/ids.js';
import type { Principal } from '../core/tenancy.js';
import { insertRow } from '../store/compiled.js';
import type { Db } from '../store/db.js';
import type { TargetSpec } from './procedure.js';

export interface AuditEntry {
  requestId: string;
  principal: Principal;
  procedure: string;
  /** execute: the procedure ran; compensate: its undo ran; complete: the request became terminal. */
  phase: 'execute' | 'compensate' | 'complete';
  outcome: string;
  target: TargetSpec | null;
  /** Already redacted. */
  input: unknown;
  before: unknown;
  after: unknown;
  error: unknown;
  durationMs: number;
  now: number;
}

/** JSON text for a nullable TEXT column; undefined is stored as NULL. */
export const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));

/**
 * Append one audit entry in the caller's transaction (the table refuses updates and deletes). Every
 * request writes one or two, so the INSERT skips Kysely's builder (store/compiled.ts).
 */
export async function appendAudit(tx: Db, e: AuditEntry): Promise<void> {
  const row = {
    id: newId('audit'),
    request_id: e.requestId,
    at: e.now,
    actor: e.principal.actor,
    token_id: e.principal.tokenId,
    caller_role: e.principal.role,
    reseller_id: e.target?.resellerId ?? null,
    org_id: e.target?.orgId ?? null,
    procedure: e.procedure,
    phase: e.phase,
    outcome: e.outcome,
    target_type: e.target?.type ?? null,
    target_id: e.target?.id ?? null,
    input: json(e.input),
    before: json(e.before),
    after: json(e.after),
    error: json(e.error ?? undefined),
    duration_ms: Math.round(e.durationMs),
  };
  await insertRow(tx, 'audit_log', row);
}
