/* Centinela dashboard entry point: wires the modules together (login, sessions, QR, phone number
   pairing, conversations, campaigns, admission, live log, demo phone, WebSocket). Live updates come only from the WebSocket.
   Owns: start-up, what signing in starts and what signing out forgets (through each module's
   reset), re-rendering everything in the other language, and the event bindings.
   Not: any view or API call of its own; each lives in its module. */
import { state, isAdmin } from './state.js';
import { $, setMsg } from './dom.js';
import { tick, startTicker, stopTicker } from './time.js';
import { api, act, delegate, errorText, loadToken, clearToken, onExpired } from './api.js';
import * as I18N from './i18n.js';
import { setLoggedIn, showLogin, onLoginSubmit, onLogout, renderHeader } from './auth.js';
import { loadSessions, renderSessions, resetSessions, onSessionAction, onNewSession, onSessionFilter, onSessionPage } from './sessions.js';
import { loadTenants, onTenantsChanged, resetTenants } from './tenants.js';
import { renderHookTenants, renderWebhook, resetWebhooks, onHookTenant, onHookSave, onHookCopy, onHookTest, onHookDelete, hookAction,
  refreshDeliveries } from './webhooks.js';
import { renderArTenants, renderAutoReplies, resetAutoReplies, onArTenant, onArInput, onArEnabled, onArAdd, arAction, onArSave,
  onArTry } from './autoreplies.js';
import { renderKeyTenants, renderKeys, renderTenants, renderUsers, resetAccess, onKeysTenant, onKeyCreate, onKeyCopy, loadUsers,
  onTenantCreate, onUserCreate, onUserRole, accessAction, onConfirm, onResetSubmit } from './access.js';
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
  'chats-message', 'reply-result', 'camp-message', 'camp-form-message', 'hook-message', 'ar-message', 'ar-try-result', 'access-message'];

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
    renderHookTenants, renderWebhook, renderArTenants, renderAutoReplies, renderKeyTenants, renderKeys, renderTenants, renderUsers,
    updatePauseLabel, tick].forEach((render) => render());
}

function enterApp(user) {
  state.user = user;
  state.epoch += 1;
  setLoggedIn(true);
  document.body.classList.toggle('is-admin', isAdmin());
  $('log-panel').hidden = $('new-session-tenant-field').hidden = !isAdmin();
  $('new-session-tenant').required = isAdmin();
  $('people-area').hidden = !isAdmin();
  renderAll();
  loadSessions();
  loadTenants();
  loadUsers();
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
    [resetSessions, resetQr, resetAdmission, resetLog, resetSim, resetSend, resetOtp, resetConversations, resetCampaigns,
      resetTenants, resetWebhooks, resetAutoReplies, resetAccess].forEach((reset) => reset());
    ['sessions-body', 'admission-body', 'log-lines', 'phone-scan-list', 'phone-devices', 'toasts', 'chats-list', 'thread-messages',
      'camp-body', 'camp-failures', 'camp-samples', 'camp-rejected', 'hook-body', 'ar-rules', 'keys-body', 'tenants-body', 'users-body',
      'admission-charts', 'ar-try-result']
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
  // A form whose submit runs an API action, its outcome in a message area.
  const submit = (id, msgId, run) => on(id, 'submit', (ev) => { ev.preventDefault(); act(msgId, run); });
  const press = (id, msgId, run) => on(id, 'click', () => act(msgId, run));
  on('sessions-filter', 'input', onSessionFilter);
  on('sessions-filter-tenant', 'change', onSessionFilter);
  on('sessions-filter-state', 'change', onSessionFilter);
  on('sessions-prev', 'click', onSessionPage);
  on('sessions-next', 'click', onSessionPage);
  on('hook-tenant', 'change', onHookTenant);
  submit('hook-form', 'hook-message', onHookSave);
  on('hook-copy', 'click', onHookCopy);
  press('hook-test', 'hook-message', onHookTest);
  press('hook-delete', 'hook-message', onHookDelete);
  on('hook-refresh', 'click', refreshDeliveries);
  on('hook-filter', 'change', refreshDeliveries);
  delegate('hook-body', 'button[data-hook-action]', 'hook-message', hookAction, () => {});
  on('ar-tenant', 'change', onArTenant);
  on('ar-rules', 'input', onArInput);
  on('ar-enabled', 'change', onArEnabled);
  on('ar-add', 'click', onArAdd);
  delegate('ar-rules', 'button[data-ar-action]', 'ar-message', async (btn) => { arAction(btn); return ''; }, () => {});
  press('ar-save', 'ar-message', onArSave);
  submit('ar-try-form', 'ar-message', onArTry);
  on('keys-tenant', 'change', onKeysTenant);
  submit('key-form', 'access-message', onKeyCreate);
  on('key-copy', 'click', onKeyCopy);
  submit('tenant-form', 'access-message', onTenantCreate);
  submit('user-form', 'access-message', onUserCreate);
  submit('reset-form', 'access-message', onResetSubmit);
  on('user-role', 'change', onUserRole);
  delegate('access-panel', 'button[data-access-action]', 'access-message', accessAction, () => {});
  on('access-confirm-yes', 'click', () => onConfirm(true));
  on('access-confirm-no', 'click', () => onConfirm(false));
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

// A tenant created or deleted: every per-tenant panel offers the new list.
onTenantsChanged(() => { if (state.user) { renderHookTenants(); renderArTenants(); renderKeyTenants(); loadSessions(); } });
onExpired(endSession); // a 401 on an authenticated call ends the session
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', startup);
else startup();
