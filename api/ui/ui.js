// Small pieces every page uses: errors shown in words, status badges, a loader hook, a
// confirmation dialog and tabs.
import { html, useCallback, useEffect, useRef, useState } from '/ui/vendor/htm-preact.js';
import { errorText } from './api.js';

export function ErrorBanner({ error }) {
  if (!error) return null;
  return html`<p class="banner error" role="alert">${typeof error === 'string' ? error : errorText(error)}</p>`;
}

export function Notice({ text }) {
  if (!text) return null;
  return html`<p class="banner ok" role="status">${text}</p>`;
}

const STATUS_WORDS = {
  pending_upload: 'waiting for upload',
  building: 'building',
  active: 'built',
  failed: 'failed',
  archiving: 'archiving',
  archived: 'archived',
  deleted: 'deleted',
  pending: 'pending',
};

export function StatusBadge({ status, label }) {
  return html`<span class=${`badge status-${status}`}>${label ?? STATUS_WORDS[status] ?? status}</span>`;
}

/**
 * Loads once per change of `deps` and on reload(); an answer that arrives after a newer request
 * started is dropped.
 */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const seq = useRef(0);
  const run = useCallback(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => mine === seq.current && setState({ data, error: null, loading: false }),
      (error) => mine === seq.current && setState((s) => ({ data: s.data, error, loading: false })),
    );
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

/**
 * A confirmation in a modal <dialog>: focus moves into it, Escape cancels, and what it asks names
 * exactly what will happen.
 */
export function ConfirmDialog({ open, title, children, confirmLabel, onConfirm, onCancel, busy, error }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return html`
    <dialog ref=${ref} aria-labelledby="confirm-title" onCancel=${(e) => (e.preventDefault(), onCancel())}>
      <h2 id="confirm-title">${title}</h2>
      <div class="dialog-body">${children}</div>
      <${ErrorBanner} error=${error} />
      <div class="actions">
        <button type="button" class="secondary" onClick=${onCancel} disabled=${busy}>Cancel</button>
        <button type="button" class="danger" onClick=${onConfirm} disabled=${busy}>${busy ? 'Working…' : confirmLabel}</button>
      </div>
    </dialog>
  `;
}

/** Tabs as links (each tab has its own URL); arrow keys move between them. */
export function Tabs({ tabs, current, hrefOf, label }) {
  const onKey = (e) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const i = tabs.findIndex((t) => t.id === current);
    const next = tabs[(i + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
    location.hash = hrefOf(next.id);
    e.preventDefault();
    requestAnimationFrame(() => document.getElementById(`tab-${next.id}`)?.focus());
  };
  return html`
    <nav class="tabs" aria-label=${label} onKeyDown=${onKey}>
      ${tabs.map(
        (t) => html`<a id=${`tab-${t.id}`} href=${hrefOf(t.id)} aria-current=${t.id === current ? 'page' : undefined}>${t.label}</a>`,
      )}
    </nav>
  `;
}

/** A drop zone for a .tar.gz that is also a labelled file input (keyboard and screen readers). */
export function ArchiveDrop({ onFile, disabled, label = 'Function archive (.tar.gz)' }) {
  const [over, setOver] = useState(false);
  const pick = (files) => {
    const f = files?.[0];
    if (f) onFile(f);
  };
  return html`
    <div
      class=${`drop ${over ? 'over' : ''}`}
      onDragOver=${(e) => (e.preventDefault(), setOver(true))}
      onDragLeave=${() => setOver(false)}
      onDrop=${(e) => {
        e.preventDefault();
        setOver(false);
        if (!disabled) pick(e.dataTransfer?.files);
      }}
    >
      <label>
        ${label}
        <input type="file" accept=".tar.gz,.tgz,application/gzip" disabled=${disabled} onChange=${(e) => pick(e.target.files)} />
      </label>
      <span class="muted">or drop it here</span>
    </div>
  `;
}
