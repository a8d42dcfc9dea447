/* The tenants this person may manage, for the per-tenant panels (webhooks, auto-replies, API keys):
   an admin's are every tenant (GET /api/v1/tenants), a tenant user's only their own.
   Owns: that list and the panels' tenant selects (each keeps its own choice).
   Not: creating or deleting tenants (access.js), what each panel shows for its tenant. */
import { state, isAdmin } from './state.js';
import { $, el } from './dom.js';
import { api } from './api.js';
import { t } from './i18n.js';

let tenants = [];
const listeners = [];

export const tenantList = () => tenants;
export const onTenantsChanged = (fn) => listeners.push(fn);

export function resetTenants() {
  tenants = [];
}

export async function loadTenants() {
  const epoch = state.epoch;
  let list = [];
  try {
    if (isAdmin()) list = (await api('GET', '/api/v1/tenants')).tenants || [];
    else if (state.user && state.user.tenant_id) list = [await api('GET', '/api/v1/tenants/' + encodeURIComponent(state.user.tenant_id))];
  } catch (e) {
    return; // the panels say "no tenant"; the next load tries again
  }
  if (epoch !== state.epoch) return;
  tenants = list.sort((a, b) => a.id.localeCompare(b.id));
  listeners.forEach((fn) => fn());
}

// Fills a tenant select, keeping `current` when it is still there; returns the chosen id ('' if none).
export function fillTenantSelect(id, current) {
  const select = $(id);
  const key = JSON.stringify([t('tenants.none'), tenants.map((x) => [x.id, x.name])]);
  if (select.dataset.key !== key) {
    select.dataset.key = key;
    select.textContent = '';
    tenants.forEach((x) => select.appendChild(el('option', { value: x.id }, x.name && x.name !== x.id ? x.id + ' — ' + x.name : x.id)));
    if (!tenants.length) select.appendChild(el('option', { value: '' }, t('tenants.none')));
  }
  select.disabled = !tenants.length;
  const chosen = tenants.some((x) => x.id === current) ? current : (tenants[0] ? tenants[0].id : '');
  select.value = chosen;
  return chosen;
}
