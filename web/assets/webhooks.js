/* The Webhooks panel, per tenant: the URL (the signing secret shown once, with a copy button), a test
   event, removal, and the deliveries (pending, delivered, dead) with their last error and a redeliver
   button; each attempt's outcome arrives live (`webhook` WebSocket events).
   Owns: the chosen tenant, its target, its deliveries and the status filter.
   Not: delivering (the server's), the tenant list (tenants.js). */
import { state } from './state.js';
import { $, el, button, keepFocus, setMsg } from './dom.js';
import { api, enc } from './api.js';
import { t, tCode } from './i18n.js';
import { fillTenantSelect } from './tenants.js';
import { sinceSpan } from './time.js';

let tenant = '';
let target = null; // { url, secret_prefix } or null
let deliveries = [];

const base = () => '/api/v1/tenants/' + enc(tenant) + '/webhook';

export function resetWebhooks() {
  tenant = '';
  target = null;
  deliveries = [];
  $('hook-secret-box').hidden = true;
  $('hook-secret').textContent = '';
}

export function renderHookTenants() {
  const chosen = fillTenantSelect('hook-tenant', tenant);
  if (chosen !== tenant) { tenant = chosen; loadWebhook(); }
}

export const onHookTenant = () => { tenant = $('hook-tenant').value; $('hook-secret-box').hidden = true; loadWebhook(); };

export async function loadWebhook() {
  if (!tenant) { target = null; deliveries = []; renderWebhook(); return; }
  const [epoch, id] = [state.epoch, tenant];
  try {
    target = await api('GET', base());
  } catch (e) {
    if (e.status !== 404) { setMsg('hook-message', e.message, true); return; }
    target = null;
  }
  await loadDeliveries(epoch, id);
}

async function loadDeliveries(epoch, id) {
  const filter = $('hook-filter').value;
  try {
    const r = await api('GET', base() + '/deliveries' + (filter ? '?status=' + enc(filter) : ''));
    if (epoch !== state.epoch || id !== tenant) return;
    deliveries = r.deliveries || [];
  } catch (e) {
    if (e.status !== 401) setMsg('hook-message', e.message, true);
  }
  renderWebhook();
}

export const refreshDeliveries = () => loadDeliveries(state.epoch, tenant);

export function renderWebhook() {
  $('hook-current').textContent = target ? t('hook.current', { url: target.url, prefix: target.secret_prefix }) : t('hook.noneSet');
  $('hook-current').dataset.url = target ? target.url : '';
  $('hook-test').disabled = $('hook-delete').disabled = !target;
  const body = $('hook-body');
  keepFocus(body, () => { body.textContent = ''; deliveries.forEach((d) => body.appendChild(deliveryRow(d))); });
  $('hook-table').hidden = deliveries.length === 0;
  $('hook-empty').hidden = deliveries.length > 0;
  $('hook-copy').textContent = t('hook.copy');
}

function eventOf(d) {
  try { return JSON.parse(d.body).event || '?'; } catch (e) { return '?'; }
}

function deliveryRow(d) {
  const tr = el('tr', { 'data-delivery-id': d.id, 'data-status': d.status, 'data-event': eventOf(d) });
  const cell = (label, content) => {
    const td = tr.appendChild(el('td', { 'data-label': t(label) }));
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    return td;
  };
  // The row's first cell holds the focus while its button is gone (pending), across live re-renders.
  const first = cell('hook.col.event', eventOf(d));
  first.dataset.key = 'delivery:' + d.id;
  first.tabIndex = -1;
  cell('hook.col.status', el('span', { class: 'hook-status hook-' + d.status }, tCode('hook.status.', d.status)));
  cell('hook.col.attempts', String(d.attempts));
  cell('hook.col.error', d.last_error ? tCode('hook.error.', d.last_error) : '—').classList.add('hook-error');
  cell('hook.col.created', sinceSpan(d.created_at));
  const last = d.last_attempt_at ? sinceSpan(d.last_attempt_at) : '—';
  cell('hook.col.last', last);
  const actions = cell('col.actions', '');
  actions.classList.add('actions');
  if (d.status !== 'pending') {
    actions.appendChild(button({ 'data-hook-action': 'redeliver', 'data-delivery-id': d.id, 'data-key': 'redeliver:' + d.id },
      t('hook.redeliver'), t('hook.redeliverAria', { event: eventOf(d), id: d.id })));
  }
  return tr;
}

export async function onHookSave() {
  const url = $('hook-url').value.trim();
  if (!tenant || !url) throw new Error(t('hook.missingUrl'));
  const r = await api('PUT', base(), { url });
  target = { url: r.url, secret_prefix: r.secret.slice(0, 4) + '…' };
  $('hook-secret').textContent = r.secret;
  $('hook-secret-box').hidden = false;
  $('hook-url').value = '';
  renderWebhook();
  $('hook-copy').focus();
  return t('hook.saved', { url: r.url });
}

// Copies the secret shown once; the button says it did.
export async function onHookCopy() {
  const secret = $('hook-secret').textContent;
  try {
    await navigator.clipboard.writeText(secret);
    $('hook-copy').textContent = t('hook.copied');
  } catch (e) {
    // No clipboard (plain http, or refused): select it for Ctrl+C.
    window.getSelection().selectAllChildren($('hook-secret'));
    $('hook-copy').textContent = t('hook.copyManually');
  }
}

export async function onHookTest() {
  const r = await api('POST', base() + '/test');
  deliveries = [r.delivery].concat(deliveries.filter((d) => d.id !== r.delivery.id));
  renderWebhook();
  return t('hook.testQueued');
}

export async function onHookDelete() {
  await api('DELETE', base());
  target = null;
  $('hook-secret-box').hidden = true;
  renderWebhook();
  return t('hook.removed');
}

export async function hookAction(btn) {
  const r = await api('POST', base() + '/deliveries/' + enc(btn.dataset.deliveryId) + '/redeliver');
  // The attempt may have been made, and its WebSocket event shown, before
  // this answer arrived: a pending copy must not hide a newer outcome.
  const known = deliveries.find((x) => x.id === r.delivery.id);
  if (!known || when(known.last_attempt_at) <= when(r.delivery.last_attempt_at)) replace(r.delivery);
  // The button goes while the delivery is pending: the focus stays on its row.
  const row = $('hook-body').querySelector('[data-delivery-id="' + CSS.escape(r.delivery.id) + '"] td');
  if (row) row.focus();
  return t('hook.redelivered');
}

// A time as the API gives it (RFC 3339 or milliseconds) in ms; 0 for none.
const when = (v) => (typeof v === 'number' ? v : Date.parse(v || '') || 0);

function replace(d) {
  const i = deliveries.findIndex((x) => x.id === d.id);
  if (i >= 0) deliveries[i] = Object.assign({}, deliveries[i], d);
  else deliveries.unshift(d);
  renderWebhook();
}

// A `webhook` WebSocket event: one attempt of one delivery was recorded.
export function onWebhookEvent(m) {
  if (m.tenant_id !== tenant) return;
  const d = deliveries.find((x) => x.id === m.delivery_id);
  if (!d) { refreshDeliveries(); return; }
  replace(Object.assign({}, d, { status: m.status, attempts: m.attempts, last_error: m.last_error, last_attempt_at: m.at }));
}
