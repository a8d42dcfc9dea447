/* The demo phone panel (the simulator is mounted only in demo mode): scanning a session's QR, typing a
   pairing code, and acting on the simulated devices.
   Owns: whether the simulator answered, its device list, and a public demo's control token.
   Not: the real pairing-code request (phone.js), the QR panel (qr.js). */
import { state, sortedSessions } from './state.js';
import { $, el, button, keepFocus } from './dom.js';
import { api, enc, sessionPath } from './api.js';
import { t, tCode } from './i18n.js';

let simOn = false;
let devices = [];
// Device id → the last texts WhatsApp received from it (what the recipients' phones show).
let received = {};

const TOKEN_KEY = 'centinela_sim_token';

// A public demo (serve --demo-public) wants its control token on /sim; the address it prints carries
// it in the fragment (#sim_token=...), which no server, log or Referer sees. Kept for this tab, and
// taken out of the address bar at once. True when there was one.
export function takeSimToken() {
  const m = /(?:^#|&)sim_token=([^&]+)/.exec(location.hash);
  if (!m) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}

function simOpts() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return { auth: false, headers: token ? { 'X-Sim-Token': token } : {} };
}

// A public demo opened without (or with a stale) token: the panel says how to get one.
function showLocked(locked) {
  $('phone-panel').hidden = !locked && !simOn;
  $('phone-locked').hidden = !locked;
  $('phone-grid').hidden = locked;
}

export function resetSim() {
  simOn = false;
  devices = [];
  received = {};
}

async function loadReceived(list) {
  const out = {};
  await Promise.all(list.filter((d) => d.state === 'CONNECTED').map(async (d) => {
    try {
      const sent = await api('GET', '/sim/devices/' + enc(d.id) + '/sent', undefined, simOpts());
      out[d.id] = Array.isArray(sent) ? sent.slice(-3).reverse() : [];
    } catch (e) { out[d.id] = []; }
  }));
  return out;
}

export async function probeSim() {
  const epoch = state.epoch;
  try {
    const list = await api('GET', '/sim/devices', undefined, simOpts());
    if (epoch !== state.epoch) return;
    const all = Array.isArray(list) ? list : [];
    const last = await loadReceived(all);
    if (epoch !== state.epoch) return;
    simOn = true;
    devices = all;
    received = last;
    showLocked(false);
    renderPhone();
  } catch (e) {
    if (epoch !== state.epoch) return;
    simOn = false;
    showLocked(e.code === 'sim_token_required' || e.code === 'sim_token_invalid');
  }
}

export const refreshDevices = () => { if (simOn) probeSim(); };

export function renderPhone() {
  if (!simOn) return;
  const qrList = $('phone-scan-list');
  keepFocus(qrList, () => {
    qrList.textContent = '';
    sortedSessions().filter((s) => s.state === 'QR').forEach((s) => qrList.appendChild(el('li')).appendChild(button(
      { class: 'btn btn-primary', 'data-sim-action': 'scan', 'data-session-id': s.id, 'data-key': 'scan:' + s.id },
      t('sim.scan', { name: s.name }))));
    if (!qrList.children.length) qrList.appendChild(el('li', { class: 'empty' }, t('sim.noQr')));
  });
  const list = $('phone-devices');
  keepFocus(list, () => {
    list.textContent = '';
    devices.forEach((d) => list.appendChild(deviceItem(d)));
    if (!devices.length) list.appendChild(el('li', { class: 'empty' }, t('sim.noDevices')));
  });
}

function deviceItem(d) {
  const li = el('li', { class: 'device', 'data-device-id': d.id, 'data-device-state': d.state });
  li.appendChild(el('span', { class: 'device-info' }, t('sim.device', { id: d.id, state: tCode('sim.state.', d.state), phone: d.phone || '—' })));
  if (d.pairing_code) {
    const pair = li.appendChild(el('span', { class: 'actions' }));
    pair.appendChild(button({ 'data-sim-action': 'pair', 'data-device-id': d.id, 'data-code': d.pairing_code, 'data-key': 'pair:' + d.id },
      t('sim.action.pair', { code: d.pairing_code }), t('sim.action.pair', { code: d.pairing_code }) + ': ' + d.id));
  }
  if (d.state !== 'CONNECTED') return li;
  const texts = received[d.id] || [];
  if (texts.length) {
    const ul = li.appendChild(el('ul', { class: 'device-received plain-list' }));
    texts.forEach((m) => ul.appendChild(el('li', { class: 'device-message' }, t('sim.received', { to: m.to, text: m.text }))));
  }
  const actions = li.appendChild(el('span', { class: 'actions' }));
  ['logout', 'tos-block', 'proxy-block', 'incoming'].forEach((a) => actions.appendChild(button({ 'data-sim-action': a, 'data-device-id': d.id, 'data-key': a + ':' + d.id },
    t('sim.action.' + a), t('sim.action.' + a) + ': ' + d.id)));
  return li;
}

// Scan: the phone scans the session's current QR string (the JSON form of the QR endpoint).
export async function simAction(btn) {
  const action = btn.dataset.simAction;
  if (action === 'pair') {
    await api('POST', '/sim/pair', { code: btn.dataset.code, phone: $('phone-number').value.trim() }, simOpts());
  } else if (action === 'scan') {
    const current = await api('GET', sessionPath(btn.dataset.sessionId, '/qr'));
    await api('POST', '/sim/scan', { qr: current.qr, phone: $('phone-number').value.trim() }, simOpts());
  } else {
    const body = action === 'incoming' ? { from: $('sim-from').value.trim(), text: $('sim-text').value } : undefined;
    await api('POST', '/sim/devices/' + enc(btn.dataset.deviceId) + '/' + action, body, simOpts());
  }
  return t('sim.done.' + action);
}
