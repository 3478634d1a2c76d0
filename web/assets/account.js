// The demo sign-in: a name is enough; the server (in development) answers with a token for that user.

import { api } from './api.js';
import { announce } from './dom.js';
import { clearSession, currentSession, saveSession } from './session.js';

/**
 * Wires the #account area. Returns {session(), signOut(), focus()}.
 * @param {object} config  `/api/config`
 * @param {{onChange: (session) => void}} options
 */
export function setupAccount(config, { onChange }) {
  const form = document.getElementById('login-form');
  const input = document.getElementById('login-name');
  const message = document.getElementById('login-message');
  const signedIn = document.getElementById('signed-in');
  const userName = signedIn.querySelector('.user-name');
  const signOutButton = document.getElementById('sign-out');
  let session = currentSession();

  function show() {
    form.hidden = Boolean(session);
    signedIn.hidden = !session;
    userName.textContent = session?.user?.name || session?.user?.id || '';
  }

  if (!config.dev_login && !session) {
    input.disabled = true;
    form.querySelector('button').disabled = true;
    message.textContent = 'Sign-in is not available on this server.';
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) {
      message.textContent = 'Enter a name to reserve tickets.';
      input.focus();
      return;
    }
    const button = form.querySelector('button');
    button.disabled = true;
    message.textContent = '';
    try {
      session = saveSession(await api.login(name));
      show();
      announce(`Signed in as ${session.user.name || session.user.id}.`);
      signOutButton.focus();
      onChange(session);
    } catch (error) {
      message.textContent = error?.status === 404 ? 'Sign-in is not available on this server.' : `Could not sign in: ${error?.message ?? error}`;
    } finally {
      button.disabled = false;
    }
  });

  function signOut() {
    clearSession();
    session = null;
    show();
    onChange(null);
  }

  signOutButton.addEventListener('click', () => {
    signOut();
    announce('Signed out.');
    input.focus();
  });

  show();
  return {
    session: () => (session = currentSession()),
    signOut,
    focus: () => (session ? signOutButton : input).focus(),
  };
}
