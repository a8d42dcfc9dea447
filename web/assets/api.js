/* The HTTP API client: the fetch wrapper, its errors, and the bearer token (kept in sessionStorage).
   Owns: the token, and running an API action into a message area (act, delegate).
   Not: what a 401 leads to (main.js passes that in with onExpired), the WebSocket (ws.js). */
import { $, setMsg, whileBusy } from './dom.js';
import { t, has } from './i18n.js';

const TOKEN_KEY = 'centinela_token';
let token = null;
let expired = () => {};

export const enc = encodeURIComponent;
export const sessionPath = (id, rest) => '/api/v1/sessions/' + enc(id) + (rest || '');

export const getToken = () => token;
export const loadToken = () => { token = sessionStorage.getItem(TOKEN_KEY); return token; };
export function setToken(value) {
  token = value;
  sessionStorage.setItem(TOKEN_KEY, value);
}
export function clearToken() {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

// What a 401 on an authenticated call does (ends the session, with this message).
export const onExpired = (fn) => { expired = fn; };

function apiError(status, body, fallback) {
  const detail = (body && body.error) || {};
  const e = new Error(detail.message || fallback || 'HTTP ' + status);
  return Object.assign(e, { status, code: detail.code || (status ? 'http_' + status : 'network'), details: detail });
}

// opts.auth (default true): send the token, and a 401 ends the session unless opts.noLogout.
// opts.text: return the body as text (the SVG QR). opts.headers: more request headers.
export async function api(method, path, body, opts) {
  const o = Object.assign({ auth: true, noLogout: false, text: false, headers: {} }, opts);
  const headers = Object.assign({}, o.headers);
  if (o.auth && token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw apiError(0, null, t('error.network'));
  }
  if (res.ok && o.text) return res.text();
  const raw = await res.text();
  let data = null;
  try { data = raw ? JSON.parse(raw) : null; } catch (e) { /* not JSON */ }
  if (res.status === 401 && o.auth && !o.noLogout) expired(t('login.expired'));
  if (!res.ok) throw apiError(res.status, data, res.statusText);
  return data;
}

export function errorText(e) {
  if (e.status === 0) return t('error.network');
  if (has('error.' + e.code)) return t('error.' + e.code);
  return has('block.' + e.code) ? t('block.' + e.code) : e.message;
}

// Runs an API action; the text it returns (or its error) goes to a message area.
export async function act(msgId, fn) {
  try {
    const text = await fn();
    if (typeof text === 'string') setMsg(msgId, text);
  } catch (e) {
    if (e.status !== 401) setMsg(msgId, errorText(e), true);
  }
}

// Delegated clicks on buttons matching selector: the button is disabled while run(btn) works.
export function delegate(containerId, selector, msgId, run, after) {
  $(containerId).addEventListener('click', async (ev) => {
    const btn = ev.target.closest(selector);
    if (!btn || btn.disabled || btn.dataset.busy) return;
    await whileBusy(btn, () => act(msgId, () => run(btn)));
    after();
  });
}
