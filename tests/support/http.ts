// A plain HTTP client for tests: what a real client sends, with the raw status and body back.
// Every answer is checked against the OpenAPI document (documented.ts); `documented: false` skips
// that for a request that means to get an answer outside it.
import { expectDocumented } from './documented.ts';

export interface Reply<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export function client(baseUrl: string, token?: string) {
  async function request<T = any>(
    method: string,
    path: string,
    opts: {
      json?: unknown;
      body?: RequestInit['body'];
      headers?: Record<string, string>;
      token?: string | null;
      /** false: do not check the answer against the OpenAPI document */
      documented?: boolean;
    } = {},
  ): Promise<Reply<T>> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    const bearer = opts.token === null ? undefined : (opts.token ?? token);
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    let body = opts.body;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    const res = await fetch(baseUrl + path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      /* not JSON: keep the text, tests assert on it */
    }
    const reply = { status: res.status, body: parsed as T, headers: res.headers };
    if (opts.documented !== false) expectDocumented(reply, method, path);
    return reply;
  }
  return {
    request,
    get: <T = any>(path: string, opts?: Parameters<typeof request>[2]) => request<T>('GET', path, opts),
    post: <T = any>(path: string, json?: unknown, opts?: Parameters<typeof request>[2]) =>
      request<T>('POST', path, { ...(opts ?? {}), ...(json === undefined ? {} : { json }) }),
    del: <T = any>(path: string, opts?: Parameters<typeof request>[2]) => request<T>('DELETE', path, opts),
    withToken: (t: string) => client(baseUrl, t),
  };
}

export type Client = ReturnType<typeof client>;
