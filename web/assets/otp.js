/* The verification-code panel (seed 004): send a 6-digit code through a READY session, then type back
   what the phone received.
   Owns: the OTP being verified and the key of what its session select lists.
   Not: the code itself — no answer carries it; only the phone that received it shows it (the demo phone
   panel, sim.js) — nor the limits, which the server enforces. */
import { sortedSessions } from './state.js';
import { $, el, setMsg } from './dom.js';
import { api, act, enc } from './api.js';
import { t } from './i18n.js';

let otpId = null;
let optionsKey = '';

// The next renderOtpOptions() rebuilds the select.
export const resetOtpOptions = () => { optionsKey = ''; };

// Signing out forgets the OTP being verified.
export function resetOtp() {
  otpId = null;
  optionsKey = '';
  $('otp-code').value = '';
  $('otp-verify-submit').disabled = true;
}

export function renderOtpOptions() {
  const ready = sortedSessions().filter((s) => s.state === 'READY');
  const key = JSON.stringify(ready.map((s) => [s.id, s.name]));
  if (key === optionsKey) return; // unchanged: leave the select (and its focus) alone
  optionsKey = key;
  const select = $('otp-session');
  const previous = select.value;
  select.textContent = '';
  ready.forEach((s) => select.appendChild(el('option', { value: s.id }, s.name)));
  if (!ready.length) select.appendChild(el('option', { value: '' }, t('send.none')));
  if (ready.some((s) => s.id === previous)) select.value = previous;
  select.disabled = !ready.length;
  $('otp-send-submit').disabled = !ready.length;
}

export async function onOtpSend(ev) {
  ev.preventDefault();
  const body = { session_id: $('otp-session').value, phone: $('otp-phone').value.trim(), purpose: 'login' };
  if (!body.session_id || !body.phone) { setMsg('otp-result', t('otp.missing'), true); return; }
  $('otp-send-submit').disabled = true;
  await act('otp-result', async () => {
    const r = await api('POST', '/api/v1/otp', body);
    otpId = r.id;
    $('otp-verify-submit').disabled = false;
    $('otp-code').focus();
    return t('otp.sent', { phone: r.phone, attempts: r.attempts_left });
  });
  $('otp-send-submit').disabled = !$('otp-session').value;
}

export async function onOtpVerify(ev) {
  ev.preventDefault();
  const code = $('otp-code').value.trim();
  if (!otpId || !code) { setMsg('otp-result', t('otp.noCode'), true); return; }
  await act('otp-result', async () => {
    try {
      await api('POST', '/api/v1/otp/' + enc(otpId) + '/verify', { code });
    } catch (e) {
      if (e.code === 'invalid_code') throw Object.assign(e, { message: t('otp.wrong', { left: e.details.attempts_left }) });
      throw e;
    }
    otpId = null;
    $('otp-verify-submit').disabled = true;
    return t('otp.verified');
  });
}
