// Configuration: env vars, secret names (a secret's value is sent, never shown), limits, network,
// access mode and function keys. A change to env, secrets or limits makes a new version with the
// same code (source "config"), live once an instance of it passes readiness — as the CLI does.
import { html, useEffect, useState } from '/ui/vendor/htm-preact.js';
import { api, fnPath } from './api.js';
import { ago, when } from './format.js';
import { ErrorBanner, Notice } from './ui.js';

const LIMITS = [
  { key: 'memoryMb', label: 'Memory (MB)', min: 64, max: 4096 },
  { key: 'timeoutMs', label: 'Timeout (ms)', min: 100, max: 900000 },
  { key: 'minInstances', label: 'Min instances', min: 0, max: 1000 },
  { key: 'maxInstances', label: 'Max instances', min: 1, max: 1000 },
  { key: 'concurrency', label: 'Concurrency per instance', min: 1, max: 1000 },
];

export function Configuration({ f, name, changes, reloadFunction }) {
  const [config, setConfig] = useState(null);
  const [keys, setKeys] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);

  const load = async () => {
    try {
      const [c, k] = await Promise.all([api('GET', fnPath(name, '/config')), api('GET', fnPath(name, '/keys'))]);
      setConfig(c);
      setKeys(k.keys);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    load();
  }, [name, changes]);

  /** a configuration change: a new version with the same code */
  const patch = async (body, what) => {
    setNotice(null);
    setError(null);
    try {
      const v = await api('PATCH', fnPath(name, '/config'), { json: body });
      setNotice(`${what}: version v${v.version} made with the same code and the new configuration; it goes live once an instance of it is ready.`);
      reloadFunction();
      await load();
      return true;
    } catch (err) {
      setError(err);
      return false;
    }
  };
  const act = async (fn, what) => {
    setNotice(null);
    setError(null);
    try {
      const out = await fn();
      setNotice(what);
      reloadFunction();
      await load();
      return out;
    } catch (err) {
      setError(err);
      return null;
    }
  };

  return html`
    <${Notice} text=${notice} />
    <${ErrorBanner} error=${error} />
    ${config
      ? html`
          <p class="muted">${config.version ? `The configuration of v${config.version}, the latest version; a new deploy inherits it.` : 'No version yet: this is the configuration the first deploy gets.'}</p>
          <${EnvSection} env=${config.env} onPatch=${patch} />
          <${SecretsSection} secrets=${config.secrets} onPatch=${patch} />
          <${LimitsSection} config=${config} onPatch=${patch} />
        `
      : null}
    <${AccessSection} f=${f} onSet=${(access) => act(() => api('PATCH', fnPath(name), { json: { access } }), `Access is now ${access}.`)} />
    ${keys ? html`<${KeysSection} name=${name} keys=${keys} act=${act} />` : null}
  `;
}

function EnvSection({ env, onPatch }) {
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  const entries = Object.entries(env).sort(([a], [b]) => a.localeCompare(b));
  return html`
    <section class="card" aria-labelledby="env-h">
      <h2 id="env-h">Environment variables</h2>
      ${entries.length
        ? html`<table><caption class="sr-only">Environment variables</caption><thead><tr><th scope="col">Name</th><th scope="col">Value</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${entries.map(([k, v]) => html`<tr><th scope="row"><code>${k}</code></th><td><code>${v}</code></td>
              <td><button type="button" class="secondary" aria-label=${`Remove ${k}`} onClick=${() => onPatch({ env: { [k]: null } }, `${k} removed`)}>Remove</button></td></tr>`)}</tbody></table>`
        : html`<p>None.</p>`}
      <form class="row" onSubmit=${async (e) => {
        e.preventDefault();
        if (await onPatch({ env: { [key]: value } }, `${key} set`)) (setKey(''), setValue(''));
      }}>
        <label>Name <input value=${key} required autocomplete="off" onInput=${(e) => setKey(e.target.value)} /></label>
        <label>Value <input value=${value} autocomplete="off" onInput=${(e) => setValue(e.target.value)} /></label>
        <button type="submit">Set variable</button>
      </form>
    </section>
  `;
}

function SecretsSection({ secrets, onPatch }) {
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  return html`
    <section class="card" aria-labelledby="secrets-h">
      <h2 id="secrets-h">Secrets</h2>
      <p class="muted">Stored encrypted; their values are never shown again, here or anywhere else.</p>
      ${secrets.length
        ? html`<ul class="names">${secrets.map((s) => html`<li><code>${s}</code> <button type="button" class="secondary" aria-label=${`Remove secret ${s}`} onClick=${() => onPatch({ secrets: { [s]: null } }, `secret ${s} removed`)}>Remove</button></li>`)}</ul>`
        : html`<p>None.</p>`}
      <form class="row" onSubmit=${async (e) => {
        e.preventDefault();
        const ok = await onPatch({ secrets: { [key]: value } }, `secret ${key} set`);
        // the value leaves the page once sent, whatever the answer
        setValue('');
        if (ok) setKey('');
      }}>
        <label>Secret name <input value=${key} required autocomplete="off" onInput=${(e) => setKey(e.target.value)} /></label>
        <label>Secret value <input type="password" value=${value} required autocomplete="new-password" onInput=${(e) => setValue(e.target.value)} /></label>
        <button type="submit">Set secret</button>
      </form>
    </section>
  `;
}

function LimitsSection({ config, onPatch }) {
  const [draft, setDraft] = useState({});
  const changed = Object.fromEntries(Object.entries(draft).filter(([k, v]) => v !== '' && String(config[k]) !== String(v)));
  const submit = async (e) => {
    e.preventDefault();
    const body = Object.fromEntries(Object.entries(changed).map(([k, v]) => [k, k === 'network' ? v : Number(v)]));
    if (await onPatch(body, 'Limits changed')) setDraft({});
  };
  return html`
    <section class="card" aria-labelledby="limits-h">
      <h2 id="limits-h">Limits and network</h2>
      <form class="grid-form" onSubmit=${submit}>
        ${LIMITS.map(
          (l) => html`<label>${l.label}
            <input type="number" min=${l.min} max=${l.max} value=${draft[l.key] ?? config[l.key]} onInput=${(e) => setDraft({ ...draft, [l.key]: e.target.value })} /></label>`,
        )}
        <label>Network
          <select value=${draft.network ?? config.network} onChange=${(e) => setDraft({ ...draft, network: e.target.value })}>
            <option value="none">none (no outbound connections)</option>
            <option value="outbound">outbound (the function may call out)</option>
          </select>
        </label>
        <button type="submit" disabled=${Object.keys(changed).length === 0}>Save limits</button>
      </form>
    </section>
  `;
}

function AccessSection({ f, onSet }) {
  const [access, setAccess] = useState(f.access);
  useEffect(() => setAccess(f.access), [f.access]);
  return html`
    <section class="card" aria-labelledby="access-h">
      <h2 id="access-h">Access</h2>
      <form class="row" onSubmit=${(e) => (e.preventDefault(), onSet(access))}>
        <label>Who may call its URL
          <select value=${access} onChange=${(e) => setAccess(e.target.value)}>
            <option value="private">private: your bearer token only</option>
            <option value="key">key: holders of a function key</option>
            <option value="public">public: anyone</option>
          </select>
        </label>
        <button type="submit" disabled=${access === f.access}>Save access</button>
      </form>
    </section>
  `;
}

function KeysSection({ name, keys, act }) {
  const [keyName, setKeyName] = useState('');
  const [issued, setIssued] = useState(null);
  return html`
    <section class="card" aria-labelledby="keys-h">
      <h2 id="keys-h">Function keys</h2>
      ${issued
        ? html`<div class="banner ok" role="status">
            <p>Key <strong>${issued.name}</strong> created. Copy it now: it is not shown again.</p>
            <input readonly aria-label="The new key" value=${issued.key} onFocus=${(e) => e.target.select()} />
          </div>`
        : null}
      ${keys.length
        ? html`<table><caption class="sr-only">Function keys</caption><thead><tr><th scope="col">Name</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${keys.map((k) => html`<tr><th scope="row">${k.name}</th><td>${when(k.createdAt)}</td><td>${ago(k.lastUsedAt)}</td>
              <td><button type="button" class="secondary" aria-label=${`Revoke key ${k.name}`} onClick=${() => act(() => api('DELETE', fnPath(name, `/keys/${k.id}`)), `Key ${k.name} revoked.`)}>Revoke</button></td></tr>`)}</tbody></table>`
        : html`<p>No keys.</p>`}
      <form class="row" onSubmit=${async (e) => {
        e.preventDefault();
        const out = await act(() => api('POST', fnPath(name, '/keys'), { json: { name: keyName } }), `Key ${keyName} created.`);
        if (out) (setIssued(out), setKeyName(''));
      }}>
        <label>Key name <input value=${keyName} required onInput=${(e) => setKeyName(e.target.value)} /></label>
        <button type="submit">Create key</button>
      </form>
    </section>
  `;
}
