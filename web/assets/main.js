/* Centinela dashboard entry point: wires the modules together (login, sessions, QR, phone number
   pairing, conversations, campaigns, admission, live log, demo phone, WebSocket). Live updates come only from the WebSocket.
   Owns: start-up, what signing in starts and what signing out forgets (through each module's
   reset), re-rendering everything in the other language, and the event bindings.
   Not: any view or API call of its own; each lives in its module. */
import { state, isAdmin } from './state.js';
import { $, setMsg } from './dom.js';
import { tick, startTicker, stopTicker } from './time.js';
import { api, delegate, errorText, loadToken, clearToken, onExpired } from './api.js';
import * as I18N from './i18n.js';
import { setLoggedIn, showLogin, onLoginSubmit, onLogout, renderHeader } from './auth.js';
import { loadSessions, renderSessions, resetSessions, onSessionAction, onNewSession } from './sessions.js';
import { renderQr, resetQr } from './qr.js';
import { onPairingCode } from './phone.js';
import { renderSendOptions, resetSend, onSend } from './send.js';
import { renderOtpOptions, resetOtp, resetOtpOptions, onOtpSend, onOtpVerify } from './otp.js';
import { refreshRate, renderAdmission, resetAdmission, orgAction } from './admission.js';
import { rerenderLogs, togglePause, updatePauseLabel, resetLog } from './log.js';
import { probeSim, refreshDevices, renderPhone, resetSim, simAction, takeSimToken } from './sim.js';
import { connectWs, closeWs, renderWsStatus } from './ws.js';
import { renderChatSessions, renderChats, renderThread, resetConversations, onChatSession, onChatClick, onOlder, onReply } from './conversations.js';
import { renderCampaignSessions, renderCampaigns, renderPreview, resetCampaigns, onCampaignSession, campaignAction, onCampaignPreview,
  onCampaignSave, onCampaignFile, onCampaignFormInput } from './campaigns.js';

const MESSAGE_AREAS = ['login-error', 'sessions-message', 'new-session-error', 'send-result', 'otp-result', 'admission-message', 'phone-result',
  'chats-message', 'reply-result', 'camp-message', 'camp-form-message'];

function applyStaticText() {
  I18N.applyStatic();
  $('lang-toggle').textContent = I18N.lang() === 'es' ? 'EN' : 'ES';
  $('lang-toggle').setAttribute('aria-label', I18N.t('lang.switch'));
}

// Re-renders everything in the other language; one-off messages (maybe server text) are cleared.
function toggleLang() {
  I18N.setLang(I18N.lang() === 'es' ? 'en' : 'es');
  applyStaticText();
  MESSAGE_AREAS.forEach((id) => setMsg(id, ''));
  $('toasts').textContent = '';
  if (state.user) renderAll();
}

function renderAll() {
  resetSend();
  resetOtpOptions();
  [renderHeader, renderWsStatus, renderSessions, renderQr, renderSendOptions, renderOtpOptions, renderAdmission, renderPhone,
    renderChatSessions, renderChats, renderThread, renderCampaignSessions, renderCampaigns, renderPreview,
    updatePauseLabel, tick].forEach((render) => render());
}

function enterApp(user) {
  state.user = user;
  state.epoch += 1;
  setLoggedIn(true);
  document.body.classList.toggle('is-admin', isAdmin());
  $('log-panel').hidden = $('new-session-tenant-field').hidden = !isAdmin();
  $('new-session-tenant').required = isAdmin();
  renderAll();
  loadSessions();
  refreshRate();
  probeSim();
  connectWs();
  startTicker();
}

// Forgets the token and all live state, then shows the login page.
function endSession(message) {
  clearToken();
  if (state.user) {
    state.user = null;
    state.epoch += 1;
    closeWs();
    stopTicker();
    [resetSessions, resetQr, resetAdmission, resetLog, resetSim, resetSend, resetOtp, resetConversations, resetCampaigns].forEach((reset) => reset());
    ['sessions-body', 'admission-body', 'log-lines', 'phone-scan-list', 'phone-devices', 'toasts', 'chats-list', 'thread-messages',
      'camp-body', 'camp-failures', 'camp-samples', 'camp-rejected']
      .forEach((id) => { $(id).textContent = ''; });
    MESSAGE_AREAS.forEach((id) => setMsg(id, ''));
    $('phone-panel').hidden = true;
    $('thread').hidden = $('camp-preview-area').hidden = $('camp-failures-area').hidden = true;
    renderQr();
  }
  showLogin(message);
}

function bindEvents() {
  const on = (id, type, handler) => $(id).addEventListener(type, handler);
  on('login-form', 'submit', (ev) => onLoginSubmit(ev, enterApp));
  on('logout-button', 'click', () => onLogout(endSession));
  on('lang-toggle', 'click', toggleLang);
  on('sessions-body', 'click', onSessionAction);
  on('new-session-form', 'submit', onNewSession);
  on('send-form', 'submit', onSend);
  on('otp-send-form', 'submit', onOtpSend);
  on('otp-verify-form', 'submit', onOtpVerify);
  on('pairing-code-form', 'submit', onPairingCode);
  delegate('admission-body', 'button[data-org-action]', 'admission-message', orgAction, refreshRate);
  delegate('phone-panel', 'button[data-sim-action]', 'phone-result', simAction, refreshDevices);
  on('chats-session', 'change', onChatSession);
  on('chats-list', 'click', onChatClick);
  on('thread-older', 'click', onOlder);
  on('reply-form', 'submit', onReply);
  on('camp-session', 'change', onCampaignSession);
  delegate('camp-body', 'button[data-camp-action]', 'camp-message', campaignAction, () => {});
  on('camp-form', 'submit', onCampaignPreview);
  on('camp-form', 'input', onCampaignFormInput);
  on('camp-file', 'change', onCampaignFile);
  on('camp-save', 'click', onCampaignSave);
  on('log-pause', 'click', togglePause);
  on('log-filter-level', 'change', rerenderLogs);
  on('log-filter-tenant', 'input', rerenderLogs);
  // The printed address pasted into a tab already open on the dashboard.
  window.addEventListener('hashchange', () => { if (takeSimToken() && state.user) probeSim(); });
}

async function startup() {
  takeSimToken();
  applyStaticText();
  bindEvents();
  if (!loadToken()) { showLogin(''); return; }
  try {
    enterApp((await api('GET', '/auth/me')).user);
  } catch (e) {
    if (e.status !== 401) showLogin(errorText(e));
  }
}

onExpired(endSession); // a 401 on an authenticated call ends the session
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', startup);
else startup();
