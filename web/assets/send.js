/* The "send a test message" form: its READY-session select, the send, and that message's later
   statuses (a deferral with its reason and time).
   Owns: the key of what the select lists (so an unchanged list leaves the select, and its focus, alone).
   Not: the session list itself (state.js, sessions.js). */
import { sortedSessions } from './state.js';
import { $, el, setMsg, whileBusy } from './dom.js';
import { api, act, sessionPath } from './api.js';
import { t } from './i18n.js';

let sendKey = '';
let lastSent = null; // the message the result line is about: { id, session }

// The next renderSendOptions() rebuilds the select.
export const resetSend = () => { sendKey = ''; };

export function renderSendOptions() {
  const ready = sortedSessions().filter((s) => s.state === 'READY');
  const key = JSON.stringify(ready.map((s) => [s.id, s.name, s.phone]));
  if (key === sendKey) return; // unchanged: leave the select (and its focus) alone
  sendKey = key;
  const select = $('send-session');
  const previous = select.value;
  select.textContent = '';
  ready.forEach((s) => select.appendChild(el('option', { value: s.id }, s.phone ? s.name + ' (' + s.phone + ')' : s.name)));
  if (!ready.length) select.appendChild(el('option', { value: '' }, t('send.none')));
  if (ready.some((s) => s.id === previous)) select.value = previous;
  select.disabled = !ready.length;
  $('send-submit').disabled = !ready.length;
}

export async function onSend(ev) {
  ev.preventDefault();
  const id = $('send-session').value;
  const body = { to: $('send-to').value.trim(), text: $('send-text').value };
  if (!id || !body.to || !body.text) { setMsg('send-result', t('send.missing'), true); return; }
  await whileBusy($('send-submit'), () => act('send-result', async () => {
    const r = await api('POST', sessionPath(id, '/messages'), body);
    lastSent = { id: r.id, session: id };
    return t('send.ok', { id: r.id, status: r.status });
  }));
  $('send-submit').disabled = !$('send-session').value;
}

// The test message's later statuses; a deferral says why and until when.
export async function onSendStatus(m) {
  if (!lastSent || m.message_id !== lastSent.id) return;
  if (m.status !== 'deferred') { setMsg('send-result', t('send.status', { id: m.message_id, status: m.status })); return; }
  await act('send-result', async () => {
    const r = await api('GET', sessionPath(lastSent.session, '/messages/' + encodeURIComponent(m.message_id)));
    const at = r.deferred && r.deferred.next_attempt_at;
    return t('send.deferred', { id: m.message_id, at: at ? new Date(at).toLocaleString() : '—' });
  });
}
