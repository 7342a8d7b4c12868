// The functions of the signed-in user: what is live, how it is doing over the last hour, and a
// deploy box for a new one. One request for the list (its lastHour figures come with it).
import { html } from '/ui/vendor/htm-preact.js';
import { api } from './api.js';
import { DeployBox } from './deploy.js';
import { ago, percent, when } from './format.js';
import { ErrorBanner, StatusBadge, useLoad } from './ui.js';

export function FunctionList() {
  const list = useLoad(() => api('GET', '/api/functions'), []);
  const functions = list.data?.functions ?? [];
  return html`
    <h1>Functions</h1>
    <${ErrorBanner} error=${list.error} />
    ${list.data && functions.length === 0
      ? html`<p class="empty">No functions yet. Deploy one below, or with <code>containerpub deploy</code>.</p>`
      : null}
    ${functions.length
      ? html`
          <div class="table-wrap">
            <table class="functions">
              <caption class="sr-only">Your functions</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">URL</th>
                  <th scope="col">Live</th>
                  <th scope="col">Status</th>
                  <th scope="col">Last deploy</th>
                  <th scope="col" class="num">Requests (1 h)</th>
                  <th scope="col" class="num">Errors (1 h)</th>
                </tr>
              </thead>
              <tbody>
                ${functions.map((f) => html`<${FunctionRow} key=${f.id} f=${f} />`)}
              </tbody>
            </table>
          </div>
        `
      : null}
    <${DeployBox} onDeployed=${() => list.reload()} />
  `;
}

function FunctionRow({ f }) {
  const candidate = f.traffic.find((t) => t.role === 'candidate');
  const hour = f.lastHour ?? { requests: 0, errors: 0 };
  return html`
    <tr>
      <th scope="row"><a href=${`#/f/${encodeURIComponent(f.name)}`}>${f.name}</a></th>
      <td class="url"><a href=${f.url} target="_blank" rel="noopener">${f.url.replace(/^https?:\/\//, '')}</a></td>
      <td>
        ${f.activeVersion ? `v${f.activeVersion}` : '—'}
        ${candidate ? html` <span class="badge candidate" title="candidate">v${candidate.version} ${candidate.percent} %</span>` : null}
      </td>
      <td><${StatusBadge} status=${f.status} label=${f.status} /></td>
      <td><span title=${when(f.lastDeployedAt)}>${ago(f.lastDeployedAt)}</span> <span class="muted">v${f.latestVersion}</span></td>
      <td class="num">${hour.requests}</td>
      <td class="num">${hour.errors}${hour.requests ? html` <span class="muted">(${percent(hour.errors / hour.requests)})</span>` : null}</td>
    </tr>
  `;
}
