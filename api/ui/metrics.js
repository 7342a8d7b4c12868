// Per-version figures over time (GET …/metrics: a row per version and minute): requests, error
// rate and p50/p99 latency, each version a line, the candidate beside the live version. Charts are
// uPlot; the table under them holds the same totals for reading and for screen readers.
import { html, useEffect, useRef, useState } from '/ui/vendor/htm-preact.js';
import uPlot from '/ui/vendor/uplot.js';
import { api, fnPath } from './api.js';
import { ms, percent } from './format.js';
import { ErrorBanner } from './ui.js';

const PALETTE = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#0891b2', '#be123c', '#65a30d', '#a16207'];
const REFRESH_MS = 30_000;

export function Metrics({ f, name, changes, candidate }) {
  const [minutes, setMinutes] = useState(60);
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    let stopped = false;
    const load = () =>
      api('GET', fnPath(name, `/metrics?minutes=${minutes}`)).then(
        (d) => !stopped && (setData(d), setError(null)),
        (err) => !stopped && setError(err),
      );
    load();
    // figures arrive per minute: a slow refresh while the tab is open, none when it is hidden
    const timer = setInterval(() => document.visibilityState === 'visible' && load(), REFRESH_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [name, minutes, changes]);

  const roleOf = (v) => (v === f.activeVersion ? 'live' : v === candidate?.version ? 'candidate' : null);
  const versions = (data?.versions ?? []).slice().sort((a, b) => {
    // live and candidate first, then newest
    const rank = (v) => (roleOf(v.version) === 'live' ? 0 : roleOf(v.version) === 'candidate' ? 1 : 2);
    return rank(a) - rank(b) || b.version - a.version;
  });
  const labelOf = (v) => `v${v.version}${roleOf(v.version) ? ` (${roleOf(v.version)})` : ''}`;

  return html`
    <div class="row">
      <label>Period
        <select value=${String(minutes)} onChange=${(e) => setMinutes(Number(e.target.value))}>
          <option value="15">last 15 minutes</option>
          <option value="60">last hour</option>
          <option value="360">last 6 hours</option>
          <option value="1440">last 24 hours</option>
        </select>
      </label>
    </div>
    <${ErrorBanner} error=${error} />
    ${data && versions.length === 0 ? html`<p class="empty">No invocations in this period.</p>` : null}
    ${versions.length
      ? html`
          <table class="figures">
            <caption>Totals per version, ${minutes === 60 ? 'last hour' : `last ${minutes} minutes`}</caption>
            <thead><tr><th scope="col">Version</th><th scope="col">Requests</th><th scope="col">Errors</th><th scope="col">Error rate</th><th scope="col">p50</th><th scope="col">p99</th><th scope="col">Average</th></tr></thead>
            <tbody>
              ${versions.map((v) => html`<tr><th scope="row">${labelOf(v)}</th><td>${v.totals.requests}</td><td>${v.totals.errors}</td><td>${percent(v.totals.errorRate)}</td><td>${ms(v.totals.p50Ms)}</td><td>${ms(v.totals.p99Ms)}</td><td>${ms(v.totals.avgMs)}</td></tr>`)}
            </tbody>
          </table>
          <${Chart} title="Requests per minute" minutes=${minutes} versions=${versions} labelOf=${labelOf} pick=${(p) => p.requests} idle=${0} fromZero=${true} unit="" />
          <${Chart} title="Error rate per minute (%)" minutes=${minutes} versions=${versions} labelOf=${labelOf} pick=${(p) => (p.requests ? (p.errors / p.requests) * 100 : null)} fromZero=${true} unit="%" />
          <${Chart} title="Latency per minute (ms): p50 solid, p99 dashed" minutes=${minutes} versions=${versions} labelOf=${labelOf} pick=${(p) => p.p50Ms} pick2=${(p) => p.p99Ms} fromZero=${true} unit="ms" />
        `
      : null}
  `;
}

/**
 * One uPlot chart over the whole period, a point per minute: a line per version (two when pick2
 * is given). A minute with no requests is `idle` (0 for counts) or a gap (rates, latency).
 */
function Chart({ title, minutes: period, versions, labelOf, pick, pick2, idle = null, fromZero, unit }) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const last = Math.floor(Date.now() / 60_000) * 60_000;
    const minutes = Array.from({ length: period }, (_, i) => last - (period - 1 - i) * 60_000);
    const xs = minutes.map((m) => m / 1000);
    const columns = [];
    const series = [{}];
    versions.forEach((v, i) => {
      const at = new Map(v.series.map((p) => [Date.parse(p.minute), p]));
      const color = PALETTE[i % PALETTE.length];
      const line = (fn, dash, suffix) => {
        columns.push(minutes.map((m) => (at.has(m) ? fn(at.get(m)) : idle)));
        series.push({ label: `${labelOf(v)}${suffix}`, stroke: color, width: 2, dash, spanGaps: false, points: { show: v.series.length < 4 } });
      };
      line(pick, undefined, pick2 ? ' p50' : '');
      if (pick2) line(pick2, [6, 4], ' p99');
    });
    const width = () => Math.max(280, el.clientWidth);
    const chart = new uPlot(
      {
        width: width(),
        height: 220,
        series,
        scales: { x: { time: true }, y: fromZero ? { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } : {} },
        axes: [{}, { label: unit, size: 56 }],
        legend: { live: true },
      },
      [xs, ...columns],
      el,
    );
    const onResize = () => chart.setSize({ width: width(), height: 220 });
    addEventListener('resize', onResize);
    return () => {
      removeEventListener('resize', onResize);
      chart.destroy();
    };
  }, [versions, period]);
  return html`<figure class="chart"><figcaption>${title}</figcaption><div ref=${box} role="img" aria-label=${`${title}, one line per version; the table above has the totals`}></div></figure>`;
}
