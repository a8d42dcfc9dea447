/* The QR panel: which session it shows, its QR image (fetched with the token, inlined as a data: URL),
   the expiry countdown and the pairing code line.
   Owns: the shown session's id and the ticket that drops stale images.
   Not: asking for a pairing code (phone.js), the session list (sessions.js), scanning (sim.js). */
import { state, sortedSessions } from './state.js';
import { $, setMsg } from './dom.js';
import { tickCountdown } from './time.js';
import { api, sessionPath, errorText } from './api.js';
import { t } from './i18n.js';

let qrId = null;
let qrTicket = 0; // survives logout: an image still on its way is dropped either way

export const shownQrId = () => qrId;
export const resetQr = () => { qrId = null; };

// Keeps the QR panel on a session in QR (the first one, if the shown one left QR) or hides it.
export function syncQr() {
  const current = state.sessions.get(qrId);
  if (!current || current.state !== 'QR') {
    const next = sortedSessions().find((s) => s.state === 'QR');
    qrId = next ? next.id : null;
    if (next) loadQr(next.id);
  }
  renderQr();
}

// The shown QR again, after the list was fetched anew (its code may have rotated while we were not listening).
export const reloadShownQr = () => { if (qrId) loadQr(qrId); };

// A session that starts showing a QR takes the panel; a rotation reloads the image shown.
export function qrTransition(s, wasQr, rotated) {
  if (s.state === 'QR' && (!wasQr || (rotated && qrId === s.id))) { qrId = s.id; loadQr(s.id); }
}

export function showQrOf(id) {
  qrId = id;
  loadQr(id);
  renderQr();
  $('qr-panel').scrollIntoView({ block: 'nearest' });
}

export function renderQr() {
  const s = state.sessions.get(qrId);
  const img = $('qr-image');
  const countdown = $('qr-countdown');
  $('qr-panel').hidden = !s;
  countdown.dataset.until = (s && s.qr_expires_at) || '';
  countdown.textContent = '';
  if (!s) {
    qrTicket += 1; // drops any image still on its way
    img.removeAttribute('src');
    img.dataset.sessionId = '';
    setMsg('qr-error', '');
    return;
  }
  $('qr-session-name').textContent = t('qr.for', { name: s.name });
  $('pairing-code-value').textContent = s.pairing_code ? t('qr.code', { code: s.pairing_code.code }) : '';
  img.alt = t('qr.alt', { name: s.name });
  if (s.qr_expires_at) tickCountdown(countdown);
}

function svgDataUrl(text) {
  let binary = '';
  new TextEncoder().encode(text).forEach((b) => { binary += String.fromCharCode(b); });
  return 'data:image/svg+xml;base64,' + btoa(binary);
}

// An <img> cannot send the bearer token, so the SVG is fetched and inlined as a data: URL.
async function loadQr(id) {
  const ticket = ++qrTicket;
  try {
    const svg = await api('GET', sessionPath(id, '/qr?format=svg'), undefined, { text: true });
    if (ticket !== qrTicket || qrId !== id) return;
    $('qr-image').src = svgDataUrl(svg);
    $('qr-image').dataset.sessionId = id;
    setMsg('qr-error', '');
  } catch (e) {
    if (ticket === qrTicket && e.status !== 401) setMsg('qr-error', e.status === 409 ? t('qr.gone') : errorText(e), true);
  }
}
