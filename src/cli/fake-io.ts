import { Readable } from 'node:stream';
import type { Io } from './io.js';

/**
 * For unit tests only: an Io whose output is captured and whose fetch is a scripted fake API (the real
 * server is exercised end to end in test/cli.test.ts). Each handler gets the method, the path with its
 * query and the parsed body, and returns status, body and headers.
 */
export interface FakeCall {
  method: string;
  url: URL;
  body: unknown;
  headers: Record<string, string>;
}

export interface FakeAnswer {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type FakeHandler = (call: FakeCall) => FakeAnswer | undefined;

export interface FakeIo extends Io {
  calls: FakeCall[];
  output(): string;
  errors(): string;
}

export function fakeIo(opts: { api?: FakeHandler; stdin?: string; env?: Record<string, string>; stderrTTY?: boolean } = {}): FakeIo {
  let out = '';
  let err = '';
  const calls: FakeCall[] = [];
  const fetchFake = (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(String(input));
    const headers = Object.fromEntries(Object.entries((init.headers ?? {}) as Record<string, string>).map(([k, v]) => [k.toLowerCase(), v]));
    const raw = typeof init.body === 'string' ? init.body : undefined;
    const body = raw !== undefined && headers['content-type'] === 'application/json' ? JSON.parse(raw) : raw;
    const call = { method: init.method ?? 'GET', url, body, headers };
    calls.push(call);
    const a = opts.api?.(call) ?? { status: 404, body: { title: 'not found', status: 404, code: 'not_found', detail: `no fake for ${call.method} ${url.pathname}` } };
    const status = a.status ?? 200;
    const isProblem = status >= 400;
    const text = a.body === undefined ? null : typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
    return new Response(text, {
      status,
      headers: { ...(text !== null && typeof a.body !== 'string' ? { 'content-type': isProblem ? 'application/problem+json' : 'application/json' } : {}), ...a.headers },
    });
  }) as typeof fetch;
  return {
    calls,
    output: () => out,
    errors: () => err,
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s), isTTY: opts.stderrTTY ?? false },
    stdin: Readable.from([opts.stdin ?? '']),
    env: { HMC_URL: 'http://api.test:8080', HMC_TOKEN: 'hmc_test', ...opts.env },
    fetch: fetchFake,
    onStopSignal: () => () => {},
    sleep: async () => {},
    exit: () => {
      throw new Error('exit called');
    },
  };
}
