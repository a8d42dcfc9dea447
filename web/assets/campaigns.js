/* The Campaigns panel: a session's campaigns with live progress (sent, failed, remaining, ETA), their
   outlook under the new-contact budget and why the server paused one (risk_high); start, pause,
   resume and cancel; the failures of one; and the new-campaign form: a template with {variables} and
   recipients pasted or uploaded as CSV (header row = variable names, a `to` column), previewed by the
   server (the first texts and every rejected row with why) before it is saved as a draft.
   Owns: the chosen session, its campaigns, the CSV parsing and the last preview.
   Not: the sessions (state.js), the WebSocket (ws.js hands the `campaign` events in). */
import { state, sortedSessions } from './state.js';
import { $, el, button, keepFocus, setMsg } from './dom.js';
import { api, act, enc, sessionPath } from './api.js';
import { t, tCode, lang } from './i18n.js';

let sessionId = '';
let sessionKey = '';
let campaigns = [];
let preview = null; // { body, accepted recipients, answer } of the last preview of the form as it is
let failuresOf = null; // the campaign whose failures are shown
let failures = [];
let wantFocus = null; // the data-key to focus after the next render (a row's action was pressed)

export function resetCampaigns() {
  sessionId = '';
  sessionKey = '';
  campaigns = [];
  preview = null;
  failuresOf = null;
  failures = [];
}

export function renderCampaignSessions() {
  const list = sortedSessions();
  const key = JSON.stringify([lang(), list.map((s) => [s.id, s.name, s.phone])]);
  if (key !== sessionKey) {
    sessionKey = key;
    const select = $('camp-session');
    select.textContent = '';
    list.forEach((s) => select.appendChild(el('option', { value: s.id }, s.phone ? s.name + ' (' + s.phone + ')' : s.name)));
    if (!list.length) select.appendChild(el('option', { value: '' }, t('chats.noSession')));
    select.disabled = !list.length;
  }
  if (list.some((s) => s.id === sessionId)) $('camp-session').value = sessionId;
  else if (list.length) chooseSession(list[0].id);
}

function chooseSession(id) {
  sessionId = id;
  $('camp-session').value = id;
  campaigns = [];
  failuresOf = null;
  renderCampaigns();
  loadCampaigns();
}

export const onCampaignSession = () => chooseSession($('camp-session').value);

export async function loadCampaigns() {
  if (!sessionId) return;
  const [epoch, id] = [state.epoch, sessionId];
  await act('camp-message', async () => {
    const r = await api('GET', sessionPath(id, '/campaigns'));
    if (epoch !== state.epoch || id !== sessionId) return;
    campaigns = (r.campaigns || []).sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    renderCampaigns();
  });
}

// --- The list ---

export function renderCampaigns() {
  const body = $('camp-body');
  keepFocus(body, () => {
    body.textContent = '';
    campaigns.forEach((c) => body.appendChild(campaignRow(c)));
  }, (key) => body.querySelector('[data-key="name:' + CSS.escape(key.slice(key.indexOf(':') + 1)) + '"]'));
  // The pressed button was disabled while its call ran (the browser moved the focus to the page):
  // it goes to the button now in the same place (Start → Pause → Resume), else to the row's name.
  if (wantFocus) {
    const [key, cid] = wantFocus;
    wantFocus = null;
    const again = body.querySelector('[data-key="' + CSS.escape(key) + '"]')
      || body.querySelector('tr[data-campaign-id="' + CSS.escape(cid) + '"] th');
    if (again) again.focus();
  }
  $('camp-empty').hidden = campaigns.length > 0;
  $('camp-table').hidden = campaigns.length === 0;
  renderFailures();
}

const ACTIONS = { draft: ['start', 'cancel'], running: ['pause', 'cancel'], paused: ['resume', 'cancel'], cancelled: [], completed: [] };

function campaignRow(c) {
  const tr = el('tr', { 'data-campaign-id': c.id, 'data-status': c.status });
  // Focusable from script (the focus lands here when the row's button goes), and found again by its key.
  tr.appendChild(el('th', { scope: 'row', 'data-key': 'name:' + c.id }, c.name));
  tr.appendChild(el('td', { class: 'camp-status' }, tCode('camp.status.', c.status)));
  tr.appendChild(progressCell(c));
  tr.appendChild(outlookCell(c));
  const actions = tr.appendChild(el('td', { class: 'actions' }));
  tr.firstChild.setAttribute('tabindex', '-1');
  // Start, pause and resume take turns in one place, so they share a key (the focus stays put).
  ACTIONS[c.status].forEach((a) => actions.appendChild(button({ 'data-camp-action': a, 'data-campaign-id': c.id,
    'data-key': (a === 'cancel' ? 'cancel:' : 'run:') + c.id,
    class: 'btn btn-small' + (a === 'cancel' ? ' btn-delete' : '') }, t('camp.action.' + a), t('camp.action.' + a) + ': ' + c.name)));
  if (c.failed > 0) {
    actions.appendChild(button({ 'data-camp-action': 'failures', 'data-campaign-id': c.id, 'data-key': 'failures:' + c.id,
      'aria-pressed': String(failuresOf === c.id) }, t('camp.action.failures'), t('camp.action.failures') + ': ' + c.name));
  }
  return tr;
}

function progressCell(c) {
  const done = c.sent + c.failed;
  const percent = c.total ? Math.floor((done * 100) / c.total) : 0;
  const remaining = Math.max(0, c.total - done);
  const td = el('td', { class: 'camp-progress', 'data-percent': String(percent), 'data-sent': String(c.sent),
    'data-failed': String(c.failed), 'data-remaining': String(remaining) });
  const bar = td.appendChild(el('progress', { max: String(c.total || 1), value: String(done) }));
  bar.setAttribute('aria-label', t('camp.progressLabel', { name: c.name, percent }));
  td.appendChild(el('span', { class: 'camp-percent' }, percent + ' %'));
  td.appendChild(el('span', { class: 'camp-counts' }, t('camp.counts', { sent: c.sent, failed: c.failed, remaining })));
  const eta = remaining && c.outlook ? c.outlook.eta : null;
  if (eta) td.appendChild(el('span', { class: 'camp-eta' }, t('camp.eta', { at: new Date(eta).toLocaleString(lang()) })));
  if (c.deferred_until) td.appendChild(el('span', { class: 'camp-deferred' }, t('camp.deferredUntil', { at: new Date(c.deferred_until).toLocaleString(lang()) })));
  return td;
}

function outlookText(o) {
  return t('camp.outlook', { new: o.new_contacts, known: o.known_contacts, days: o.days_needed, at: new Date(o.eta).toLocaleString(lang()) });
}

function outlookCell(c) {
  const td = el('td', { class: 'camp-outlook' });
  if (c.paused) {
    td.appendChild(el('p', { class: 'camp-paused bad', 'data-reason': c.paused.reason },
      t('camp.pausedBy', { reason: tCode('camp.pause.', c.paused.reason), detail: c.paused.detail })));
  }
  if (!c.outlook) return td;
  td.appendChild(el('p', {}, outlookText(c.outlook)));
  if (c.outlook.warning) td.appendChild(el('p', { class: 'camp-warning' }, t('camp.warning', { days: c.outlook.days_needed })));
  return td;
}

// A row's button: the state changes, or the failures shown.
export async function campaignAction(btn) {
  const [action, cid] = [btn.dataset.campAction, btn.dataset.campaignId];
  if (action === 'failures') {
    failuresOf = failuresOf === cid ? null : cid;
    if (failuresOf) await loadFailures();
    renderCampaigns();
    return '';
  }
  const r = await api('POST', sessionPath(sessionId, '/campaigns/' + enc(cid) + '/' + action));
  wantFocus = [action === 'cancel' ? 'cancel:' + cid : 'run:' + cid, cid];
  replace(r);
  return t('camp.done.' + action, { name: r.name });
}

function replace(c) {
  const i = campaigns.findIndex((x) => x.id === c.id);
  if (i >= 0) campaigns[i] = c; else campaigns.unshift(c);
  renderCampaigns();
}

// A campaign's failed messages: the session's outgoing messages with its key prefix.
async function loadFailures() {
  const [id, cid] = [sessionId, failuresOf];
  const r = await api('GET', sessionPath(id, '/messages?limit=500'));
  if (id !== sessionId || cid !== failuresOf) return;
  const prefix = 'campaign/' + cid + '/';
  failures = (r.messages || []).filter((m) => m.status === 'failed' && (m.idempotency_key || '').startsWith(prefix));
}

function renderFailures() {
  const c = campaigns.find((x) => x.id === failuresOf);
  $('camp-failures-area').hidden = !c;
  if (!c) return;
  $('camp-failures-title').textContent = t('camp.failuresOf', { name: c.name });
  const list = $('camp-failures');
  list.textContent = '';
  failures.forEach((m) => list.appendChild(el('li', { 'data-to': m.to }, '+' + m.to + ' — ' + tCode('chats.error.', m.error))));
  if (!failures.length) list.appendChild(el('li', { class: 'empty' }, t('camp.noFailures')));
}

// A `campaign` event: its counts now, the rest (outlook, pause reason) read again.
export async function onCampaignEvent(m) {
  if (m.session_id !== sessionId) return;
  const c = campaigns.find((x) => x.id === m.campaign_id);
  if (c) {
    Object.assign(c, { status: m.status, total: m.total, queued_so_far: m.queued, sent: m.sent, failed: m.failed });
    renderCampaigns();
  }
  try {
    const r = await api('GET', sessionPath(m.session_id, '/campaigns/' + enc(m.campaign_id)));
    if (m.session_id !== sessionId) return;
    const now = campaigns.find((x) => x.id === r.id);
    // An older answer never undoes a newer event's counts.
    if (now && now.sent + now.failed > r.sent + r.failed) return;
    replace(r);
    if (failuresOf === r.id) { await loadFailures(); renderFailures(); }
  } catch (e) { /* the event's counts stay */ }
}

// --- CSV ---

// RFC 4180 rows: quoted fields (with "" for a quote, and line breaks), commas, CRLF or LF.
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i += 1; } else if (ch === '"') quoted = false; else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; }
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i += 1;
      row.push(field); rows.push(row); row = []; field = '';
    } else field += ch;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows.filter((r) => r.some((f) => f.trim() !== ''));
}

// Recipients from CSV text: the header names the variables and must have `to`.
export function recipientsFromCsv(text) {
  const rows = parseCsv(text.replace(/^\uFEFF/, ''));
  if (!rows.length) throw new Error(t('camp.csvEmpty'));
  const header = rows[0].map((h) => h.trim());
  const to = header.findIndex((h) => h.toLowerCase() === 'to');
  if (to < 0) throw new Error(t('camp.csvNoTo'));
  return rows.slice(1).map((r) => {
    const vars = {};
    header.forEach((name, i) => { if (i !== to && name && (r[i] || '').trim() !== '') vars[name] = r[i].trim(); });
    return { to: (r[to] || '').trim(), vars };
  });
}

// --- The form and the preview ---

function formBody() {
  return { name: $('camp-name').value.trim(), template: $('camp-template').value, recipients: recipientsFromCsv($('camp-csv').value) };
}

// Any edit makes the last preview stale: saving wants a new one.
export function onCampaignFormInput() {
  if (!preview) return;
  preview = null;
  $('camp-save').disabled = true;
  $('camp-preview-area').dataset.stale = 'true';
}

// The chosen file's name, or "No file chosen" in the page's language (kept so by data-i18n).
function showFileName(file) {
  const span = $('camp-file-name');
  if (file) { delete span.dataset.i18n; span.textContent = file.name; return; }
  span.dataset.i18n = 'camp.noFile';
  span.textContent = t('camp.noFile');
}

export async function onCampaignFile(ev) {
  const file = ev.target.files && ev.target.files[0];
  showFileName(file);
  if (!file) return;
  $('camp-csv').value = await file.text();
  onCampaignFormInput();
}

export async function onCampaignPreview(ev) {
  ev.preventDefault();
  setMsg('camp-form-message', '');
  let body;
  try { body = formBody(); } catch (e) { setMsg('camp-form-message', e.message, true); return; }
  if (!body.name || !body.template.trim() || !body.recipients.length) { setMsg('camp-form-message', t('camp.missing'), true); return; }
  const id = sessionId;
  await act('camp-form-message', async () => {
    const answer = await api('POST', sessionPath(id, '/campaigns/preview'), body);
    const bad = new Set((answer.rejected || []).map((r) => r.index));
    preview = { id, body, accepted: body.recipients.filter((r, i) => !bad.has(i)), answer };
    renderPreview();
    return '';
  });
}

export function renderPreview() {
  const area = $('camp-preview-area');
  area.hidden = !preview;
  $('camp-save').disabled = !preview || !preview.accepted.length;
  if (!preview) return;
  delete area.dataset.stale;
  const a = preview.answer;
  area.dataset.accepted = String(a.total);
  area.dataset.rejected = String(a.rejected.length);
  $('camp-preview-summary').textContent = t('camp.previewSummary', { total: a.total, rejected: a.rejected.length });
  const o = $('camp-preview-outlook');
  o.textContent = a.outlook ? outlookText(a.outlook) : '';
  if (a.outlook && a.outlook.warning) o.append(' ', el('strong', { class: 'camp-warning' }, t('camp.warning', { days: a.outlook.days_needed })));
  const samples = $('camp-samples');
  samples.textContent = '';
  a.samples.forEach((s) => samples.appendChild(el('li', {}, s)));
  const rejected = $('camp-rejected');
  rejected.textContent = '';
  a.rejected.forEach((r) => {
    const tr = rejected.appendChild(el('tr', { 'data-index': String(r.index), 'data-code': r.code }));
    tr.appendChild(el('td', {}, String(r.index + 2)));
    tr.appendChild(el('td', {}, r.to || '—'));
    tr.appendChild(el('td', {}, tCode('camp.reject.', r.code) + (r.code === 'missing_variables' ? ' (' + r.message.replace(/^no value for /, '') + ')' : '')));
  });
  $('camp-rejected-table').hidden = !a.rejected.length;
}

// Saves the previewed campaign as a draft, without the rejected rows.
export async function onCampaignSave() {
  if (!preview || !preview.accepted.length) return;
  const p = preview;
  $('camp-save').disabled = true;
  await act('camp-form-message', async () => {
    const c = await api('POST', sessionPath(p.id, '/campaigns'), { name: p.body.name, template: p.body.template, recipients: p.accepted });
    preview = null;
    ['camp-name', 'camp-template', 'camp-csv', 'camp-file'].forEach((i) => { $(i).value = ''; });
    showFileName(null);
    renderPreview();
    if (p.id === sessionId) replace(c);
    return t('camp.saved', { name: c.name, total: c.total });
  });
  $('camp-save').disabled = !preview;
}
