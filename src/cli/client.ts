import { CliError, EXIT_SERVER, toProblem, UsageError } from './errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';
/** Header carrying the id of the request a mutation created (for `hmc request show`). */
export const REQUEST_ID_HEADER = 'hmc-request-id';
/** Header carrying that request's state when the answer was sent (`running` on a 202). */
export const REQUEST_STATE_HEADER = 'hmc-request-state';

export type Query = Record<string, string | number | boolean | undefined | null>;

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
  /** The `HMC-Request-Id` header, when the call created or replayed a request. */
  requestId: string | null;
}

export interface SendOptions {
  query?: Query;
  /** A JSON body. */
  json?: unknown;
  /** A body sent as is (CSV import). */
  raw?: { data: string; contentType: string };
  headers?: Record<string, string>;
}

export interface ClientOptions {
  url: string;
  token: string;
  fetch?: typeof fetch;
  /** Per call; generous because mutations wait (`?wait=true`) for their back-end jobs. */
  timeoutMs?: number;
}

/** Path with every interpolated value encoded as one segment: path`/organizations/${id}/users`. */
export function path(strings: TemplateStringsArray, ...values: (string | number)[]): string {
  return strings.reduce((acc, s, i) => acc + s + (i < values.length ? encodeURIComponent(String(values[i])) : ''), '');
}

/** The HMC API over HTTP. Every non-2xx answer becomes a CliError carrying the problem. */
export class ApiClient {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;

  constructor(opts: ClientOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new UsageError(`invalid server URL "${opts.url}"`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`server URL must be http or https, got "${opts.url}"`);
    // accept both http://host:8080 and http://host:8080/api/v1 (what people copy from the docs)
    this.baseUrl = u.href.replace(/\/+$/, '').replace(/\/api\/v1$/, '');
    this.token = opts.token;
    this.fetchFn = opts.fetch ?? globalThis.fetch;
    this.timeoutMs = opts.timeoutMs ?? 300_000;
  }

  get<T = unknown>(p: string, query?: Query): Promise<ApiResponse<T>> {
    return this.send<T>('GET', p, { query });
  }

  post<T = unknown>(p: string, json?: unknown, query?: Query): Promise<ApiResponse<T>> {
    return this.send<T>('POST', p, { json, query });
  }

  put<T = unknown>(p: string, json?: unknown, query?: Query): Promise<ApiResponse<T>> {
    return this.send<T>('PUT', p, { json, query });
  }

  patch<T = unknown>(p: string, json?: unknown, query?: Query): Promise<ApiResponse<T>> {
    return this.send<T>('PATCH', p, { json, query });
  }

  delete<T = unknown>(p: string, query?: Query): Promise<ApiResponse<T>> {
    return this.send<T>('DELETE', p, { query });
  }

  /** Full URL of an API path with its query (undefined and null values are left out). */
  url(p: string, query: Query = {}): string {
    const u = new URL(`${this.baseUrl}/api/v1${p}`);
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) u.searchParams.set(k, String(v));
    return u.href;
  }

  async send<T = unknown>(method: string, p: string, opts: SendOptions = {}): Promise<ApiResponse<T>> {
    const url = this.url(p, opts.query);
    const headers: Record<string, string> = {
      ...opts.headers,
      authorization: `Bearer ${this.token}`,
      accept: 'application/json, application/problem+json',
    };
    let body: string | undefined;
    if (opts.raw) {
      headers['content-type'] = opts.raw.contentType;
      body = opts.raw.data;
    } else if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    let res: Response;
    let text: string;
    try {
      res = await this.fetchFn(url, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
      text = await res.text();
    } catch (e) {
      throw networkError(e, `${method} ${url}`, this.timeoutMs);
    }
    const parsed = parseBody(text, res.headers.get('content-type'), res.status);
    if (!res.ok) throw CliError.fromProblem(res.status, toProblem(parsed, res.status, res.statusText), parsed);
    return { status: res.status, body: parsed as T, headers: res.headers, requestId: res.headers.get(REQUEST_ID_HEADER) };
  }
}

function parseBody(text: string, contentType: string | null, status: number): unknown {
  if (text === '') return undefined;
  if (!contentType || !/json/i.test(contentType)) return text;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CliError(`the server sent invalid JSON (HTTP ${status})`, { exitCode: EXIT_SERVER, cause: e });
  }
}

/** fetch hides the useful part (ECONNREFUSED, ENOTFOUND) in `cause`; surface it. */
function networkError(e: unknown, what: string, timeoutMs: number): CliError {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError') return new CliError(`${what}: no answer within ${timeoutMs / 1000} s`, { exitCode: EXIT_SERVER, cause: e });
  const reason = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e);
  return new CliError(`cannot reach the server (${what}): ${reason}`, { exitCode: EXIT_SERVER, cause: e });
}
