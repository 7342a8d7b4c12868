// The dashboard: a small single-page app on the API's own origin. Routes live in the URL hash so
// that a reload, the back button and a shared link land on the same page:
//
//   #/                         the functions
//   #/f/{name}[/{tab}]         a function: history, traffic, metrics, live, config
//
// Preact and htm come as one ES module (htm's standalone build), uPlot as its ES module: no build step.
import { html, render, useEffect, useState } from '/ui/vendor/htm-preact.js';
import { api, ApiError, onSignedOut, setCsrfToken } from './api.js';
import { ErrorBanner } from './ui.js';
import { SignIn } from './sign-in.js';
import { FunctionList } from './functions.js';
import { FunctionPage } from './function-page.js';

function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'f' && parts[1]) return { page: 'function', name: parts[1], tab: parts[2] ?? 'history' };
  return { page: 'functions' };
}

function App() {
  /** undefined: not known yet; null: signed out */
  const [session, setSession] = useState(undefined);
  const [route, setRoute] = useState(currentRoute());
  const [signOutError, setSignOutError] = useState(null);

  useEffect(() => {
    const onHash = () => setRoute(currentRoute());
    addEventListener('hashchange', onHash);
    const off = onSignedOut(() => setSession(null));
    api('GET', '/api/auth/session')
      .then((s) => {
        setCsrfToken(s.csrfToken);
        setSession(s);
      })
      .catch(() => setSession(null));
    return () => {
      removeEventListener('hashchange', onHash);
      off();
    };
  }, []);

  useEffect(() => {
    document.title = route.page === 'function' ? `${route.name} · ContainerPub` : 'Functions · ContainerPub';
  }, [route.page, route.name]);

  if (session === undefined) return html`<p class="loading">Loading…</p>`;
  if (session === null)
    return html`<${SignIn}
      onSignedIn=${(s) => {
        setCsrfToken(s.csrfToken);
        setSession(s);
      }}
    />`;

  const signOut = async () => {
    setSignOutError(null);
    try {
      await api('DELETE', '/api/auth/session');
    } catch (err) {
      // a session the server no longer knows is signed out already; anything else is said
      if (!(err instanceof ApiError && err.status === 401)) {
        setSignOutError(err);
        return;
      }
    }
    setCsrfToken(null);
    setSession(null);
    location.hash = '#/';
  };

  return html`
    <header class="top">
      <a class="brand" href="#/">ContainerPub</a>
      <nav aria-label="Main"><a href="#/" aria-current=${route.page === 'functions' ? 'page' : undefined}>Functions</a></nav>
      <span class="who" title="signed in">${session.email} <span class="muted">@${session.handle}</span></span>
      <button type="button" class="secondary" onClick=${signOut}>Sign out</button>
    </header>
    <main id="main">
      <${ErrorBanner} error=${signOutError} />
      ${route.page === 'function'
        ? html`<${FunctionPage} key=${route.name} name=${route.name} tab=${route.tab} />`
        : html`<${FunctionList} />`}
    </main>
  `;
}

render(html`<${App} />`, document.getElementById('app'));
