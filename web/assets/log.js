/* The live supervisor log (admins): lines from the WebSocket, the level and tenant filters, pause,
   and after a reconnect the audit entries missed while the socket was down.
   Owns: the kept lines (the newest LOG_CAP), the lines held while paused, and the paused flag.
   Not: the socket itself (ws.js) nor the log panel's visibility (main.js). */
import { isAdmin } from './state.js';
import { $, el } from './dom.js';
import { api, enc } from './api.js';
import { t, lang } from './i18n.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
const LOG_CAP = 500;

let logs = [];
let pending = [];
let paused = false;

export function resetLog() {
  logs = [];
  pending = [];
  paused = false;
}

const levelRank = (level) => (LEVELS.includes(level) ? LEVELS.indexOf(level) : LEVELS.indexOf('info')); // audit ranks as info

function passesFilter(entry) {
  const tenant = $('log-filter-tenant').value.trim().toLowerCase();
  return levelRank(entry.level) >= levelRank($('log-filter-level').value)
    && (!tenant || (entry.tenant || '').toLowerCase().includes(tenant));
}

function logLine(entry) {
  const li = el('li', { class: 'log-line level-' + entry.level, 'data-level': entry.level });
  const time = new Date(entry.at);
  const fields = Object.entries(entry.fields || {}).filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)));
  li.append(
    el('time', { class: 'log-time', datetime: entry.at || null }, isNaN(time) ? '' : time.toLocaleTimeString(lang(), { hour12: false })),
    el('span', { class: 'log-level' }, entry.level.toUpperCase()),
    el('span', { class: 'log-tenant' }, entry.tenant || '-'),
    el('span', { class: 'log-message', title: entry.target || null }, entry.message),
    el('span', { class: 'log-fields' }, fields.join(' ')));
  return li;
}

// Newest at the bottom; follows the tail only if the reader is already there.
function addLogEntry(entry) {
  logs.push(entry);
  if (logs.length > LOG_CAP) logs.shift();
  if (!passesFilter(entry)) return;
  const list = $('log-lines');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.appendChild(logLine(entry));
  while (list.children.length > LOG_CAP) list.firstChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// While paused, lines wait in `pending` (the newest LOG_CAP of them).
function receiveLog(entry) {
  if (!paused) { addLogEntry(entry); return; }
  pending.push(entry);
  if (pending.length > LOG_CAP) pending.shift();
  updatePauseLabel();
}

// A `log` WebSocket event (also the form a missed one comes back in from the audit log).
export const receiveWsLog = (m) => receiveLog({
  at: m.at, level: String(m.level || 'info').toLowerCase(), tenant: m.tenant_id || '',
  target: m.target, message: m.message || '', fields: m.fields,
});

export function rerenderLogs() {
  const list = $('log-lines');
  const frag = document.createDocumentFragment();
  logs.filter(passesFilter).forEach((e) => frag.appendChild(logLine(e)));
  list.textContent = '';
  list.appendChild(frag);
  list.scrollTop = list.scrollHeight;
}

export function togglePause() {
  paused = !paused;
  if (!paused) pending.splice(0).forEach(addLogEntry);
  updatePauseLabel();
}

export function updatePauseLabel() {
  const b = $('log-pause');
  b.setAttribute('aria-pressed', String(paused));
  b.textContent = paused ? t('log.resume', { n: pending.length }) : t('log.pause');
}

// After a reconnect: what the audit log recorded while the socket was down. Missed supervisor
// log lines come back as log lines, everything else as "audit" lines (`data`, or `detail`, as fields).
export async function loadAudit(since) {
  if (!isAdmin() || !since) return;
  const r = await api('GET', '/api/v1/logs?since=' + enc(since)).catch(() => ({})); // best effort
  (r.entries || []).forEach((e) => {
    const data = e.data !== undefined ? e.data : e.detail;
    if (data && data.type === 'log') { receiveWsLog(data); return; }
    const fields = data && typeof data === 'object' ? Object.assign({}, data, { type: undefined, seq: undefined }) : { detail: data };
    receiveLog({ at: e.at, level: 'audit', tenant: e.tenant || '', target: 'audit', message: t('log.audit', { actor: e.actor || '-', action: e.action || '' }), fields });
  });
}
