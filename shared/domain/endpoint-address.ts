// Where a function answers on the web, both ways: its URLs as shown to its owner, and which
// function (and version) an incoming request addresses.
//   path form  {PUBLIC_URL}/fn/{handle}/{name}[@v{N}|@{tag}]/{path}
//   host form  {name}--{handle}.{FUNCTIONS_DOMAIN}/{path}   (when FUNCTIONS_DOMAIN is set)
// A handle holds no "--" (handles.ts), so the last "--" of a host label separates name and handle.
import { HANDLE_PATTERN } from './handles.ts';
import { FUNCTION_NAME_PATTERN } from './model.ts';
import { TAG_PATTERN } from './tag-name.ts';

export const ENDPOINT_PREFIX = '/fn/';

export interface EndpointAddress {
  handle: string;
  name: string;
  /** a pinned version (@v{N}); undefined: the live one */
  version?: number;
  /** a tag (@{tag}): the version it points at */
  tag?: string;
  /** the path within the function, from its first "/" (the query is not part of it) */
  path: string;
  /** what precedes `path` in the public URL: "/fn/{handle}/{name}[@vN]" (path form) or "" (host form) */
  prefix: string;
}

const PINNED = /^(.+)@v([1-9][0-9]{0,8})$/;
/** name@tag, the tag as TAG_PATTERN has it (a tag never looks like a pin, which PINNED takes first) */
const TAGGED = new RegExp(`^(.+)@(${TAG_PATTERN.source.replace(/^\^|\$$/g, '')})$`);

/** The function a path-form URL addresses; null when the path is not a well-formed endpoint path. */
export function parseEndpointPath(pathname: string): EndpointAddress | null {
  if (!pathname.startsWith(ENDPOINT_PREFIX)) return null;
  const afterPrefix = pathname.slice(ENDPOINT_PREFIX.length);
  const slash1 = afterPrefix.indexOf('/');
  if (slash1 <= 0) return null;
  const handle = afterPrefix.slice(0, slash1).toLowerCase();
  const tail = afterPrefix.slice(slash1 + 1);
  const slash2 = tail.indexOf('/');
  let segment = slash2 === -1 ? tail : tail.slice(0, slash2);
  const path = slash2 === -1 ? '/' : tail.slice(slash2);
  const prefix = `${ENDPOINT_PREFIX}${afterPrefix.slice(0, slash1)}/${segment}`;
  let version: number | undefined;
  let tag: string | undefined;
  const pinned = PINNED.exec(segment);
  const tagged = pinned ? null : TAGGED.exec(segment);
  if (pinned) {
    segment = pinned[1]!;
    version = Number(pinned[2]);
  } else if (tagged) {
    // v + digits is a pin or nothing (@v0 is no version, and no tag may look like a pin)
    if (/^v[0-9]+$/.test(tagged[2]!)) return null;
    segment = tagged[1]!;
    tag = tagged[2]!;
  }
  const name = segment.toLowerCase();
  if (!HANDLE_PATTERN.test(handle) || !FUNCTION_NAME_PATTERN.test(name)) return null;
  return { handle, name, version, ...(tag !== undefined ? { tag } : {}), path, prefix };
}

/** The function a host-form Host header addresses under `domain`; null when it addresses none. */
export function parseEndpointHost(hostHeader: string | undefined, domain: string): { handle: string; name: string } | null {
  if (!hostHeader) return null;
  const host = hostHeader.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
  if (!host.endsWith(`.${domain}`)) return null;
  const label = host.slice(0, host.length - domain.length - 1);
  const split = label.lastIndexOf('--');
  if (label.includes('.') || split <= 0) return null;
  const name = label.slice(0, split);
  const handle = label.slice(split + 2);
  if (!HANDLE_PATTERN.test(handle) || !FUNCTION_NAME_PATTERN.test(name)) return null;
  return { handle, name };
}

export interface UrlBase {
  /** PUBLIC_URL, else the origin the API was reached at */
  origin: string;
  functionsDomain?: string;
}

export interface FunctionUrls {
  url: string;
  /** the host form, when FUNCTIONS_DOMAIN is set */
  hostUrl?: string;
}

export function functionUrls(base: UrlBase, handle: string, name: string): FunctionUrls {
  const url = `${base.origin}${ENDPOINT_PREFIX}${handle}/${name}`;
  if (!base.functionsDomain) return { url };
  const origin = new URL(base.origin);
  return { url, hostUrl: `${origin.protocol}//${name}--${handle}.${base.functionsDomain}${origin.port ? `:${origin.port}` : ''}` };
}
