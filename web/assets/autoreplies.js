/* The Auto-replies panel, per tenant: the rules editor (keyword → reply, in order: the first match
   answers; a switch per rule, and the tenant-wide one), saved at once, and a "try it" box that asks the server which
   rule would answer a text under the rules as they stand in the editor (nothing is sent).
   Owns: the chosen tenant and the rules being edited. Not: answering messages (the server's). */
import { state } from './state.js';
import { $, el, button, keepFocus } from './dom.js';
import { api, enc } from './api.js';
import { t } from './i18n.js';
import { fillTenantSelect } from './tenants.js';

let tenant = '';
let rules = { enabled: false, rules: [] };
let edits = 0; // bumped by every edit: a load that answers after one does not undo it

const base = () => '/api/v1/tenants/' + enc(tenant) + '/auto-replies';

export function resetAutoReplies() {
  tenant = '';
  rules = { enabled: false, rules: [] };
}

export function renderArTenants() {
  const chosen = fillTenantSelect('ar-tenant', tenant);
  if (chosen !== tenant) { tenant = chosen; loadAutoReplies(); }
}

export const onArTenant = () => { tenant = $('ar-tenant').value; edits += 1; loadAutoReplies(); };

export async function loadAutoReplies() {
  if (!tenant) { rules = { enabled: false, rules: [] }; renderAutoReplies(); return; }
  const [epoch, id, seen] = [state.epoch, tenant, edits];
  try {
    const r = await api('GET', base());
    if (epoch !== state.epoch || id !== tenant || seen !== edits) return;
    rules = { enabled: !!r.enabled, rules: (r.rules || []).map(editable) };
  } catch (e) {
    return;
  }
  renderAutoReplies();
}

export function renderAutoReplies() {
  $('ar-enabled').checked = rules.enabled;
  const list = $('ar-rules');
  keepFocus(list, () => { list.textContent = ''; rules.rules.forEach((r, i) => list.appendChild(ruleItem(r, i))); });
  $('ar-empty').hidden = rules.rules.length > 0;
}

// A rule as the editor holds it (a rule stored without a switch is on).
const editable = (x) => ({ keyword: x.keyword, reply: x.reply, enabled: x.enabled !== false });

function ruleItem(r, i) {
  const n = i + 1;
  const li = el('li', { class: 'ar-rule', 'data-index': String(i), 'data-enabled': String(r.enabled) });
  li.appendChild(el('span', { class: 'ar-order' }, String(n)));
  const field = (name, value, label) => {
    const id = 'ar-' + name + '-' + i;
    const wrap = li.appendChild(el('div', { class: 'field' }));
    wrap.appendChild(el('label', { for: id }, t(label, { n })));
    const input = wrap.appendChild(el(name === 'reply' ? 'textarea' : 'input', { id, 'data-field': name, 'data-key': name + ':' + i,
      maxlength: name === 'reply' ? '1000' : '100', rows: name === 'reply' ? '2' : null }));
    input.value = value;
  };
  field('keyword', r.keyword, 'ar.keyword');
  field('reply', r.reply, 'ar.reply');
  const on = li.appendChild(el('div', { class: 'check-field ar-switch' }));
  const box = on.appendChild(el('input', { type: 'checkbox', id: 'ar-on-' + i, 'data-field': 'enabled', 'data-key': 'enabled:' + i }));
  box.checked = r.enabled;
  on.appendChild(el('label', { for: 'ar-on-' + i }, t('ar.ruleOn', { n })));
  const tools = li.appendChild(el('div', { class: 'actions' }));
  [['up', i > 0], ['down', i < rules.rules.length - 1], ['remove', true]].forEach(([a, on]) => {
    const b = tools.appendChild(button({ 'data-ar-action': a, 'data-index': String(i), 'data-key': a + ':' + i,
      class: 'btn btn-small' + (a === 'remove' ? ' btn-delete' : '') }, t('ar.action.' + a), t('ar.action.' + a + 'Aria', { n })));
    b.disabled = !on;
  });
  return li;
}

// What the person typed goes into the rules at once (the editor is the source until saved).
export function onArInput(ev) {
  const input = ev.target.closest('[data-field]');
  if (!input) return;
  const li = input.closest('li');
  const i = Number(li.dataset.index);
  if (input.dataset.field === 'enabled') {
    rules.rules[i].enabled = input.checked;
    li.dataset.enabled = String(input.checked);
  } else {
    rules.rules[i][input.dataset.field] = input.value;
  }
  edits += 1;
}

export function onArEnabled() {
  rules.enabled = $('ar-enabled').checked;
  edits += 1;
}

export function onArAdd() {
  rules.rules.push({ keyword: '', reply: '', enabled: true });
  edits += 1;
  renderAutoReplies();
  const i = rules.rules.length - 1;
  $('ar-keyword-' + i).focus();
}

// Up / down / remove; the focus follows the moved rule's same button (or the next sensible one).
export function arAction(btn) {
  const i = Number(btn.dataset.index);
  const a = btn.dataset.arAction;
  let focus = null;
  edits += 1;
  if (a === 'remove') {
    rules.rules.splice(i, 1);
    focus = rules.rules.length ? 'keyword:' + Math.min(i, rules.rules.length - 1) : null;
  } else {
    const j = a === 'up' ? i - 1 : i + 1;
    [rules.rules[i], rules.rules[j]] = [rules.rules[j], rules.rules[i]];
    const moved = (a === 'up' && j === 0) || (a === 'down' && j === rules.rules.length - 1) ? (a === 'up' ? 'down' : 'up') : a;
    focus = moved + ':' + j;
  }
  renderAutoReplies();
  const target = focus && $('ar-rules').querySelector('[data-key="' + focus + '"]');
  if (target) target.focus(); else $('ar-add').focus();
}

const cleaned = () => ({ enabled: rules.enabled,
  rules: rules.rules.map((r) => ({ keyword: r.keyword.trim(), reply: r.reply.trim(), enabled: r.enabled })).filter((r) => r.keyword || r.reply) });

export async function onArSave() {
  if (!tenant) throw new Error(t('tenants.none'));
  const saved = await api('PUT', base(), cleaned());
  rules = { enabled: saved.enabled, rules: saved.rules.map(editable) };
  renderAutoReplies();
  return t('ar.saved', { n: saved.rules.length, state: t(saved.enabled ? 'ar.on' : 'ar.off') });
}

// "Try it": which rule of the editor's rules would answer the text.
export async function onArTry() {
  if (!tenant) throw new Error(t('tenants.none'));
  const text = $('ar-try-text').value;
  const r = await api('POST', base() + '/try', { text, rules: cleaned() });
  const out = $('ar-try-result');
  out.dataset.rule = r.rule === null || r.rule === undefined ? '' : String(r.rule);
  if (r.rule === null || r.rule === undefined) out.textContent = t('ar.tryNone');
  else out.textContent = t(r.enabled ? 'ar.tryHit' : 'ar.tryHitOff', { n: r.rule + 1, keyword: r.keyword, reply: r.reply });
  return '';
}
