/* Admission control, shown as why and until when: the admission panel (global attempts, each
   organization's block, cooldown and countdown, unblock / reset for admins, and the charts: attempts over
   the rolling hour server-wide and the rolling day per organization against their limits, with the
   cooldowns and blocks ahead as bars with their end time) and the queued / denied note on a session's row.
   Owns: the last rate-limit status and the coalescing of its refreshes.
   Not: the per-session admission state (kept on the session by sessions.js), the connect call itself. */
import { state, isAdmin } from './state.js';
import { $, el, button, keepFocus } from './dom.js';
import { countdownSpan, sinceSpan, tick } from './time.js';
import { api, act, enc } from './api.js';
import { t, tCode } from './i18n.js';
import { attemptsChart, holdsChart } from './chart.js';

let rate = null;
let rateBusy = false;
let rateDirty = false;

export function resetAdmission() {
  rate = null;
  rateBusy = false;
  rateDirty = false;
}

// A queued or denied session: its place in line and when it starts, or why it is held and until when.
export function admissionNote(td, adm) {
  if (!adm || (adm.status !== 'queued' && adm.status !== 'denied')) return;
  const note = td.appendChild(el('span', { class: 'admission-note admission-' + adm.status }));
  if (adm.status === 'queued') {
    note.textContent = t('adm.queued', { position: adm.position === undefined || adm.position === null ? '?' : adm.position }) + ' ';
    if (adm.start_at) note.appendChild(countdownSpan(adm.start_at, 'adm.startsIn', 'adm.startsNow'));
  } else {
    note.textContent = t('adm.denied', { reason: tCode('block.', adm.reason) }) + ' ';
    if (adm.proxy) note.append(adm.proxy + ' ');
    if (adm.block_until) note.appendChild(countdownSpan(adm.block_until, 'countdown.left', 'countdown.over'));
    else if (adm.wait_time_minutes) note.append(t('adm.waitMinutes', { n: adm.wait_time_minutes }));
  }
}

// One GET per trigger (a WebSocket event or an action); triggers mid-flight coalesce into one more GET.
export async function refreshRate() {
  if (rateBusy) { rateDirty = true; return; }
  rateBusy = true;
  const epoch = state.epoch;
  await act('admission-message', async () => {
    const r = await api('GET', '/api/rate-limit-status');
    if (epoch === state.epoch) { rate = r; renderAdmission(); }
  });
  if (epoch !== state.epoch) return;
  rateBusy = false;
  if (rateDirty) { rateDirty = false; refreshRate(); }
}

export function renderAdmission() {
  const r = rate;
  const global = $('global-attempts');
  global.textContent = r ? t('adm.global', { n: r.global_attempts_last_hour, limit: r.global_limit }) : '';
  if (r && r.global_blocked) global.append(' — ', el('strong', { class: 'bad' }, t('adm.globalBlocked')));
  global.dataset.blocked = String(!!(r && r.global_blocked));
  const orgs = (r && r.organizations) || [];
  const body = $('admission-body');
  keepFocus(body, () => { body.textContent = ''; orgs.forEach((o) => body.appendChild(orgRow(o))); });
  $('admission-empty').hidden = orgs.length > 0;
  renderCharts(r, orgs);
  tick();
}

const HOUR = 3600 * 1000;

function renderCharts(r, orgs) {
  const box = $('admission-charts');
  box.textContent = '';
  if (!r) return;
  const now = Date.now();
  if (isAdmin()) {
    const fig = box.appendChild(el('figure', { class: 'chart-figure', 'data-chart': 'server' }));
    fig.appendChild(el('figcaption', {}, t('chart.server')));
    fig.appendChild(attemptsChart({ id: 'chart-server', title: t('chart.server'), times: r.global_attempt_times || [],
      limit: r.global_limit, windowMs: HOUR, buckets: 12, now }));
  }
  orgs.forEach((o, i) => {
    const fig = box.appendChild(el('figure', { class: 'chart-figure', 'data-chart': 'tenant', 'data-org-id': o.organization_id }));
    fig.appendChild(el('figcaption', {}, t('chart.tenant', { id: o.organization_id })));
    fig.appendChild(attemptsChart({ id: 'chart-org-' + i, title: t('chart.tenant', { id: o.organization_id }), times: o.attempt_times || [],
      limit: o.daily_limit, windowMs: 24 * HOUR, buckets: 24, now }));
    fig.appendChild(holdsChart({ id: 'chart-holds-' + i, title: t('chart.holds', { id: o.organization_id }), holds: holdsOf(o), now }));
  });
}

// What holds an organization back, and until when (a denial's own end only when it adds one).
function holdsOf(o) {
  const holds = [];
  if (o.cooldown_until) holds.push({ kind: 'cooldown', label: t('chart.cooldown'), until: o.cooldown_until });
  if (o.blocked_until) holds.push({ kind: 'block', label: t('chart.block'), until: o.blocked_until });
  const known = [o.cooldown_until, o.blocked_until];
  if (o.block_until && !known.includes(o.block_until)) holds.push({ kind: 'denied', label: tCode('block.', o.block_reason), until: o.block_until });
  return holds;
}

const yesNo = (value, goodWhenTrue) =>
  el('span', { class: 'badge ' + (value === goodWhenTrue ? 'badge-ok' : 'badge-bad') }, t(value ? 'yes' : 'no'));

function orgRow(o) {
  const row = el('tr', { 'data-org-id': o.organization_id, 'data-can-connect': String(!!o.can_connect) });
  const add = (labelKey, content) => {
    const td = row.appendChild(el('td', { 'data-label': t(labelKey) }));
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    return td;
  };
  const wait = o.wait_time_minutes ? t('adm.waitMinutes', { n: o.wait_time_minutes }) : '—';
  add('adm.col.org', o.organization_id);
  add('adm.col.canConnect', yesNo(!!o.can_connect, true));
  add('adm.col.reason', o.block_reason ? tCode('block.', o.block_reason) : '—');
  add('adm.col.remaining', o.block_until ? countdownSpan(o.block_until, 'countdown.left', 'countdown.over') : wait);
  add('adm.col.attempts', o.attempts_last_24h + ' / ' + o.daily_limit);
  add('adm.col.block515', yesNo(!!o.is_blocked_515, false));
  add('adm.col.lastFailure', o.last_failure ? sinceSpan(o.last_failure) : '—');
  const actions = add('col.actions', '');
  actions.classList.add('admin-only', 'actions');
  if (isAdmin()) {
    ['unblock', 'reset-cooldown'].forEach((a) => actions.appendChild(button({ 'data-org-action': a, 'data-key': a + ':' + o.organization_id },
      t('adm.action.' + a), t('adm.action.' + a) + ': ' + o.organization_id)));
  }
  return row;
}

// Unblock / reset cooldown (admins).
export async function orgAction(btn) {
  const orgId = btn.closest('tr').dataset.orgId;
  await api('POST', '/api/v1/tenants/' + enc(orgId) + '/' + btn.dataset.orgAction);
  return t('adm.done.' + btn.dataset.orgAction, { id: orgId });
}
