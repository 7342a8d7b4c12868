// Traffic: the candidate and its share, promote and clear, tags, and canaries — a running one's
// progress step by step, with the figures each step was judged on, and the figures that made a
// rolled-back one roll back.
import { html, useEffect, useState } from '/ui/vendor/htm-preact.js';
import { api, ApiError, fnPath } from './api.js';
import { ms, percent, when } from './format.js';
import { ErrorBanner, Notice } from './ui.js';

export function Traffic({ f, name, changes, reloadFunction, candidate }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);

  const load = async () => {
    try {
      const [history, tags, canary] = await Promise.all([
        api('GET', fnPath(name, '/deployments?limit=100')),
        api('GET', fnPath(name, '/tags')),
        api('GET', fnPath(name, '/canary')).catch((err) => {
          if (err instanceof ApiError && err.status === 404) return null;
          throw err;
        }),
      ]);
      const events = canary ? (await api('GET', fnPath(name, `/logs?limit=200&version=${canary.version}`))).logs : [];
      setData({ built: history.deployments.filter((d) => d.status === 'active'), tags: tags.tags, canary, events });
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    load();
  }, [name, changes]);

  /** runs a change, shows its outcome in words, and re-reads what it changed */
  const act = async (what, fn) => {
    setNotice(null);
    setError(null);
    try {
      await fn();
      setNotice(what);
      reloadFunction();
      await load();
    } catch (err) {
      setError(err);
    }
  };

  const live = f.traffic.find((t) => t.role === 'live');
  return html`
    <${Notice} text=${notice} />
    <${ErrorBanner} error=${error} />
    <section class="card" aria-labelledby="split-h">
      <h2 id="split-h">Traffic split</h2>
      ${f.activeVersion === null ? html`<p>No version is live yet.</p>` : null}
      <div class="split" role="img" aria-label=${split(f)}>
        ${f.traffic.map((t) => html`<span class=${`share ${t.role}`} style=${{ flexGrow: Math.max(t.percent, 1) }}>v${t.version} · ${t.percent} %</span>`)}
      </div>
      <p>${split(f)}${f.sticky ? ' Sticky: a caller keeps its version (X-Traffic-Key or the cp_traffic cookie).' : ''}</p>
      ${candidate
        ? html`<div class="row">
            <button type="button" onClick=${() => act(`v${candidate.version} is now live.`, () => api('POST', fnPath(name, '/promote')))}>Promote v${candidate.version}</button>
            <button type="button" class="secondary" onClick=${() => act(`Candidate cleared: v${live?.version ?? f.activeVersion} takes all traffic.`, () => api('DELETE', fnPath(name, '/traffic')))}>Clear candidate</button>
          </div>`
        : null}
      ${data && f.activeVersion !== null
        ? html`<${CandidateForm} key=${candidate ? `${candidate.version}-${candidate.percent}` : 'none'} f=${f} built=${data.built} candidate=${candidate}
            onSubmit=${(version, pct, sticky) =>
              act(`v${version} now takes ${pct} % of the traffic.`, () => api('PUT', fnPath(name, '/traffic'), { json: { candidate: { version, percent: pct }, sticky } }))} />`
        : null}
    </section>
    ${data ? html`<${CanarySection} name=${name} f=${f} data=${data} act=${act} />` : null}
    ${data ? html`<${TagsSection} name=${name} data=${data} act=${act} />` : null}
  `;
}

function split(f) {
  return f.traffic.map((t) => `v${t.version} (${t.role}) takes ${t.percent} %.`).join(' ');
}

function CandidateForm({ f, built, candidate, onSubmit }) {
  const choices = built.filter((d) => d.version !== f.activeVersion);
  const [version, setVersion] = useState(String(candidate?.version ?? choices[0]?.version ?? ''));
  const [pct, setPct] = useState(candidate?.percent ?? 5);
  const [sticky, setSticky] = useState(f.sticky);
  if (choices.length === 0) return html`<p class="muted">Deploy another version to split traffic: only built versions other than the live one can be a candidate.</p>`;
  return html`
    <form class="candidate-form" onSubmit=${(e) => (e.preventDefault(), onSubmit(Number(version), Number(pct), sticky))}>
      <h3>Send a share to a candidate</h3>
      <label>Candidate version
        <select value=${version} onChange=${(e) => setVersion(e.target.value)}>
          ${choices.map((d) => html`<option value=${String(d.version)}>v${d.version}</option>`)}
        </select>
      </label>
      <div class="slider">
        <label for="share">Candidate share</label>
        <input id="share" type="range" min="0" max="100" step="1" value=${pct} aria-valuetext=${`${pct} percent`} onInput=${(e) => setPct(Number(e.target.value))} />
        <output for="share" aria-live="polite">${pct} %</output>
      </div>
      <label class="check"><input type="checkbox" checked=${sticky} onChange=${(e) => setSticky(e.target.checked)} /> Sticky (a caller keeps its version)</label>
      <button type="submit">Set candidate traffic</button>
    </form>
  `;
}

const CANARY_EVENTS = new Set(['canary_started', 'canary_advanced', 'canary_waiting', 'canary_promoted', 'canary_rolled_back', 'canary_aborted']);

function Figures({ w, label }) {
  if (!w) return null;
  return html`
    <table class="figures">
      <caption>${label}</caption>
      <thead><tr><th scope="col">Requests</th><th scope="col">Errors</th><th scope="col">Error rate</th><th scope="col">p50</th><th scope="col">p99</th></tr></thead>
      <tbody><tr><td>${w.requests}</td><td>${w.errors}</td><td>${percent(w.errorRate)}</td><td>${ms(w.p50Ms)}</td><td>${ms(w.p99Ms)}</td></tr></tbody>
    </table>
  `;
}

function CanarySection({ name, f, data, act }) {
  const c = data.canary;
  const running = c?.status === 'running';
  const events = c ? data.events.filter((e) => CANARY_EVENTS.has(e.event) && (!c.createdAt || !e.createdAt || e.createdAt >= c.createdAt)).reverse() : [];
  return html`
    <section class="card" aria-labelledby="canary-h">
      <h2 id="canary-h">Canary</h2>
      ${c
        ? html`
            <p>
              Canary of <strong>v${c.version}</strong>: <span class=${`badge canary-${c.status}`}>${c.status.replace('_', ' ')}</span>
              ${running ? html` at step ${c.stepIndex + 1} of ${c.steps.length} (${c.percent} %), next check ${when(c.nextEvaluationAt)}` : null}
            </p>
            <ol class="steps" aria-label="Canary steps">
              ${c.steps.map((s, i) => {
                const state = c.status === 'promoted' || i < c.stepIndex ? 'passed' : i === c.stepIndex ? (running ? 'current' : c.status) : 'pending';
                return html`<li class=${`step ${state}`}><span>${s} %</span> <span class="muted">${state.replace('_', ' ')}</span></li>`;
              })}
            </ol>
            <p class="muted">Limits: error rate ≤ ${percent(c.maxErrorRate)}${c.maxP99Ms ? `, p99 ≤ ${c.maxP99Ms} ms` : ''}, at least ${c.minRequests} requests per step, ${c.intervalSeconds} s per step.</p>
            ${running ? html`<${Figures} w=${c.window} label=${`This step so far (${c.percent} %)`} />` : null}
            ${c.lastEvaluation
              ? html`<${Figures} w=${c.lastEvaluation} label=${`${c.status === 'rolled_back' ? 'The figures that rolled it back' : 'Last evaluation'}: step ${c.lastEvaluation.stepIndex + 1} at ${c.lastEvaluation.percent} %, ${c.lastEvaluation.verdict.replace('_', ' ')}`} />`
              : null}
            ${c.reason ? html`<p class=${c.status === 'rolled_back' ? 'banner error' : 'banner ok'}>${c.reason}</p>` : null}
            ${events.length
              ? html`<h3>Step by step</h3><ul class="events">${events.map((e) => html`<li><time>${when(e.createdAt)}</time> ${e.message}</li>`)}</ul>`
              : null}
            ${running ? html`<button type="button" class="danger" onClick=${() => act('Canary aborted: the live version takes all traffic.', () => api('DELETE', fnPath(name, '/canary')))}>Abort canary</button>` : null}
          `
        : html`<p class="muted">No canary has run for this function.</p>`}
      ${!running && f.activeVersion !== null ? html`<${CanaryForm} f=${f} built=${data.built} onStart=${(body) => act(`Canary of v${body.version} started at ${body.steps[0]} %.`, () => api('POST', fnPath(name, '/canary'), { json: body }))} />` : null}
    </section>
  `;
}

function CanaryForm({ f, built, onStart }) {
  const choices = built.filter((d) => d.version !== f.activeVersion);
  const [version, setVersion] = useState(String(choices[0]?.version ?? ''));
  const [steps, setSteps] = useState('5, 25, 50, 100');
  const [interval, setIntervalSeconds] = useState(60);
  const [maxErrorRate, setMaxErrorRate] = useState(5);
  const [minRequests, setMinRequests] = useState(20);
  const [p99, setP99] = useState('');
  const [error, setError] = useState(null);
  if (choices.length === 0) return null;
  const submit = (e) => {
    e.preventDefault();
    const parsed = steps.split(/[\s,]+/).filter(Boolean).map(Number);
    if (parsed.some((n) => !Number.isInteger(n))) {
      setError('Steps are whole percentages separated by commas, e.g. 5, 25, 50, 100.');
      return;
    }
    setError(null);
    onStart({
      version: Number(version),
      steps: parsed,
      intervalSeconds: Number(interval),
      maxErrorRate: Number(maxErrorRate) / 100,
      minRequests: Number(minRequests),
      ...(p99 !== '' ? { maxP99Ms: Number(p99) } : {}),
    });
  };
  return html`
    <form class="canary-form grid-form" onSubmit=${submit}>
      <h3>Start a canary</h3>
      <label>Version <select value=${version} onChange=${(e) => setVersion(e.target.value)}>${choices.map((d) => html`<option value=${String(d.version)}>v${d.version}</option>`)}</select></label>
      <label>Steps (%) <input value=${steps} onInput=${(e) => setSteps(e.target.value)} /></label>
      <label>Seconds per step <input type="number" min="1" value=${interval} onInput=${(e) => setIntervalSeconds(e.target.value)} /></label>
      <label>Max error rate (%) <input type="number" min="0" max="100" step="0.1" value=${maxErrorRate} onInput=${(e) => setMaxErrorRate(e.target.value)} /></label>
      <label>Min requests per step <input type="number" min="1" value=${minRequests} onInput=${(e) => setMinRequests(e.target.value)} /></label>
      <label>Max p99 (ms, optional) <input type="number" min="1" value=${p99} onInput=${(e) => setP99(e.target.value)} /></label>
      <${ErrorBanner} error=${error} />
      <button type="submit">Start canary</button>
    </form>
  `;
}

function TagsSection({ name, data, act }) {
  const [tag, setTag] = useState('');
  const [version, setVersion] = useState(String(data.built[0]?.version ?? ''));
  return html`
    <section class="card" aria-labelledby="tags-h">
      <h2 id="tags-h">Tags</h2>
      <p class="muted">A tag pins a name to a version: <code>…/${name}@tag</code> reaches it (owner or key holders).</p>
      ${data.tags.length
        ? html`<table><caption class="sr-only">Tags</caption><thead><tr><th scope="col">Tag</th><th scope="col">Version</th><th scope="col">Set</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${data.tags.map((t) => html`<tr><th scope="row">${t.tag}</th><td>v${t.version}</td><td>${when(t.updatedAt)}</td>
              <td><button type="button" class="secondary" aria-label=${`Remove tag ${t.tag}`} onClick=${() => act(`Tag ${t.tag} removed.`, () => api('DELETE', fnPath(name, `/tags/${encodeURIComponent(t.tag)}`)))}>Remove</button></td></tr>`)}</tbody></table>`
        : html`<p>No tags.</p>`}
      ${data.built.length
        ? html`<form class="row" onSubmit=${(e) => (e.preventDefault(), act(`Tag ${tag} → v${version}.`, () => api('PUT', fnPath(name, `/tags/${encodeURIComponent(tag)}`), { json: { version: Number(version) } })))}>
            <label>Tag <input value=${tag} required onInput=${(e) => setTag(e.target.value)} /></label>
            <label>Version <select value=${version} onChange=${(e) => setVersion(e.target.value)}>${data.built.map((d) => html`<option value=${String(d.version)}>v${d.version}</option>`)}</select></label>
            <button type="submit">Set tag</button>
          </form>`
        : null}
    </section>
  `;
}

