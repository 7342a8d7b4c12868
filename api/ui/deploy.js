// Deploy from the browser: a .tar.gz goes up as multipart through the API (same origin, so no
// S3 CORS setup), and the build is followed live on the function's event stream until the
// version is live or failed.
import { html, useEffect, useRef, useState } from '/ui/vendor/htm-preact.js';
import { api, errorText, fnPath } from './api.js';
import { FunctionStream } from './stream.js';
import { ArchiveDrop, ErrorBanner, StatusBadge } from './ui.js';

const FINAL = new Set(['active', 'failed']);
/** events after which the version's state is worth reading again */
const STATE_EVENTS = new Set(['build_started', 'build_succeeded', 'build_failed', 'build_retried', 'activated', 'activation_skipped', 'awaiting_approval', 'activation_held']);

/** `name` fixed: a new version of that function; otherwise the user names a new function. */
export function DeployBox({ name: fixedName, onDeployed, stream }) {
  const [name, setName] = useState(fixedName ?? '');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [deployment, setDeployment] = useState(null);

  const upload = async (file) => {
    setError(null);
    if (!(fixedName ?? name).trim()) {
      setError('Give the function a name first.');
      return;
    }
    setBusy(true);
    try {
      const form = new FormData();
      form.set('name', (fixedName ?? name).trim());
      form.set('archive', file, file.name);
      const d = await api('POST', '/api/functions/deploy', { form });
      setDeployment(d);
      onDeployed?.(d);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return html`
    <section class="card deploy" aria-label=${fixedName ? 'Deploy a new version' : 'Deploy a function'}>
      <h2>${fixedName ? 'Deploy a new version' : 'Deploy a function'}</h2>
      ${fixedName
        ? null
        : html`<label>Function name <input name="function-name" required pattern="[a-z0-9][a-z0-9-]*" value=${name} onInput=${(e) => setName(e.target.value)} /></label>`}
      <${ArchiveDrop} onFile=${upload} disabled=${busy} />
      ${busy ? html`<p role="status">Uploading…</p>` : null}
      <${ErrorBanner} error=${error} />
      ${deployment ? html`<${BuildFollower} key=${deployment.deploymentId} deployment=${deployment} stream=${stream} onSettled=${onDeployed} />` : null}
    </section>
  `;
}

/**
 * Follows one deployment's build: its log lines and state changes as they happen, on the page's
 * stream when there is one (a function page), else on its own.
 */
export function BuildFollower({ deployment, onSettled, stream: pageStream }) {
  const [detail, setDetail] = useState(null);
  const [lines, setLines] = useState([]);
  const [error, setError] = useState(null);
  const settled = useRef(false);
  const path = fnPath(deployment.name, `/deployments/${deployment.version}`);

  useEffect(() => {
    let closed = false;
    const read = async () => {
      try {
        const d = await api('GET', path);
        if (closed) return;
        setDetail(d);
        if (d.buildLogs) setLines(d.buildLogs.split('\n'));
        if (FINAL.has(d.status) && !settled.current) {
          settled.current = true;
          onSettled?.(d);
        }
      } catch (err) {
        if (!closed) setError(errorText(err));
      }
    };
    const stream = pageStream ?? new FunctionStream(deployment.name);
    stream.open();
    const off = stream.subscribe((type, data) => {
      if (data?.deploymentId !== deployment.deploymentId) return;
      if (type === 'build_log') setLines((old) => [...old, ...data.lines].slice(-2000));
      else if (STATE_EVENTS.has(type)) read();
    });
    read();
    // the stream starts from "now" once connected: what happened before that is read, and a slow
    // check every few seconds covers a change made while it was (re)connecting
    const check = setInterval(() => settled.current || read(), 3000);
    return () => {
      closed = true;
      clearInterval(check);
      off();
      if (!pageStream) stream.close();
    };
  }, [deployment.deploymentId]);

  const status = detail?.status ?? deployment.status;
  return html`
    <div class="build" aria-live="polite">
      <p>
        Version <strong>v${deployment.version}</strong> of <strong>${deployment.name}</strong>:
        <${StatusBadge} status=${status} />
        ${detail?.isActive ? html` <span class="badge live">live</span>` : null}
        ${detail?.error ? html` <span class="error-text">${detail.error}</span>` : null}
      </p>
      <${ErrorBanner} error=${error} />
      ${lines.length ? html`<pre class="log" aria-label="Build log" tabindex="0">${lines.join('\n')}</pre>` : null}
    </div>
  `;
}
