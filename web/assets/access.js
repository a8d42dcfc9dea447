/* The Access panel: a tenant's API keys (create — the key shown once, with a copy button —, listed by
   prefix, revoke), and for admins the tenants and the users (create, reset a password, delete), each
   deletion behind a confirmation that says what goes with it.
   Owns: the chosen tenant's keys, the users list and the pending confirmation.
   Not: the tenant list itself (tenants.js loads it; this panel tells it to reload after a change). */
import { state, isAdmin } from './state.js';
import { $, el, button, keepFocus, setMsg } from './dom.js';
import { api, enc, errorText } from './api.js';
import { t } from './i18n.js';
import { fillTenantSelect, tenantList, loadTenants } from './tenants.js';
import { sinceSpan } from './time.js';

let tenant = '';
let keys = [];
let users = [];
let pending = null; // { text, run, back } of the confirmation shown
let resetting = null; // the user whose new password is being typed
let shownKey = null; // the id of the key in the "shown once" box

const keysPath = () => '/api/v1/tenants/' + enc(tenant) + '/api-keys';

export function resetAccess() {
  tenant = '';
  keys = [];
  users = [];
  pending = null;
  resetting = null;
  hideKey();
  $('access-confirm').hidden = true;
  $('reset-form').hidden = true;
}

export function renderKeyTenants() {
  const chosen = fillTenantSelect('keys-tenant', tenant);
  if (chosen !== tenant) { tenant = chosen; loadKeys(); }
  if (isAdmin()) fillTenantSelect('user-tenant', $('user-tenant').value);
  renderTenants();
}

export const onKeysTenant = () => { tenant = $('keys-tenant').value; hideKey(); loadKeys(); };

// The "shown once" box, emptied: on another tenant, a logout, or when its key is revoked.
function hideKey() {
  shownKey = null;
  $('key-shown').hidden = true;
  $('key-value').textContent = '';
}

export async function loadKeys() {
  if (!tenant) { keys = []; renderKeys(); return; }
  const [epoch, id] = [state.epoch, tenant];
  try {
    const r = await api('GET', keysPath());
    if (epoch !== state.epoch || id !== tenant) return;
    keys = r.api_keys || [];
  } catch (e) {
    return;
  }
  renderKeys();
}

export function renderKeys() {
  const body = $('keys-body');
  keepFocus(body, () => { body.textContent = ''; keys.forEach((k) => body.appendChild(keyRow(k))); });
  $('keys-table').hidden = keys.length === 0;
  $('keys-empty').hidden = keys.length > 0;
}

function cells(tr) {
  return (label, content) => {
    const td = tr.appendChild(el('td', { 'data-label': t(label) }));
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    return td;
  };
}

function keyRow(k) {
  const tr = el('tr', { 'data-key-id': k.id, 'data-prefix': k.key_prefix, 'data-revoked': String(!!k.revoked_at) });
  const add = cells(tr);
  add('keys.col.name', k.name);
  add('keys.col.prefix', el('code', {}, k.key_prefix));
  add('keys.col.created', sinceSpan(k.created_at));
  add('keys.col.state', k.revoked_at ? t('keys.revoked') : t('keys.active'));
  const actions = add('col.actions', '');
  actions.classList.add('actions');
  if (k.revoked_at) {
    // Nothing left to do with a revoked key; the cell stays (a dash), so the row is as wide as the header.
    actions.append(el('span', { class: 'hint', 'aria-hidden': 'true' }, '—'), el('span', { class: 'visually-hidden' }, t('keys.noActions')));
    return tr;
  }
  actions.appendChild(button({ 'data-access-action': 'revoke', 'data-id': k.id, 'data-key': 'revoke:' + k.id, class: 'btn btn-small btn-delete' },
    t('keys.revoke'), t('keys.revokeAria', { name: k.name, prefix: k.key_prefix })));
  return tr;
}

export async function onKeyCreate() {
  const name = $('key-name').value.trim();
  if (!tenant || !name) throw new Error(t('keys.missingName'));
  const k = await api('POST', keysPath(), { name });
  shownKey = k.id;
  $('key-value').textContent = k.key;
  $('key-shown').hidden = false;
  $('key-copy').textContent = t('hook.copy');
  $('key-name').value = '';
  keys.push(k);
  renderKeys();
  $('key-copy').focus();
  return t('keys.created', { name: k.name });
}

export async function onKeyCopy() {
  try {
    await navigator.clipboard.writeText($('key-value').textContent);
    $('key-copy').textContent = t('hook.copied');
  } catch (e) {
    window.getSelection().selectAllChildren($('key-value'));
    $('key-copy').textContent = t('hook.copyManually');
  }
}

// --- Admins: tenants and users ---

export async function loadUsers() {
  if (!isAdmin()) return;
  const epoch = state.epoch;
  try {
    const r = await api('GET', '/api/v1/users');
    if (epoch !== state.epoch) return;
    users = r.users || [];
  } catch (e) {
    return;
  }
  renderUsers();
  renderTenants();
}

const sessionsOf = (id) => [...state.sessions.values()].filter((s) => s.tenant_id === id).length;
let counted = '';

// Sessions came or went: the tenants' session counts follow (the table is rebuilt only when one moved).
export function onSessionsCounted() {
  if (!isAdmin()) return;
  const key = tenantList().map((x) => x.id + ':' + sessionsOf(x.id)).join(' ');
  if (key !== counted) renderTenants();
}

export function renderTenants() {
  if (!isAdmin()) return;
  const body = $('tenants-body');
  counted = tenantList().map((x) => x.id + ':' + sessionsOf(x.id)).join(' ');
  keepFocus(body, () => {
    body.textContent = '';
    tenantList().forEach((x) => {
      const tr = body.appendChild(el('tr', { 'data-tenant-id': x.id }));
      const add = cells(tr);
      add('tenants.col.id', x.id);
      add('tenants.col.name', x.name);
      add('tenants.col.sessions', String(sessionsOf(x.id)));
      add('tenants.col.users', String(users.filter((u) => u.tenant_id === x.id).length));
      const actions = add('col.actions', '');
      actions.classList.add('actions');
      actions.appendChild(button({ 'data-access-action': 'delete-tenant', 'data-id': x.id, 'data-key': 'delete-tenant:' + x.id, class: 'btn btn-small btn-delete' },
        t('tenants.delete'), t('tenants.deleteAria', { id: x.id })));
    });
  });
}

export function renderUsers() {
  if (!isAdmin()) return;
  const body = $('users-body');
  keepFocus(body, () => {
    body.textContent = '';
    users.forEach((u) => {
      const tr = body.appendChild(el('tr', { 'data-user-id': u.id, 'data-username': u.username }));
      const add = cells(tr);
      add('users.col.username', u.username);
      add('users.col.role', t('role.' + u.role));
      add('users.col.tenant', u.tenant_id || '—');
      const actions = add('col.actions', '');
      actions.classList.add('actions');
      actions.appendChild(button({ 'data-access-action': 'reset-password', 'data-id': u.id, 'data-key': 'reset:' + u.id },
        t('users.reset'), t('users.resetAria', { name: u.username })));
      if (!state.user || u.id !== state.user.id) {
        actions.appendChild(button({ 'data-access-action': 'delete-user', 'data-id': u.id, 'data-key': 'delete-user:' + u.id, class: 'btn btn-small btn-delete' },
          t('users.delete'), t('users.deleteAria', { name: u.username })));
      }
    });
  });
}

export async function onTenantCreate() {
  const id = $('tenant-id').value.trim();
  const name = $('tenant-name').value.trim() || id;
  if (!id) throw new Error(t('tenants.missing'));
  const r = await api('POST', '/api/v1/tenants', { id, name });
  $('tenant-id').value = $('tenant-name').value = '';
  await loadTenants();
  return t('tenants.created', { id: r.id });
}

export async function onUserCreate() {
  const username = $('user-name').value.trim();
  const password = $('user-password').value;
  const role = $('user-role').value;
  const body = { username, password, role };
  if (role === 'tenant') body.tenant_id = $('user-tenant').value;
  if (!username || !password) throw new Error(t('users.missing'));
  const u = await api('POST', '/api/v1/users', body);
  $('user-name').value = $('user-password').value = '';
  users.push(u);
  renderUsers();
  renderTenants();
  return t('users.created', { name: u.username });
}

export const onUserRole = () => { $('user-tenant-field').hidden = $('user-role').value !== 'tenant'; };

// A row's button: revoke a key at once; deletions ask first; a reset opens the password form.
export async function accessAction(btn) {
  const [action, id] = [btn.dataset.accessAction, btn.dataset.id];
  if (action === 'revoke') {
    await api('DELETE', keysPath() + '/' + enc(id));
    if (shownKey === id) hideKey();
    await loadKeys();
    $('key-name').focus();
    return t('keys.revokedMsg');
  }
  if (action === 'reset-password') {
    resetting = users.find((u) => u.id === id);
    $('reset-label').textContent = t('users.newPassword', { name: resetting.username });
    $('reset-form').hidden = false;
    $('reset-password').value = '';
    $('reset-password').focus();
    return '';
  }
  if (action === 'delete-user') {
    const u = users.find((x) => x.id === id);
    ask(t('users.confirmDelete', { name: u.username }), btn, async () => {
      await api('DELETE', '/api/v1/users/' + enc(id));
      users = users.filter((x) => x.id !== id);
      renderUsers();
      renderTenants();
      return t('users.deleted', { name: u.username });
    });
    return '';
  }
  if (action === 'delete-tenant') {
    const k = (await api('GET', '/api/v1/tenants/' + enc(id) + '/api-keys')).api_keys.filter((x) => !x.revoked_at).length;
    const text = t('tenants.confirmDelete', { id, sessions: sessionsOf(id), users: users.filter((u) => u.tenant_id === id).length, keys: k });
    ask(text, btn, async () => {
      await api('DELETE', '/api/v1/tenants/' + enc(id));
      users = users.filter((u) => u.tenant_id !== id);
      [...state.sessions.values()].filter((s) => s.tenant_id === id).forEach((s) => state.sessions.delete(s.id));
      await loadTenants();
      return t('tenants.deleted', { id });
    });
  }
  return '';
}

// The confirmation: what is deleted, and two buttons; the focus goes to "Cancel" and comes back after.
function ask(text, from, run) {
  pending = { run, back: from.dataset.key };
  $('access-confirm-text').textContent = text;
  $('access-confirm').hidden = false;
  $('access-confirm-no').focus();
}

export async function onConfirm(yes) {
  const p = pending;
  pending = null;
  $('access-confirm').hidden = true;
  if (!p) return;
  if (yes) {
    try { setMsg('access-message', await p.run()); } catch (e) { if (e.status !== 401) setMsg('access-message', errorText(e), true); }
    $('tenant-id').focus();
    return;
  }
  const back = document.querySelector('#access-panel [data-key="' + CSS.escape(p.back) + '"]');
  if (back) back.focus();
}

export async function onResetSubmit() {
  const u = resetting;
  if (!u) return '';
  await api('POST', '/api/v1/users/' + enc(u.id) + '/password', { password: $('reset-password').value });
  resetting = null;
  $('reset-form').hidden = true;
  const back = document.querySelector('#access-panel [data-key="reset:' + CSS.escape(u.id) + '"]');
  if (back) back.focus();
  return t('users.resetDone', { name: u.username });
}
