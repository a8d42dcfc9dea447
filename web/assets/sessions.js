/* The session list: fetching it, its table rows (updated in place), the row actions (connect,
   disconnect, log out, delete with a second click, show QR), the new-session form, and the
   transition, admission and risk events applied to it, and each row's ban risk and new-contact
   budget (refetched when the session's messages move).
   The list stays usable with thousands of sessions: filtered by name / tenant / state on the client
   and shown a page at a time (only that page's rows exist in the DOM).
   Owns: the rows by session id, the filter and page, and which session the "queued" notice is about; the sessions
   themselves are shared (state.js) because the QR, send and demo phone views read them.
   Not: how those views render (qr.js, send.js, sim.js, conversations.js, campaigns.js), the admission note's content (admission.js). */
import { state, isAdmin, sortedSessions } from './state.js';
import { $, el, button, setMsg, whileBusy } from './dom.js';
import { countdownSpan, sinceSpan } from './time.js';
import { api, act, sessionPath, errorText } from './api.js';
import { t, tCode, lang } from './i18n.js';
import { syncQr, showQrOf, reloadShownQr, qrTransition } from './qr.js';
import { renderSendOptions } from './send.js';
import { renderOtpOptions } from './otp.js';
import { renderPhone, refreshDevices } from './sim.js';
import { admissionNote, refreshRate } from './admission.js';
import { renderChatSessions } from './conversations.js';
import { renderCampaignSessions } from './campaigns.js';
import { onSessionsCounted } from './access.js';

const LIVE_STATES = ['CONNECTING', 'QR', 'AUTHENTICATED', 'READY'];

let rows = new Map();
let queuedNoticeFor = null; // kept across a logout, as it always was
let page = 0;
export const PAGE_SIZE = 50;
const STATES = ['DISCONNECTED', 'CONNECTING', 'QR', 'AUTHENTICATED', 'READY'];

export function resetSessions() {
  state.sessions = new Map();
  rows = new Map();
  page = 0;
  ['sessions-filter', 'sessions-filter-tenant', 'sessions-filter-state'].forEach((id) => { $(id).value = ''; });
}

// The filter as typed: text in the name, id or phone; a tenant; a state.
function matches(s) {
  const text = $('sessions-filter').value.trim().toLowerCase();
  const tenant = $('sessions-filter-tenant').value;
  const st = $('sessions-filter-state').value;
  return (!text || [s.name, s.id, s.phone].some((v) => String(v || '').toLowerCase().includes(text)))
    && (!tenant || s.tenant_id === tenant) && (!st || s.state === st);
}

// A filter change starts again at the first page.
export function onSessionFilter() {
  page = 0;
  renderSessions();
}

export function onSessionPage(ev) {
  page += ev.currentTarget.id === 'sessions-next' ? 1 : -1;
  renderSessions();
  const b = ev.currentTarget;
  if (b.disabled) (b.id === 'sessions-next' ? $('sessions-prev') : $('sessions-next')).focus();
}

// The filter's tenant and state choices (kept when they are still offered).
function renderFilterOptions() {
  const tenants = [...new Set([...state.sessions.values()].map((s) => s.tenant_id))].sort();
  const fill = (id, values, label, allKey) => {
    const select = $(id);
    const key = JSON.stringify([lang(), values]);
    if (select.dataset.key === key) return;
    const keep = select.value;
    select.dataset.key = key;
    select.textContent = '';
    select.appendChild(el('option', { value: '' }, t(allKey)));
    values.forEach((v) => select.appendChild(el('option', { value: v }, label(v))));
    select.value = values.includes(keep) ? keep : '';
  };
  fill('sessions-filter-tenant', tenants, (v) => v, 'filter.allTenants');
  fill('sessions-filter-state', STATES, (v) => tCode('state.', v), 'filter.allStates');
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
  renderChatSessions();
  renderCampaignSessions();
  onSessionsCounted();
}

// Rows are updated in place, so focus and a pending delete confirmation survive live updates.
export function renderSessions() {
  renderFilterOptions();
  const body = $('sessions-body');
  const all = sortedSessions();
  const list = all.filter(matches);
  const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
  page = Math.min(Math.max(0, page), pages - 1);
  const shown = list.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  const visible = new Set(shown.map((s) => s.id));
  rows.forEach((row, id) => { if (!visible.has(id)) { row.remove(); rows.delete(id); } });
  shown.forEach((s, i) => {
    const row = rows.get(s.id) || createRow(s.id);
    updateRow(row, s);
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  const count = $('sessions-count');
  count.dataset.total = String(all.length);
  count.dataset.matching = String(list.length);
  count.dataset.page = String(page + 1);
  count.dataset.pages = String(pages);
  count.textContent = list.length ? t('filter.count', { from: page * PAGE_SIZE + 1, to: page * PAGE_SIZE + shown.length, matching: list.length, total: all.length }) : '';
  $('sessions-prev').disabled = page === 0;
  $('sessions-next').disabled = page >= pages - 1;
  $('sessions-pager').hidden = list.length <= PAGE_SIZE;
  $('sessions-tools').hidden = all.length === 0;
  $('sessions-empty').hidden = all.length > 0;
  $('sessions-nomatch').hidden = all.length === 0 || list.length > 0;
  $('sessions-table').hidden = list.length === 0;
}

function createRow(id) {
  const row = el('tr', { 'data-session-id': id });
  ['name', 'tenant', 'state', 'reason', 'since', 'phone', 'risk', 'actions']
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
  // The state in the page's language; its machine name (what the API and the logs say) as the title.
  cells.state.textContent = tCode('state.', s.state);
  cells.state.className = 'col-state state state-' + String(s.state).toLowerCase();
  cells.state.title = s.state;
  cells.reason.textContent = s.state === 'DISCONNECTED' && s.reason ? tCode('reason.', s.reason) : '';
  admissionNote(cells.reason, s.admission);
  cells.since.textContent = '';
  if (s.since) cells.since.appendChild(sinceSpan(s.since));
  cells.phone.textContent = s.phone || '—';
  renderRisk(cells.risk, s);
  updateRowButtons(row, s);
}

// The risk badge (click: why) and what is left of the day's new-contact budget.
// Rebuilt only when it changed, so a focused badge survives live updates.
function renderRisk(cell, s) {
  const key = JSON.stringify([s.risk, s.contact_budget, lang()]);
  if (cell.dataset.key === key) return;
  cell.dataset.key = key;
  cell.textContent = '';
  if (!s.risk) { cell.textContent = '—'; return; }
  cell.appendChild(button({ class: 'risk-badge risk-' + s.risk, 'data-risk-of': s.id, 'data-level': s.risk,
    'aria-label': t('risk.why', { name: s.name }) }, t('risk.' + s.risk)));
  const b = s.contact_budget;
  if (!b) return;
  const budget = el('span', { class: 'budget', 'data-used': String(b.used), 'data-allowance': String(b.allowance) },
    t('budget.left', { used: b.used, allowance: b.allowance }));
  if (b.warmup_day) budget.appendChild(document.createTextNode(' ' + t('budget.warmup', { day: b.warmup_day, of: b.warmup_days })));
  if (b.next_at) budget.title = t('budget.nextAt', { at: new Date(b.next_at).toLocaleString() });
  cell.append(' ', budget);
}

// Why the session's risk is what it is, in the sessions message line.
async function showRisk(s) {
  await act('sessions-message', async () => {
    const r = await api('GET', sessionPath(s.id, '/risk'));
    const reasons = (r.reasons || []).map((x) => tCode('riskReason.', x)).join('; ') || t('riskReason.none');
    const rate = r.week.new_contact_reply_rate;
    return t('risk.detail', { name: s.name, level: t('risk.' + r.level), reasons,
      sent: r.day.sent, fresh: r.day.new_contacts, deferred: r.day.deferred,
      rate: rate === null || rate === undefined ? '—' : Math.round(rate * 100) + ' %' });
  });
}

const refreshing = new Map();

// Refetches one session (its budget and risk moved); one request at a time per session.
function refreshSession(id) {
  if (refreshing.get(id)) { refreshing.set(id, 'again'); return; }
  refreshing.set(id, 'busy');
  const epoch = state.epoch;
  api('GET', sessionPath(id)).then((s) => {
    if (epoch === state.epoch && state.sessions.has(id)) sessionsChanged(s);
  }).catch(() => { /* the next event or reload tries again */ }).finally(() => {
    const again = refreshing.get(id) === 'again';
    refreshing.delete(id);
    if (again) refreshSession(id);
  });
}

// A `risk` WebSocket event: the level moved.
export function onRisk(m) {
  const s = state.sessions.get(m.session_id);
  if (!s) return;
  s.risk = m.level;
  sessionsChanged();
  refreshSession(s.id);
}

// A `message_status` event: a send, failure or deferral moves the budget.
export function onMessageStatus(m) {
  if (['sent', 'deferred', 'failed'].includes(m.status) && state.sessions.has(m.session_id)) refreshSession(m.session_id);
}

function updateRowButtons(row, s) {
  const focused = row.contains(document.activeElement) ? document.activeElement : null;
  setRowButtons(row, s);
  // A pressed button that is now disabled (Connect, once connecting) hands the focus to the row's
  // first enabled one (Disconnect), so a keyboard user is not sent back to the top of the page.
  if (focused && (focused.disabled || focused.hidden)) {
    const next = [...row.querySelectorAll('button')].find((b) => !b.disabled && !b.hidden);
    if (next) next.focus();
  }
}

function setRowButtons(row, s) {
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
  const badge = ev.target.closest('button[data-risk-of]');
  if (badge) { const of = state.sessions.get(badge.dataset.riskOf); if (of) showRisk(of); return; }
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
  await whileBusy($('new-session-submit'), () => act('new-session-error', async () => {
    const s = await api('POST', '/api/v1/sessions', isAdmin() ? { tenant_id: tenant, name } : { name });
    sessionsChanged(s);
    $('new-session-name').value = '';
    return t('new.created', { name: s.name });
  }));
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
  // READY starts a number's warm-up: its budget is read again (the
  // supervisor has recorded the pairing by the time this event is out).
  if (s.state === 'READY') refreshSession(s.id);
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
