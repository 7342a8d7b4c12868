// A function: its header (URL, live version, candidate, access) and five tabs. The page holds one
// event stream; activations, rollbacks and traffic changes it hears reload the header, so the
// live version shown is the live version now, whoever changed it.
import { html, useEffect, useMemo, useState } from '/ui/vendor/htm-preact.js';
import { api, fnPath } from './api.js';
import { FunctionStream } from './stream.js';
import { ErrorBanner, StatusBadge, Tabs, useLoad } from './ui.js';
import { History } from './history.js';
import { Traffic } from './traffic.js';
import { Metrics } from './metrics.js';
import { Live } from './live.js';
import { Configuration } from './configuration.js';

const TABS = [
  { id: 'history', label: 'History' },
  { id: 'traffic', label: 'Traffic' },
  { id: 'metrics', label: 'Metrics' },
  { id: 'live', label: 'Live' },
  { id: 'config', label: 'Configuration' },
];

/** events after which what the header shows may have changed */
const HEADER_EVENTS = new Set([
  'activated', 'rolled_back', 'traffic_changed', 'promoted', 'approved', 'build_failed', 'build_succeeded',
  'canary_started', 'canary_advanced', 'canary_promoted', 'canary_rolled_back', 'canary_aborted', 'awaiting_approval',
]);

export function FunctionPage({ name, tab }) {
  const fn = useLoad(() => api('GET', fnPath(name)), [name]);
  const stream = useMemo(() => new FunctionStream(name), [name]);
  const [connected, setConnected] = useState(false);
  /** bumped on every change heard: tabs that show state re-read it */
  const [changes, setChanges] = useState(0);

  useEffect(() => {
    stream.open();
    const offStatus = stream.onStatus(setConnected);
    const off = stream.subscribe((type) => {
      if (HEADER_EVENTS.has(type)) {
        fn.reload();
        setChanges((n) => n + 1);
      }
    });
    return () => {
      off();
      offStatus();
      stream.close();
    };
  }, [stream]);

  if (fn.error && !fn.data) {
    return html`<h1>${name}</h1><${ErrorBanner} error=${fn.error} /><p><a href="#/">Back to the functions</a></p>`;
  }
  if (!fn.data) return html`<h1>${name}</h1><p class="loading">Loading…</p>`;
  const f = fn.data;
  const candidate = f.traffic.find((t) => t.role === 'candidate') ?? null;
  const live = f.traffic.find((t) => t.role === 'live');
  const shared = { f, name, stream, changes, reloadFunction: fn.reload, candidate };

  return html`
    <div class="fn-head">
      <h1>${f.name}</h1>
      <dl class="facts">
        <div><dt>Live version</dt><dd data-testid="live-version">${f.activeVersion ? `v${f.activeVersion}` : 'none yet'}${live && candidate ? ` (${live.percent} %)` : ''}</dd></div>
        ${candidate ? html`<div><dt>Candidate</dt><dd data-testid="candidate">v${candidate.version} (${candidate.percent} %)</dd></div>` : null}
        <div><dt>Status</dt><dd><${StatusBadge} status=${f.status} label=${f.status} /></dd></div>
        <div><dt>Access</dt><dd>${f.access}</dd></div>
        <div class="wide"><dt>URL</dt><dd><a href=${f.url} target="_blank" rel="noopener">${f.url}</a>${f.hostUrl ? html`<br /><a href=${f.hostUrl} target="_blank" rel="noopener">${f.hostUrl}</a>` : null}</dd></div>
      </dl>
      <p class=${`stream-state ${connected ? 'on' : 'off'}`} aria-live="polite">${connected ? '● live updates' : '○ reconnecting to live updates…'}</p>
    </div>
    <${ErrorBanner} error=${fn.error} />
    <${Tabs} label="Function sections" tabs=${TABS} current=${tab} hrefOf=${(id) => `#/f/${encodeURIComponent(name)}/${id}`} />
    <section class="tab-panel" aria-labelledby=${`tab-${tab}`}>
      ${tab === 'traffic'
        ? html`<${Traffic} ...${shared} />`
        : tab === 'metrics'
          ? html`<${Metrics} ...${shared} />`
          : tab === 'live'
            ? html`<${Live} ...${shared} />`
            : tab === 'config'
              ? html`<${Configuration} ...${shared} />`
              : html`<${History} ...${shared} />`}
    </section>
  `;
}
