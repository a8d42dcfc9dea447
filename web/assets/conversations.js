/* The Conversations panel: a session's chats (newest first, with unread counts), one chat's thread
   (incoming and outgoing, each outgoing message's status moving live: queued, deferred with its time,
   sent, delivered, read, failed with its reason), paging back through its history, and the reply box
   (a reply goes through the outbox, so the session's pacing and new-contact budget apply).
   Owns: the chosen session, the chat list, the open chat and its loaded messages, and what this user
   has read (per user and session, in localStorage: the server keeps no read marks).
   Not: the sessions themselves (state.js, sessions.js), the WebSocket (ws.js hands events in). */
import { state, sortedSessions } from './state.js';
import { $, el, button, keepFocus, setMsg, whileBusy } from './dom.js';
import { api, act, enc, sessionPath } from './api.js';
import { t, tCode, lang } from './i18n.js';
import { sinceSpan } from './time.js';

const PAGE = 30;

let sessionId = '';
let sessionKey = '';
let chats = [];
let peer = null; // the open chat's number
let items = new Map(); // the open chat's loaded messages by id
let nextBefore = null;
// Statuses that arrived for messages not (yet) shown: a reply's first event can beat its POST answer.
const early = new Map();

const marksKey = () => 'centinela_read:' + ((state.user && (state.user.id || state.user.username)) || '?');

function marks() {
  try { return JSON.parse(localStorage.getItem(marksKey()) || '{}') || {}; } catch (e) { return {}; }
}

// Remembers that the user saw `chat` up to its newest incoming message.
function markRead(chat) {
  if (!chat || !chat.last_incoming_seq) return;
  const all = marks();
  all[sessionId + '|' + chat.peer] = { seq: chat.last_incoming_seq, count: chat.incoming };
  try { localStorage.setItem(marksKey(), JSON.stringify(all)); } catch (e) { /* storage disabled */ }
}

// Incoming messages past the last one the user saw (all of them for a chat never opened).
function unread(chat) {
  if (!chat.last_incoming_seq) return 0;
  const mark = marks()[sessionId + '|' + chat.peer];
  if (!mark) return chat.incoming;
  if (chat.last_incoming_seq <= mark.seq) return 0;
  return Math.max(1, chat.incoming - mark.count);
}

export function resetConversations() {
  sessionId = '';
  sessionKey = '';
  chats = [];
  closeChat();
}

function closeChat() {
  peer = null;
  items = new Map();
  nextBefore = null;
}

// The session select: every session of the caller; the first one is chosen when none is.
export function renderChatSessions() {
  const list = sortedSessions();
  const key = JSON.stringify([lang(), list.map((s) => [s.id, s.name, s.phone])]);
  if (key !== sessionKey) {
    sessionKey = key;
    const select = $('chats-session');
    select.textContent = '';
    list.forEach((s) => select.appendChild(el('option', { value: s.id }, s.phone ? s.name + ' (' + s.phone + ')' : s.name)));
    if (!list.length) select.appendChild(el('option', { value: '' }, t('chats.noSession')));
    select.disabled = !list.length;
  }
  const select = $('chats-session');
  if (list.some((s) => s.id === sessionId)) select.value = sessionId;
  else if (list.length) chooseSession(list[0].id);
  renderReplyBox();
}

function chooseSession(id) {
  sessionId = id;
  $('chats-session').value = id;
  chats = [];
  closeChat();
  renderChats();
  renderThread();
  loadChats();
}

export const onChatSession = () => chooseSession($('chats-session').value);

export async function loadChats() {
  if (!sessionId) return;
  const epoch = state.epoch;
  const id = sessionId;
  await act('chats-message', async () => {
    const r = await api('GET', sessionPath(id, '/chats'));
    if (epoch !== state.epoch || id !== sessionId) return;
    chats = r.chats || [];
    if (peer) markRead(chats.find((c) => c.peer === peer));
    renderChats();
  });
}

export function renderChats() {
  const list = $('chats-list');
  keepFocus(list, () => {
    list.textContent = '';
    chats.forEach((c) => list.appendChild(chatItem(c)));
  });
  $('chats-empty').hidden = chats.length > 0;
}

function chatItem(c) {
  const n = unread(c);
  const li = el('li', { class: 'chat-item', 'data-peer': c.peer, 'data-unread': String(n) });
  const label = t('chats.open', { peer: c.peer }) + (n ? ', ' + t('chats.unread', { n }) : '');
  const b = li.appendChild(button({ class: 'chat-button', 'data-chat': c.peer, 'data-key': 'chat:' + c.peer,
    'aria-pressed': String(c.peer === peer) }, null, label));
  const top = b.appendChild(el('span', { class: 'chat-top' }));
  top.appendChild(el('span', { class: 'chat-peer' }, '+' + c.peer));
  if (n) top.appendChild(el('span', { class: 'unread-badge', 'aria-hidden': 'true' }, String(n)));
  const bottom = b.appendChild(el('span', { class: 'chat-last' }));
  bottom.appendChild(el('span', { class: 'chat-text' }, (c.last_direction === 'out' ? t('chats.you') + ' ' : '') + c.last_text));
  bottom.appendChild(sinceSpan(c.last_at));
  return li;
}

// A click on a chat opens its thread.
export function onChatClick(ev) {
  const b = ev.target.closest('button[data-chat]');
  if (b) openChat(b.dataset.chat);
}

async function openChat(number) {
  closeChat();
  peer = number;
  renderThread();
  await loadThread(null);
  markRead(chats.find((c) => c.peer === number));
  renderChats();
  $('reply-text').focus();
}

// Loads a page of the open chat (`before` null: its newest) and merges it into what is shown.
async function loadThread(before) {
  const epoch = state.epoch;
  const [id, number] = [sessionId, peer];
  await act('chats-message', async () => {
    const q = '?limit=' + PAGE + (before ? '&before=' + enc(before) : '');
    const r = await api('GET', sessionPath(id, '/chats/' + enc(number) + q));
    if (epoch !== state.epoch || id !== sessionId || number !== peer) return;
    (r.messages || []).forEach((m) => items.set(m.id, m));
    if (before || !nextBefore) nextBefore = r.next_before;
    renderThread();
  });
}

export const onOlder = () => { if (peer && nextBefore) loadThread(nextBefore); };

function sortedItems() {
  return [...items.values()].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.id.localeCompare(b.id)));
}

export function renderThread() {
  $('thread').hidden = !peer;
  if (!peer) return;
  $('thread-title').textContent = t('chats.with', { peer: '+' + peer });
  $('thread-older').hidden = !nextBefore;
  const list = $('thread-messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.textContent = '';
  sortedItems().forEach((m) => list.appendChild(messageItem(m)));
  if (atBottom) list.scrollTop = list.scrollHeight;
  renderReplyBox();
}

function messageItem(m) {
  const li = el('li', { class: 'msg msg-' + m.direction, 'data-message-id': m.id, 'data-direction': m.direction });
  li.appendChild(el('span', { class: 'visually-hidden' }, t(m.direction === 'in' ? 'chats.them' : 'chats.you')));
  li.appendChild(el('p', { class: 'msg-text' }, m.text));
  const meta = li.appendChild(el('p', { class: 'msg-meta' }));
  meta.appendChild(el('time', { datetime: m.at }, new Date(m.at).toLocaleString(lang())));
  if (m.direction === 'out') {
    li.dataset.status = m.status;
    meta.append(' · ');
    meta.appendChild(el('span', { class: 'msg-status status-' + m.status }, tCode('chats.status.', m.status)));
    const why = reasonText(m);
    if (why) li.appendChild(el('p', { class: 'msg-reason', 'data-reason': m.error || (m.deferred && m.deferred.reason) || '' }, why));
  }
  return li;
}

// Why a message failed, or waits, and until when; '' for the others. Error codes get their own
// words; an engine's free text is shown as it came.
function reasonText(m) {
  if ((m.status === 'failed' || m.status === 'unknown') && m.error) return errorText(m.error);
  if (m.status === 'deferred' && m.deferred) {
    return t('chats.deferredUntil', { at: new Date(m.deferred.next_attempt_at).toLocaleString(lang()),
      why: tCode('chats.deferral.', m.deferred.reason) });
  }
  return '';
}

function errorText(code) {
  const cloud = /^cloud_error_(\d+)$/.exec(code);
  if (cloud) return t('chats.error.cloud', { code: cloud[1] });
  return tCode('chats.error.', code);
}

function renderReplyBox() {
  const s = state.sessions.get(sessionId);
  $('reply-hint').textContent = s && s.state !== 'READY' ? t('chats.notReady', { state: s.state }) : t('chats.replyHint');
}

export async function onReply(ev) {
  ev.preventDefault();
  const text = $('reply-text').value;
  if (!peer || !text.trim()) { setMsg('reply-result', t('chats.replyMissing'), true); return; }
  const [id, number] = [sessionId, peer];
  await whileBusy($('reply-submit'), () => act('reply-result', async () => {
    const r = await api('POST', sessionPath(id, '/messages'), { to: number, text });
    if (id !== sessionId || number !== peer) return '';
    items.set(r.id, { direction: 'out', id: r.id, text: r.text, at: r.created_at, status: r.status, error: r.error, deferred: r.deferred });
    if (early.has(r.id)) onChatStatus(early.get(r.id));
    $('reply-text').value = '';
    renderThread();
    loadChats();
    return t('chats.replied');
  }));
}

// A `message_in` event: the chat list moves; an open chat with that number shows it.
export function onChatMessageIn(m) {
  if (m.session_id !== sessionId) return;
  if (peer && m.from === peer) loadThread(null).then(loadChats);
  else loadChats();
}

// A `message_status` event: the shown message's status moves; a deferral or a failure is read
// again for its time or reason.
let rereading = false;

export async function onChatStatus(m) {
  if (m.session_id !== sessionId) return;
  const item = items.get(m.message_id);
  if (!item) {
    early.set(m.message_id, m);
    if (early.size > 200) early.delete(early.keys().next().value);
    // Not sent from this page (an auto-reply, a campaign, the API): the open chat is read again,
    // once for a burst of such events, so a message to its peer shows up live.
    if (peer && !rereading) {
      rereading = true;
      loadThread(null).finally(() => { rereading = false; });
      loadChats();
    }
    return;
  }
  item.status = m.status;
  if (m.status === 'deferred' || m.status === 'failed') {
    try {
      const r = await api('GET', sessionPath(sessionId, '/messages/' + enc(m.message_id)));
      Object.assign(item, { status: r.status, error: r.error, deferred: r.deferred });
    } catch (e) { /* the status alone is shown */ }
  }
  renderThread();
}
