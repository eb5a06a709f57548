import { path, type ApiClient } from './client.js';
import { CliError, EXIT_CLIENT, EXIT_SERVER, formatProblem, type Problem } from './errors.js';
import type { Io } from './io.js';

/** The parts of the API's RequestView the CLI acts on; the rest is printed as sent. */
export interface RequestView {
  id: string;
  state: string;
  procedure?: string;
  error?: { code?: string; kind?: string; message?: string } | null;
  /** Counts in the full view; the import's 202 envelope sends only the total as a number. */
  items?: ItemCounts | number;
  [k: string]: unknown;
}

export interface ItemCounts {
  total: number;
  done: number;
  failed: number;
}

/** The item counts of a full view, if it has them. */
export function itemCounts(r: RequestView): ItemCounts | undefined {
  return r.items !== null && typeof r.items === 'object' ? r.items : undefined;
}

export interface RequestItem {
  seq: number;
  state: string;
  input?: Record<string, unknown> | null;
  result?: unknown;
  error?: { code?: string; kind?: string; message?: string } | null;
}

/** How often a running request is polled: a 1,000-row import shows movement without flooding the server. */
export const POLL_MS = 250;

const TERMINAL = new Set(['succeeded', 'failed']);

export function isTerminal(state: string): boolean {
  return TERMINAL.has(state);
}

/** Checks an answer is a RequestView before the CLI relies on its fields. */
export function asRequest(v: unknown): RequestView {
  const r = v as RequestView | null;
  if (!r || typeof r !== 'object' || typeof r.id !== 'string' || typeof r.state !== 'string') {
    throw new CliError('the server answered with something that is not a request', { exitCode: EXIT_SERVER });
  }
  return r;
}

/** `{ request: RequestView }` envelopes (202 answers) hold the request; otherwise undefined. */
export function requestOf(body: unknown): RequestView | undefined {
  const r = (body as { request?: unknown } | null)?.request;
  return r && typeof r === 'object' && typeof (r as RequestView).id === 'string' ? asRequest(r) : undefined;
}

/** Polls a request until it is terminal, reporting each view (progress bars). */
export async function waitForRequest(api: ApiClient, io: Io, id: string, onView?: (r: RequestView) => void): Promise<RequestView> {
  for (;;) {
    const view = asRequest((await api.get(path`/requests/${id}`)).body);
    onView?.(view);
    if (isTerminal(view.state)) return view;
    await io.sleep(POLL_MS);
  }
}

/** A failed request as an error: internal/unavailable ones are the server's fault (exit 2), the rest the caller's. */
export function requestFailure(r: RequestView): CliError {
  const e = r.error ?? {};
  const exitCode = e.kind === 'internal' || e.kind === 'unavailable' ? EXIT_SERVER : EXIT_CLIENT;
  const problem: Problem = { title: `request ${r.id} failed`, ...(e.message ? { detail: e.message } : {}), ...(e.code ? { code: e.code } : {}) };
  return new CliError(formatProblem(problem), { exitCode, problem });
}

/** Every item of a batch request, following `next` cursors. */
export async function fetchItems(api: ApiClient, id: string): Promise<RequestItem[]> {
  const items: RequestItem[] = [];
  let cursor: string | null = null;
  do {
    const page = (await api.get(path`/requests/${id}/items`, { limit: 1000, cursor })).body as { items?: unknown; next?: unknown };
    if (!page || !Array.isArray(page.items)) throw new CliError('the server answered the items list without items', { exitCode: EXIT_SERVER });
    items.push(...(page.items as RequestItem[]));
    cursor = typeof page.next === 'string' && page.next !== '' ? page.next : null;
  } while (cursor);
  return items;
}
