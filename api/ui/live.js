// Invocations and events as they happen: the recent ones first (two reads), then the page's event
// stream. Filters by version and outcome. The list is bounded: a flood of invocations keeps the
// newest MAX_ITEMS and the page stays responsive.
import { html, useEffect, useState } from '/ui/vendor/htm-preact.js';
import { api, errorText, fnPath } from './api.js';
import { ms, when } from './format.js';
import { ErrorBanner } from './ui.js';

const MAX_ITEMS = 500;
const OUTCOMES = ['ok', 'error', 'timeout', 'crashed', 'aborted'];

const itemOfInvocation = (inv) => ({ key: `i${inv.id}`, kind: 'invocation', at: inv.createdAt, version: inv.version, outcome: inv.outcome, data: inv });
const itemOfEvent = (ev) => ({ key: `e${ev.id}`, kind: 'event', at: ev.createdAt, version: ev.version, outcome: null, data: ev });

function merge(old, added) {
  const seen = new Set(old.map((i) => i.key));
  const fresh = added.filter((i) => !seen.has(i.key));
  if (fresh.length === 0) return old;
  return [...fresh, ...old].sort((a, b) => (b.at ?? '').localeCompare(a.at ?? '') || b.key.localeCompare(a.key)).slice(0, MAX_ITEMS);
}

export function Live({ f, name, stream }) {
  const [items, setItems] = useState([]);
  const [error, setError] = useState(null);
  const [version, setVersion] = useState('');
  const [outcome, setOutcome] = useState('');
  const [showEvents, setShowEvents] = useState(true);

  useEffect(() => {
    // subscribe first: what arrives while the recent ones load is merged, not lost
    const off = stream.subscribe((type, data) => {
      if (type === 'build_log') return;
      setItems((old) => merge(old, [type === 'invocation' ? itemOfInvocation(data) : itemOfEvent(data)]));
    });
    Promise.all([api('GET', fnPath(name, '/invocations?limit=50')), api('GET', fnPath(name, '/logs?limit=50'))]).then(
      ([inv, logs]) => setItems((old) => merge(old, [...inv.invocations.map(itemOfInvocation), ...logs.logs.map(itemOfEvent)])),
      setError,
    );
    return off;
  }, [name, stream]);

  const versions = [...new Set(items.map((i) => i.version).filter((v) => v !== null))].sort((a, b) => b - a);
  const shown = items.filter(
    (i) =>
      (version === '' || String(i.version) === version) &&
      (outcome === '' ? showEvents || i.kind === 'invocation' : i.kind === 'invocation' && i.outcome === outcome),
  );

  return html`
    <${Invoke} name=${name} />
    <form class="row filters" aria-label="Filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Version
        <select value=${version} onChange=${(e) => setVersion(e.target.value)}>
          <option value="">all</option>
          ${versions.map((v) => html`<option value=${String(v)}>v${v}${v === f.activeVersion ? ' (live)' : ''}</option>`)}
        </select>
      </label>
      <label>Outcome
        <select value=${outcome} onChange=${(e) => setOutcome(e.target.value)}>
          <option value="">all</option>
          ${OUTCOMES.map((o) => html`<option value=${o}>${o}</option>`)}
        </select>
      </label>
      <label class="check"><input type="checkbox" checked=${showEvents} onChange=${(e) => setShowEvents(e.target.checked)} /> Platform events</label>
    </form>
    <${ErrorBanner} error=${error} />
    <p class="muted">${shown.length} of the last ${items.length} shown, newest first.</p>
    <ol class="feed" aria-label="Invocations and events, newest first" aria-live="polite" aria-relevant="additions">
      ${shown.map((i) => (i.kind === 'invocation' ? html`<${InvocationItem} key=${i.key} inv=${i.data} />` : html`<${EventItem} key=${i.key} ev=${i.data} />`))}
    </ol>
  `;
}

function InvocationItem({ inv }) {
  const what = inv.method ? `${inv.method} ${inv.path ?? '/'} → ${inv.status ?? '—'}` : 'invoke';
  return html`
    <li class="feed-item invocation" data-outcome=${inv.outcome}>
      <div class="feed-head">
        <time>${when(inv.createdAt)}</time>
        <span class="badge">v${inv.version}</span>
        <span class=${`badge outcome outcome-${inv.outcome}`}>${inv.outcome}</span>
        <span>${what}</span>
        <span class="muted">${ms(inv.durationMs)}</span>
        <code class="muted rid" title="request id">${inv.requestId}</code>
      </div>
      ${inv.error ? html`<p class="error-text">${inv.error}</p>` : null}
      ${inv.logs ? html`<pre class="log" tabindex="0" aria-label="What it printed">${inv.logs}</pre>` : null}
    </li>
  `;
}

function EventItem({ ev }) {
  return html`
    <li class="feed-item event">
      <div class="feed-head">
        <time>${when(ev.createdAt)}</time>
        ${ev.version !== null ? html`<span class="badge">v${ev.version}</span>` : null}
        <span class="badge event-name">${ev.event.replaceAll('_', ' ')}</span>
        <span>${ev.message}</span>
      </div>
    </li>
  `;
}

/** Runs the function with a JSON event, as POST …/invoke does, and shows the answer. */
function Invoke({ name }) {
  const [payload, setPayload] = useState('{}');
  const [answer, setAnswer] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setAnswer(await api('POST', fnPath(name, '/invoke'), { jsonText: payload }));
    } catch (err) {
      setAnswer(null);
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return html`
    <details class="card invoke" open>
      <summary>Invoke</summary>
      <form onSubmit=${submit}>
        <label>Event (JSON) <textarea rows="3" spellcheck="false" value=${payload} onInput=${(e) => setPayload(e.target.value)}></textarea></label>
        <button type="submit" disabled=${busy}>${busy ? 'Running…' : 'Invoke'}</button>
      </form>
      <${ErrorBanner} error=${error} />
      ${answer
        ? html`<div class="answer" role="status">
            <p>v${answer.version} answered in ${ms(answer.durationMs)} <code class="muted">${answer.requestId}</code></p>
            <pre class="log" tabindex="0" aria-label="Result">${JSON.stringify(answer.result, null, 2)}</pre>
          </div>`
        : null}
    </details>
  `;
}
