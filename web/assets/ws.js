/* The WebSocket client, the only source of live updates (no polling): connect, catch up on every
   (re)open, reconnect with backoff, and hand each event type to the module that owns it.
   Owns: the socket, its reconnect timer and backoff, and the last event sequence number seen.
   Not: what an event changes (sessions.js, admission.js, log.js, phone.js, sim.js, conversations.js,
   campaigns.js). */
import { isAdmin, sessionName } from './state.js';
import { $, toast } from './dom.js';
import { api, enc, getToken } from './api.js';
import { t, tCode } from './i18n.js';
import { loadSessions, onTransition, onAdmission, onRisk, onMessageStatus } from './sessions.js';
import { onSendStatus } from './send.js';
import { refreshRate } from './admission.js';
import { refreshDevices } from './sim.js';
import { receiveWsLog, loadAudit } from './log.js';
import { onPairingCodeEvent } from './phone.js';
import { loadChats, onChatMessageIn, onChatStatus } from './conversations.js';
import { loadCampaigns, onCampaignEvent } from './campaigns.js';
import { onWebhookEvent } from './webhooks.js';

const BACKOFF_MIN = 1000;
const BACKOFF_MAX = 30000;

let ws = null;
let wsTimer = null;
let backoff = BACKOFF_MIN;
let wsOpened = false;
let seq = 0;
let seqAtClose = 0;

export function renderWsStatus() {
  const live = !!ws && ws.readyState === WebSocket.OPEN;
  $('ws-status').dataset.status = live ? 'live' : 'reconnecting';
  $('ws-status').textContent = t(live ? 'ws.live' : 'ws.reconnecting');
}

export function connectWs() {
  clearTimeout(wsTimer);
  if (!getToken()) return;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(proto + '//' + location.host + '/api/v1/ws?token=' + enc(getToken()) + (isAdmin() ? '&logs=1' : ''));
  ws = socket;
  socket.addEventListener('open', () => onWsOpen(socket));
  socket.addEventListener('message', (ev) => { if (socket === ws) onWsMessage(ev.data); });
  socket.addEventListener('close', () => onWsClose(socket));
  renderWsStatus();
}

// Every (re)open catches up: the session list and the admission panel are fetched again.
function onWsOpen(socket) {
  if (socket !== ws) return;
  const reconnected = wsOpened;
  wsOpened = true;
  backoff = BACKOFF_MIN;
  renderWsStatus();
  loadSessions();
  refreshRate();
  loadChats();
  loadCampaigns();
  if (reconnected) { refreshDevices(); loadAudit(seqAtClose); }
}

// Reconnects after 1 s, doubling up to 30 s.
function onWsClose(socket) {
  if (socket !== ws) return;
  ws = null;
  seqAtClose = seq;
  if (!getToken()) return;
  renderWsStatus();
  wsTimer = setTimeout(reconnectWs, backoff);
  backoff = Math.min(backoff * 2, BACKOFF_MAX);
}

// Checks the token first: an expired one leads to the login page, not to endless retries.
async function reconnectWs() {
  try { await api('GET', '/auth/me'); } catch (e) { if (e.status === 401) return; }
  if (getToken() && !ws) connectWs();
}

// At logout: closes the socket and forgets the backoff and the sequence numbers.
export function closeWs() {
  const socket = ws;
  clearTimeout(wsTimer);
  ws = null;
  if (socket) socket.close();
  wsTimer = null;
  backoff = BACKOFF_MIN;
  wsOpened = false;
  seq = 0;
  seqAtClose = 0;
}

// An ack as a person reads it: to whom (a whatsapp-web.js id is `{fromMe}_{chat}_{id}`), not the
// engine's id; another engine's id is shown as it came.
function ackText(m) {
  const parts = String(m.message_id || '').split('_');
  const chat = parts.length >= 3 ? parts.slice(1, -1).join('_') : '';
  const to = chat.split('@')[0];
  const base = { session: sessionName(m.session_id), ack: tCode('ack.', String(m.ack)) };
  return /^\d+$/.test(to) ? t('toast.ackTo', Object.assign(base, { to })) : t('toast.ack', Object.assign(base, { id: m.message_id }));
}

const WS_HANDLERS = {
  transition: onTransition,
  admission: onAdmission,
  risk: onRisk,
  message_status: (m) => { onMessageStatus(m); onSendStatus(m); onChatStatus(m); },
  log: receiveWsLog,
  message_in: (m) => { toast(t('toast.incoming', { session: sessionName(m.session_id), from: m.from, text: m.text })); onChatMessageIn(m); },
  campaign: onCampaignEvent,
  webhook: onWebhookEvent,
  pairing_code: onPairingCodeEvent,
  ack: (m) => toast(ackText(m)),
  resync: () => { loadSessions(); refreshRate(); refreshDevices(); loadChats(); loadCampaigns(); },
  // A code reached WhatsApp: the demo phone shows what it received.
  'otp.sent': refreshDevices,
};

function onWsMessage(data) {
  let m = null;
  try { m = JSON.parse(data); } catch (e) { /* ignored */ }
  if (!m || typeof m !== 'object' || !WS_HANDLERS[m.type]) return;
  if (typeof m.seq === 'number' && m.seq > seq) seq = m.seq;
  WS_HANDLERS[m.type](m);
}
