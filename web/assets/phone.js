/* Linking with a phone number instead of the QR: the phone number form in the QR panel, and the
   pairing codes the server pushes.
   Owns: no state (the code is kept on its session, the shown session is qr.js's).
   Not: showing the code (qr.js renders it with the rest of the panel), the demo phone that types it (sim.js). */
import { state } from './state.js';
import { $ } from './dom.js';
import { api, act, sessionPath } from './api.js';
import { t } from './i18n.js';
import { shownQrId, renderQr } from './qr.js';
import { refreshDevices } from './sim.js';

// The code to type on the phone (WhatsApp → Linked devices → Link with phone number), admitted per number.
export async function onPairingCode(ev) {
  ev.preventDefault();
  const id = shownQrId();
  const phone = $('pairing-code-phone').value.trim();
  if (!id || !phone) return;
  $('pairing-code-submit').disabled = true;
  await act('pairing-code-message', async () => {
    const r = await api('POST', sessionPath(id, '/pairing-code'), { phone });
    const s = state.sessions.get(id);
    if (s) s.pairing_code = { code: r.code, expires_at: r.expires_at };
    renderQr();
    return t('qr.codeShown');
  });
  $('pairing-code-submit').disabled = false;
}

// A `pairing_code` WebSocket event (a new or refreshed code).
export function onPairingCodeEvent(m) {
  const s = state.sessions.get(m.session_id);
  if (!s || !m.pairing_code) return;
  s.pairing_code = m.pairing_code;
  if (shownQrId() === s.id) renderQr();
  refreshDevices(); // the demo phone can now type it
}
