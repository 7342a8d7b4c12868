// Sign-in with email and password: the API answers with an httpOnly session cookie and the
// session's CSRF token. An account can be made here too, where the platform's registration is
// open (REGISTRATION=closed refuses it, and the page says so in the API's words).
import { html, useState } from '/ui/vendor/htm-preact.js';
import { api, errorText } from './api.js';
import { ErrorBanner } from './ui.js';

export function SignIn({ onSignedIn }) {
  const [mode, setMode] = useState('sign-in');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const creating = mode === 'register';

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (creating) await api('POST', '/api/auth/register', { json: { email, password } });
      onSignedIn(await api('POST', '/api/auth/session', { json: { email, password } }));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const label = creating ? 'Create account' : 'Sign in';
  return html`
    <main class="sign-in">
      <h1>ContainerPub</h1>
      <form onSubmit=${submit} aria-label=${label}>
        <h2>${creating ? 'Create an account' : 'Sign in'}</h2>
        <label>Email <input type="email" name="email" autocomplete="username" required value=${email} onInput=${(e) => setEmail(e.target.value)} /></label>
        <label>Password <input type="password" name="password" autocomplete=${creating ? 'new-password' : 'current-password'} minlength=${creating ? 8 : undefined} required value=${password} onInput=${(e) => setPassword(e.target.value)} /></label>
        <${ErrorBanner} error=${error} />
        <button type="submit" disabled=${busy}>${busy ? 'Working…' : label}</button>
      </form>
      <p class="muted">
        ${creating ? 'Have an account? ' : 'No account? '}
        <button type="button" class="link" onClick=${() => (setMode(creating ? 'sign-in' : 'register'), setError(null))}>
          ${creating ? 'Sign in' : 'Create one'}
        </button>
      </p>
    </main>
  `;
}
