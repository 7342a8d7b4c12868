// A function's versions as a timeline, newest first, a page at a time: what each one is, and
// one-click rollback (with a confirmation naming both versions) to any built one.
import { html, useEffect, useState } from '/ui/vendor/htm-preact.js';
import { api, errorText, fnPath } from './api.js';
import { DeployBox } from './deploy.js';
import { bytes, shortSha, when } from './format.js';
import { ConfirmDialog, ErrorBanner, Notice, StatusBadge } from './ui.js';

const PAGE = 20;

export function History({ f, name, stream, changes, reloadFunction, candidate }) {
  const [pages, setPages] = useState({ items: [], nextBefore: null, loaded: false });
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);
  const [asked, setAsked] = useState(null);
  const [busy, setBusy] = useState(false);
  const [dialogError, setDialogError] = useState(null);

  const loadFirst = async () => {
    try {
      const page = await api('GET', fnPath(name, `/deployments?limit=${PAGE}`));
      // keep the older pages already shown: only the newest page changes
      setPages((old) => {
        const shown = old.items.filter((d) => d.version < (page.deployments.at(-1)?.version ?? 0));
        return { items: [...page.deployments, ...shown], nextBefore: shown.length ? old.nextBefore : page.nextBefore, loaded: true };
      });
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  const loadOlder = async () => {
    try {
      const page = await api('GET', fnPath(name, `/deployments?limit=${PAGE}&before=${pages.nextBefore}`));
      setPages((old) => ({ items: [...old.items, ...page.deployments], nextBefore: page.nextBefore, loaded: true }));
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    loadFirst();
  }, [name, changes]);

  const confirm = async () => {
    setBusy(true);
    setDialogError(null);
    try {
      const d = asked.deployment;
      const answer = d.awaitingApproval
        ? await api('POST', fnPath(name, '/approve'), { json: { version: d.version } })
        : await api('POST', fnPath(name, '/rollback'), { json: { version: d.version } });
      setNotice(answer.message);
      setAsked(null);
      reloadFunction();
      loadFirst();
    } catch (err) {
      setDialogError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const live = f.activeVersion;
  return html`
    <${DeployBox} name=${name} stream=${stream} onDeployed=${() => loadFirst()} />
    <${Compare} name=${name} versions=${pages.items} live=${live} />
    <h2>History</h2>
    <${Notice} text=${notice} />
    <${ErrorBanner} error=${error} />
    ${pages.loaded && pages.items.length === 0 ? html`<p class="empty">No versions yet.</p>` : null}
    <ol class="timeline" aria-label="Versions, newest first">
      ${pages.items.map(
        (d) => html`<${VersionItem}
          key=${d.id}
          d=${d}
          name=${name}
          live=${live}
          isCandidate=${candidate?.version === d.version}
          onRollback=${() => {
            setDialogError(null);
            setAsked({ deployment: d });
          }}
        />`,
      )}
    </ol>
    ${pages.nextBefore ? html`<button type="button" class="secondary" onClick=${loadOlder}>Show older versions</button>` : null}
    <${ConfirmDialog}
      open=${asked !== null}
      title=${asked ? rollbackTitle(asked.deployment, live) : ''}
      confirmLabel=${asked ? rollbackLabel(asked.deployment, live) : 'Confirm'}
      busy=${busy}
      error=${dialogError}
      onCancel=${() => setAsked(null)}
      onConfirm=${confirm}
    >
      ${asked ? html`<p>${rollbackExplanation(asked.deployment, live)}</p>` : null}
    </${ConfirmDialog}>
  `;
}

function rollbackLabel(d, live) {
  if (d.awaitingApproval) return `Approve v${d.version}`;
  if (d.status === 'archived') return `Rebuild and roll back to v${d.version}`;
  return live !== null && d.version > live ? `Make v${d.version} live` : `Roll back to v${d.version}`;
}

function rollbackTitle(d, live) {
  const from = live ? `v${live}` : 'no live version';
  return `${rollbackLabel(d, live)}? (now live: ${from})`;
}

function rollbackExplanation(d, live) {
  const from = live ? `v${live}` : 'nothing';
  if (d.status === 'archived') {
    return `v${d.version}'s image was removed by retention cleanup. It will be rebuilt from its archive and then replace ${from}, which keeps serving until then.`;
  }
  return `All traffic moves from ${from} to v${d.version} at once, with its own code and configuration. A running canary or candidate stops. No rebuild.`;
}

/** Why a version cannot be made live, or null when it can. */
function whyNot(d) {
  switch (d.status) {
    case 'deleted':
      return `v${d.version} was deleted by retention cleanup: its image and its archive are gone, so it can be neither served nor rebuilt.${d.cleanupNote ? ` (${d.cleanupNote})` : ''}`;
    case 'archiving':
      return `v${d.version} is being archived right now; try again in a moment.`;
    case 'failed':
      return `v${d.version} failed to build: there is nothing to roll back to.`;
    case 'building':
    case 'pending_upload':
      return `v${d.version} is not built yet.`;
    default:
      return null;
  }
}

function VersionItem({ d, name, live, isCandidate, onRollback }) {
  const isLive = d.isActive;
  const reason = isLive ? null : whyNot(d);
  const label = rollbackLabel(d, live);
  return html`
    <li class=${`version ${isLive ? 'is-live' : ''} ${isCandidate ? 'is-candidate' : ''}`} data-version=${d.version}>
      <div class="v-head">
        <strong class="v">v${d.version}</strong>
        <${StatusBadge} status=${d.status} />
        ${isLive ? html`<span class="badge live">live</span>` : null}
        ${isCandidate ? html`<span class="badge candidate">candidate</span>` : null}
        ${d.awaitingApproval ? html`<span class="badge waiting">awaiting approval</span>` : null}
        <span class="badge source">${d.source === 'config' ? 'config change' : 'deploy'}</span>
        ${d.tags.map((t) => html`<span class="badge tag">${t}</span>`)}
        <span class="spacer"></span>
        ${isLive
          ? null
          : reason
            ? html`<button type="button" class="secondary" disabled aria-describedby=${`why-${d.id}`}>${label}</button>`
            : html`<button type="button" onClick=${onRollback}>${label}</button>`}
      </div>
      ${reason && !isLive ? html`<p class="muted why" id=${`why-${d.id}`}>${reason}</p>` : null}
      <dl class="v-facts">
        <div><dt>Size</dt><dd>${bytes(d.sizeBytes)}</dd></div>
        <div><dt>sha256</dt><dd><code title=${d.sha256 ?? ''}>${shortSha(d.sha256)}</code></dd></div>
        <div><dt>Created</dt><dd>${when(d.createdAt)}</dd></div>
        <div><dt>Built</dt><dd>${when(d.deployedAt)}</dd></div>
        <div><dt>Activated</dt><dd>${when(d.activatedAt)}</dd></div>
        <div><dt>Attempts</dt><dd>${d.attempts}</dd></div>
        ${d.metadata?.gitSha ? html`<div><dt>Commit</dt><dd><code>${d.metadata.gitSha.slice(0, 10)}</code>${d.metadata.author ? ` by ${d.metadata.author}` : ''}</dd></div>` : null}
        ${d.metadata?.message ? html`<div class="wide"><dt>Message</dt><dd>${d.metadata.message}</dd></div>` : null}
      </dl>
      ${d.error ? html`<p class="error-text">${d.error}</p>` : null}
      ${d.status === 'failed' || d.status === 'building' ? html`<${BuildLog} name=${name} version=${d.version} open=${d.status === 'failed'} />` : null}
    </li>
  `;
}

/** A version's build log, read when first opened (a failed build's is open from the start). */
function BuildLog({ name, version, open }) {
  const [log, setLog] = useState(null);
  const [error, setError] = useState(null);
  const read = async () => {
    if (log !== null) return;
    try {
      const d = await api('GET', fnPath(name, `/deployments/${version}`));
      setLog(d.buildLogs ?? '(no build log was recorded)');
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    if (open) read();
  }, []);
  return html`
    <details class="build-log" open=${open} onToggle=${(e) => e.target.open && read()}>
      <summary>Build log of v${version}</summary>
      <${ErrorBanner} error=${error} />
      ${log === null && !error ? html`<p class="loading">Loading…</p>` : null}
      ${log !== null ? html`<pre class="log" tabindex="0" aria-label=${`Build log of v${version}`}>${log}</pre>` : null}
    </details>
  `;
}

/** Two versions side by side: did the code change (sha256), and what configuration changed. */
function Compare({ name, versions, live }) {
  const [a, setA] = useState('');
  const [b, setB] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const options = versions.map((d) => d.version);
  const va = a || (live ? String(live) : options[1] !== undefined ? String(options[1]) : '');
  const vb = b || (options[0] !== undefined ? String(options[0]) : '');
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setResult(null);
    try {
      setResult({ a: va, b: vb, ...(await api('GET', fnPath(name, `/deployments/${va}/compare/${vb}`))) });
    } catch (err) {
      setError(err);
    }
  };
  if (options.length < 2) return null;
  const select = (value, set, label, id) => html`
    <div class="field">
      <label for=${id}>${label}</label>
      <select id=${id} value=${value} onChange=${(e) => set(e.target.value)}>
        ${options.map((v) => html`<option value=${String(v)}>v${v}${v === live ? ' (live)' : ''}</option>`)}
      </select>
    </div>`;
  return html`
    <details class="card compare">
      <summary>Compare two versions</summary>
      <form onSubmit=${submit} class="row">
        ${select(va, setA, 'From', 'compare-from')} ${select(vb, setB, 'To', 'compare-to')}
        <button type="submit">Compare</button>
      </form>
      <${ErrorBanner} error=${error} />
      ${result ? html`<${Comparison} r=${result} />` : null}
    </details>
  `;
}

function Comparison({ r }) {
  const { added, removed, changed } = r.config;
  const rows = [
    ...Object.entries(added).map(([k, v]) => html`<tr><th scope="row">${k}</th><td>—</td><td>${String(v)}</td></tr>`),
    ...Object.entries(removed).map(([k, v]) => html`<tr><th scope="row">${k}</th><td>${String(v)}</td><td>—</td></tr>`),
    ...Object.entries(changed).map(([k, v]) => html`<tr><th scope="row">${k}</th><td>${String(v.from)}</td><td>${String(v.to)}</td></tr>`),
  ];
  return html`
    <div class="comparison" aria-live="polite">
      <p>
        Code: ${r.code.changed ? html`<strong>changed</strong>` : 'the same'}
        (<code>${shortSha(r.code.sha256[0])}</code> → <code>${shortSha(r.code.sha256[1])}</code>)
      </p>
      ${rows.length
        ? html`<table><caption>Configuration, v${r.a} → v${r.b}</caption><thead><tr><th scope="col">Setting</th><th scope="col">v${r.a}</th><th scope="col">v${r.b}</th></tr></thead><tbody>${rows}</tbody></table>`
        : html`<p>Configuration: no change.</p>`}
    </div>
  `;
}
