// How the CLI speaks about a function's endpoint: its URLs and who may call them. One wording for
// url, access, keys and deploy, so a newcomer reads the same sentence wherever it appears.
import type { FunctionAccess, FunctionSummary } from './api-client.ts';

/** The URLs the function answers on: the path form always, the host form when FUNCTIONS_DOMAIN is set. */
export function endpointUrls(fn: Pick<FunctionSummary, 'url' | 'hostUrl'>): { url: string; hostUrl?: string } {
  return fn.hostUrl ? { url: fn.url, hostUrl: fn.hostUrl } : { url: fn.url };
}

/** Who may call the endpoint, as a clause: "anyone can call it". */
export function describeAccess(access: FunctionAccess, name: string): string {
  const clauses: Record<FunctionAccess, string> = {
    public: 'anyone can call it',
    key: `callers need a function key, in X-Function-Key or Authorization: Bearer (see "containerpub keys create ${name}")`,
    private: 'only your own API token is accepted (Authorization: Bearer)',
  };
  return clauses[access] ?? `access "${access}"`;
}
