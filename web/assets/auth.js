/* Signing in and out as the person sees it: the login view, the login form, the logout button and
   the user shown in the header.
   Owns: no state (the token is api.js's, the user is state.js's).
   Not: what entering the app starts or leaving it forgets (main.js passes those in as enter / leave). */
import { state } from './state.js';
import { $, setMsg } from './dom.js';
import { api, errorText, setToken } from './api.js';
import { t } from './i18n.js';

export function setLoggedIn(on) {
  $('login-view').hidden = on;
  ['app', 'logout-button', 'ws-status', 'user-info'].forEach((id) => { $(id).hidden = !on; });
}

export function showLogin(message) {
  setLoggedIn(false);
  $('login-submit').disabled = false;
  setMsg('login-error', message, true);
  $('login-username').focus();
}

export async function onLoginSubmit(ev, enter) {
  ev.preventDefault();
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  if (!username || !password) { setMsg('login-error', t('login.missing'), true); return; }
  setMsg('login-error', '');
  $('login-submit').disabled = true;
  try {
    const r = await api('POST', '/auth/login', { username, password }, { auth: false });
    setToken(r.token);
    $('login-password').value = '';
    enter(r.user);
  } catch (e) {
    const msg = { 401: t('login.invalid'), 429: t('login.tooMany') + ' ' + e.message }[e.status];
    setMsg('login-error', msg || errorText(e), true);
  } finally {
    $('login-submit').disabled = false;
  }
}

export async function onLogout(leave) {
  try { await api('POST', '/auth/logout', undefined, { noLogout: true }); } catch (e) { /* leaving anyway */ }
  leave('');
}

export function renderHeader() {
  const u = state.user;
  const vars = { name: u.username, role: t('role.' + u.role), tenant: u.tenant_id };
  $('user-info').textContent = t(u.tenant_id ? 'user.withTenant' : 'user.plain', vars);
}
