/* The session list: fetching it, its table rows (updated in place), the row actions (connect,
   disconnect, log out, delete with a second click, show QR), the new-session form, and the
   transition and admission events applied to it.
   Owns: the rows by session id and which session the "queued" notice is about; the sessions
   themselves are shared (state.js) because the QR, send and demo phone views read them.
   Not: how those views render (qr.js, send.js, sim.js), the admission note's content (admission.js). */
import { state, isAdmin, sortedSessions } from './state.js';
import { $, el, button, setMsg } from './dom.js';
import { countdownSpan, sinceSpan } from './time.js';
import { api, act, sessionPath, errorText } from './api.js';
import { t, tCode } from './i18n.js';
import { syncQr, showQrOf, reloadShownQr, qrTransition } from './qr.js';
import { renderSendOptions } from './send.js';
import { renderOtpOptions } from './otp.js';
import { renderPhone, refreshDevices } from './sim.js';
import { admissionNote, refreshRate } from './admission.js';

const LIVE_STATES = ['CONNECTING', 'QR', 'AUTHENTICATED', 'READY'];

let rows = new Map();
let queuedNoticeFor = null; // kept across a logout, as it always was

export function resetSessions() {
  state.sessions = new Map();
  rows = new Map();
}

export async function loadSessions() {
  const epoch = state.epoch;
  await act('sessions-message', async () => {
    const r = await api('GET', '/api/v1/sessions');
    if (epoch !== state.epoch) return;
    state.sessions = new Map((r.sessions || []).map((s) => [s.id, s]));
    sessionsChanged();
    reloadShownQr(); // its code may have rotated while we were not listening
  });
}

export function sessionsChanged(updated) {
  if (updated) state.sessions.set(updated.id, updated);
  renderSessions();
  syncQr();
  renderSendOptions();
  renderOtpOptions();
  renderPhone();
}

// Rows are updated in place, so focus and a pending delete confirmation survive live updates.
export function renderSessions() {
  const body = $('sessions-body');
  const list = sortedSessions();
  list.forEach((s, i) => {
    const row = rows.get(s.id) || createRow(s.id);
    updateRow(row, s);
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  rows.forEach((row, id) => { if (!state.sessions.has(id)) { row.remove(); rows.delete(id); } });
  $('sessions-empty').hidden = list.length > 0;
  $('sessions-table').hidden = list.length === 0;
}

function createRow(id) {
  const row = el('tr', { 'data-session-id': id });
  ['name', 'tenant', 'state', 'reason', 'since', 'phone', 'actions']
    .forEach((col) => row.appendChild(el('td', { class: 'col-' + col, 'data-col': col })));
  row.querySelector('.col-tenant').classList.add('admin-only');
  const actions = row.querySelector('.col-actions');
  ['connect', 'disconnect', 'logout', 'delete', 'show-qr']
    .forEach((a) => actions.appendChild(button({ class: 'btn btn-small btn-' + a, 'data-action': a })));
  rows.set(id, row);
  return row;
}

function updateRow(row, s) {
  const cells = {};
  row.querySelectorAll('td').forEach((td) => { td.dataset.label = t('col.' + td.dataset.col); cells[td.dataset.col] = td; });
  row.dataset.state = s.state;
  cells.name.textContent = s.name;
  cells.tenant.textContent = s.tenant_id;
  cells.state.textContent = s.state;
  cells.state.className = 'col-state state state-' + String(s.state).toLowerCase();
  cells.state.title = tCode('state.', s.state);
  cells.reason.textContent = s.state === 'DISCONNECTED' && s.reason ? tCode('reason.', s.reason) : '';
  admissionNote(cells.reason, s.admission);
  cells.since.textContent = '';
  if (s.since) cells.since.appendChild(sinceSpan(s.since));
  cells.phone.textContent = s.phone || '—';
  updateRowButtons(row, s);
}

function updateRowButtons(row, s) {
  const neverConnected = s.state === 'DISCONNECTED' && (!s.reason || s.reason === 'never_connected');
  const enabled = {
    connect: s.state === 'DISCONNECTED', disconnect: LIVE_STATES.includes(s.state),
    logout: !neverConnected, delete: true, 'show-qr': s.state === 'QR',
  };
  row.querySelectorAll('button[data-action]').forEach((b) => {
    const action = b.dataset.action;
    b.disabled = !enabled[action];
    if (action === 'show-qr') b.hidden = s.state !== 'QR';
    if (b.dataset.armed) return;
    b.textContent = t('action.' + action);
    b.setAttribute('aria-label', t('action.' + action) + ': ' + s.name);
  });
}

export function onSessionAction(ev) {
  const btn = ev.target.closest('button[data-action]');
  const s = btn && !btn.disabled && state.sessions.get(btn.closest('tr').dataset.sessionId);
  if (!s) return;
  const action = btn.dataset.action;
  if (action === 'connect') connectSession(s);
  else if (action === 'disconnect' || action === 'logout') stopSession(s, action);
  else if (action === 'delete') deleteClicked(btn, s);
  else if (action === 'show-qr') showQrOf(s.id);
}

async function connectSession(s) {
  try {
    const r = await api('POST', sessionPath(s.id, '/connect'));
    if (r.outcome === 'queued') {
      r.session.admission = r.session.admission || { status: 'queued', start_at: r.start_at, position: r.position };
      const startsIn = r.start_at && countdownSpan(r.start_at, 'adm.startsIn', 'adm.startsNow');
      setMsg('sessions-message', t('msg.queued', { name: s.name, position: r.position }), false, startsIn);
      queuedNoticeFor = s.id;
    } else {
      setMsg('sessions-message', t('msg.alreadyLive', { name: s.name }));
    }
    if (r.session) sessionsChanged(r.session);
  } catch (e) {
    if (e.status === 429) connectDenied(s, e.details);
    else if (e.status !== 401) setMsg('sessions-message', errorText(e), true);
  }
}

// A 429 on connect: the row and the message show the reason and a countdown to block_until.
function connectDenied(s, d) {
  s.admission = { status: 'denied', reason: d.reason || d.code, wait_time_minutes: d.wait_time_minutes, block_until: d.block_until };
  sessionsChanged(s);
  const text = t('msg.denied', { name: s.name, reason: tCode('block.', s.admission.reason) });
  const left = d.block_until && countdownSpan(d.block_until, 'countdown.left', 'countdown.over');
  setMsg('sessions-message', d.block_until ? text : text + ' ' + (d.message || ''), true, left);
}

function stopSession(s, action) {
  act('sessions-message', async () => {
    const updated = await api('POST', sessionPath(s.id, '/' + action));
    if (updated && updated.id) sessionsChanged(updated);
    return t('msg.' + action, { name: s.name });
  });
}

// Delete asks for a second click within 5 s (an in-page confirmation rather than a modal dialog).
function deleteClicked(btn, s) {
  if (btn.dataset.armed) {
    clearTimeout(btn.armTimer);
    disarm(btn, s.id);
    act('sessions-message', async () => {
      await api('DELETE', sessionPath(s.id));
      state.sessions.delete(s.id);
      sessionsChanged();
      return t('msg.deleted', { name: s.name });
    });
    return;
  }
  btn.dataset.armed = '1';
  btn.textContent = t('action.confirmDelete');
  btn.setAttribute('aria-label', t('action.confirmDeleteAria', { name: s.name }));
  setMsg('sessions-message', t('msg.confirmDelete', { name: s.name }));
  btn.armTimer = setTimeout(() => disarm(btn, s.id), 5000);
}

function disarm(btn, id) {
  delete btn.dataset.armed;
  if (state.sessions.has(id)) updateRowButtons(btn.closest('tr'), state.sessions.get(id));
}

export async function onNewSession(ev) {
  ev.preventDefault();
  const name = $('new-session-name').value.trim();
  const tenant = $('new-session-tenant').value.trim();
  if (!name || (isAdmin() && !tenant)) { setMsg('new-session-error', t('new.missing'), true); return; }
  $('new-session-submit').disabled = true;
  await act('new-session-error', async () => {
    const s = await api('POST', '/api/v1/sessions', isAdmin() ? { tenant_id: tenant, name } : { name });
    sessionsChanged(s);
    $('new-session-name').value = '';
    return t('new.created', { name: s.name });
  });
  $('new-session-submit').disabled = false;
}

// A `transition` WebSocket event.
export function onTransition(m) {
  refreshRate();
  refreshDevices();
  const s = state.sessions.get(m.session_id);
  if (!s) { loadSessions(); return; } // a session this page has not seen yet
  const to = m.to || {};
  const wasQr = s.state === 'QR';
  const rotated = wasQr && to.state === 'QR' && to.code !== s.qr_code;
  s.state = to.state || s.state;
  s.since = m.at || s.since;
  s.reason = s.state === 'DISCONNECTED' ? (to.reason || m.reason || null) : null;
  if (to.me) s.phone = to.me;
  s.qr_expires_at = s.state === 'QR' ? (to.expires_at || null) : null;
  s.qr_code = s.state === 'QR' ? (to.code || null) : null;
  if (s.state !== 'QR') s.pairing_code = null;
  if (s.state !== 'DISCONNECTED') s.admission = null;
  // The "queued" notice of this session is over once it leaves DISCONNECTED.
  if (queuedNoticeFor === s.id && s.state !== 'DISCONNECTED') {
    setMsg('sessions-message', '');
    queuedNoticeFor = null;
  }
  qrTransition(s, wasQr, rotated);
  sessionsChanged();
}

// An `admission` WebSocket event: the session's queued / denied state.
export function onAdmission(m) {
  refreshRate();
  const s = state.sessions.get(m.session_id);
  if (!s) return;
  if (m.decision === 'queued') s.admission = { status: 'queued', start_at: m.start_at, position: m.position };
  else if (m.decision === 'denied') s.admission = { status: 'denied', reason: m.reason, wait_time_minutes: m.wait_time_minutes, block_until: m.block_until };
  else s.admission = null;
  sessionsChanged();
}
