// sim.js — the WhatsApp Web simulator page. It implements the page contract
// of shared/WAWEB-CONTRACT.md: Meta's module loader (window.require) with the
// modules whatsapp-web.js 1.34.7 and wa-js use, in their real shapes — Wid
// objects, message keys, ChatModels, Backbone-like collections with their
// events, ArrayBuffer keys — so that a client passing against this page
// means something for web.whatsapp.com. The phone and WhatsApp's servers are
// played by the Rust state server (web/src/sim/) over POST /sim/api/... and
// the event stream /sim/api/devices/{id}/events.
//
// Sources are cited beside each behaviour: "wwebjs X" is whatsapp-web.js
// 1.34.7's src/X, "wa-js X" is wppconnect-team/wa-js src/whatsapp/X.
'use strict';

(function () {
  // Test switch: a web server's HTTP auth challenge, to prove a browser
  // never answers it with its proxy's credentials.
  if (/[?&]auth_probe=1/.test(location.search)) fetch('/sim/auth-probe').catch(() => {});
  const IDB_NAME = 'wawc';
  const IDB_STORE = 'user';
  const HELLO_RETRIES = 30;
  // Socket state timing: UNLAUNCHED → OPENING → settled (wwebjs Client.js
  // inject waits on change:state while OPENING/UNLAUNCHED/PAIRING).
  const OPENING_AFTER_MS = 50;
  const SETTLE_AFTER_MS = 600;
  // A paired page syncs for a while before hasSynced, once per page load
  // (wwebjs `ready` comes from change:hasSynced). The sync takes at least
  // SYNC_MIN_MS; it completes SYNC_AFTER_LISTENER_MS after a client listens
  // to it, or after SYNC_MAX_MS if nobody does (the real sync takes seconds;
  // this keeps a slow test machine from racing a client's set-up).
  const SYNC_MIN_MS = 1000;
  const SYNC_AFTER_LISTENER_MS = 300;
  const SYNC_MAX_MS = 10000;
  // Modules keep registering after Debug.VERSION (WAWEB-CONTRACT.md, page
  // readiness): what wwebjs's inject reads is there with it (wave 0), the
  // rest follows over the first second.
  const MODULE_WAVES_MS = [0, 300, 800];
  // Our own Socket.logout(): the Cmd event, then the post-logout document
  // (after the caller had time to close the browser, as wwebjs does).
  const SELF_LOGOUT_EVENT_MS = 300;
  const SELF_LOGOUT_NAVIGATE_MS = 1000;
  // Heartbeats (web/src/sim/pages.rs): this document tells the server it
  // lives, under an id of its own, so the server can tell two live pages of
  // one device (an overlap) from a reload. WhatsApp Web's socket pings its
  // server too (Baileys src/Socket/socket.ts startKeepAliveRequest, the
  // `w:p` ping iq); this one is the simulator's own check, not the contract.
  const HEARTBEAT_MS = 1000;
  const CIPHERTEXT_DECRYPT_MS = 400;

  // ---------- Backbone-like models and collections ----------

  // Backbone's event API: space-separated event names, `on/off/once`,
  // `trigger`, and collections that re-emit their models' events
  // (wwebjs attachEventListeners listens on the collections).
  class Model {
    constructor(attrs) {
      Object.defineProperty(this, '_handlers', { value: new Map(), writable: true });
      Object.defineProperty(this, 'collection', { value: null, writable: true });
      // Own properties, so an attribute may shadow a getter of the class.
      for (const [k, v] of Object.entries(attrs || {})) {
        Object.defineProperty(this, k, { value: v, writable: true, enumerable: true, configurable: true });
      }
    }

    on(events, cb, ctx) {
      for (const ev of String(events).split(/\s+/).filter(Boolean)) {
        if (!this._handlers.has(ev)) this._handlers.set(ev, []);
        this._handlers.get(ev).push({ cb, ctx });
      }
      return this;
    }

    listenTo(other, events, cb) { other.on(events, cb, this); return this; }
    stopListening() { return this; }

    off(events, cb) {
      if (events === undefined || events === null) {
        if (!cb) { this._handlers.clear(); return this; }
        for (const ev of this._handlers.keys()) this.off(ev, cb);
        return this;
      }
      for (const ev of String(events).split(/\s+/).filter(Boolean)) {
        if (!cb) { this._handlers.delete(ev); continue; }
        const list = this._handlers.get(ev) || [];
        this._handlers.set(ev, list.filter((h) => h.cb !== cb && h.cb._original !== cb));
      }
      return this;
    }

    once(events, cb) {
      const wrapper = (...args) => { this.off(events, wrapper); cb(...args); };
      wrapper._original = cb;
      return this.on(events, wrapper);
    }

    trigger(event, ...args) {
      for (const h of (this._handlers.get(event) || []).slice()) {
        try { h.cb.apply(h.ctx || this, args); } catch (e) { reportListenerError(e); }
      }
      for (const h of (this._handlers.get('all') || []).slice()) {
        try { h.cb.apply(h.ctx || this, [event, ...args]); } catch (e) { reportListenerError(e); }
      }
      if (this.collection && event !== 'add' && event !== 'remove') {
        this.collection.trigger(event, ...args);
      }
      return this;
    }

    // set('ack', 3) or set({ack: 3, body: 'x'}): one change:<attr> per
    // changed attribute with (model, value, previous), then one `change`.
    set(attr, value) {
      const attrs = typeof attr === 'object' ? attr : { [attr]: value };
      const changed = [];
      for (const [k, v] of Object.entries(attrs)) {
        if (this[k] === v) continue;
        const prev = this[k];
        Object.defineProperty(this, k, { value: v, writable: true, enumerable: true, configurable: true });
        changed.push([k, v, prev]);
      }
      for (const [k, v, prev] of changed) this.trigger('change:' + k, this, v, prev);
      if (changed.length) this.trigger('change', this);
      return this;
    }

    get(attr) { return this[attr]; }
    unsafe() { return this; }

    // Like WhatsApp's models: a plain copy of the attributes.
    serialize() {
      const out = {};
      for (const k of Object.keys(this)) out[k] = this[k];
      return out;
    }

    toJSON() { return this.serialize(); }
  }

  function reportListenerError(e) {
    if (typeof window.reportError === 'function') window.reportError(e);
  }

  // A serialized id whichever way the build offers it (WAWEB-CONTRACT.md,
  // message ids: `_serialized ?? toString()`).
  function idString(id) {
    if (id === null || id === undefined) return undefined;
    if (typeof id === 'string') return id;
    return id._serialized !== undefined ? id._serialized : String(id);
  }

  class Collection extends Model {
    constructor(modelClass) {
      super();
      Object.defineProperty(this, 'models', { value: [], writable: true });
      Object.defineProperty(this, 'modelClass', { value: modelClass || Model, writable: true });
      Object.defineProperty(this, '_byId', { value: new Map(), writable: true });
    }

    get length() { return this.models.length; }

    get(id) {
      const key = idString(id);
      return key === undefined ? undefined : this._byId.get(key);
    }

    getModelsArray() { return this.models.slice(); }
    toArray() { return this.models.slice(); }
    filter(f) { return this.models.filter(f); }
    find(f) {
      // Contact.find / Chat.find take an id and resolve to a model.
      if (typeof f === 'function') return this.models.find(f);
      return Promise.resolve(this.get(f) || null);
    }
    forEach(f) { this.models.forEach(f); }
    map(f) { return this.models.map(f); }
    at(i) { return this.models[i]; }
    last() { return this.models[this.models.length - 1]; }

    add(model, options) {
      const list = Array.isArray(model) ? model : [model];
      const added = [];
      for (let m of list) {
        if (!(m instanceof Model)) m = new this.modelClass(m);
        const key = idString(m.id);
        if (key !== undefined && this._byId.has(key)) continue;
        m.collection = this;
        this.models.push(m);
        if (key !== undefined) this._byId.set(key, m);
        added.push(m);
        if (!(options && options.silent)) this.trigger('add', m, this);
      }
      return Array.isArray(model) ? added : added[0];
    }

    remove(model) {
      const m = this.get(model.id !== undefined ? model.id : model) || model;
      const i = this.models.indexOf(m);
      if (i < 0) return undefined;
      this.models.splice(i, 1);
      this._byId.delete(idString(m.id));
      this.trigger('remove', m, this);
      m.collection = null;
      return m;
    }

    async getMessagesById(ids) {
      return { messages: ids.map((id) => this.get(id)).filter(Boolean) };
    }
  }

  // ---------- Wids and message keys ----------

  // WAWebWidFactory.createWid('<user>@<server>') (wa-js misc/Wid.ts): the
  // real type has `user`, `server`, `_serialized` and predicates.
  class Wid {
    constructor(serialized) {
      const s = String(serialized);
      const at = s.indexOf('@');
      this.server = at < 0 ? 'c.us' : s.slice(at + 1);
      this.user = at < 0 ? s : s.slice(0, at);
      if (this.server === 's.whatsapp.net') this.server = 'c.us';
      this._serialized = this.user + '@' + this.server;
    }
    isLid() { return this.server === 'lid'; }
    isGroup() { return this.server === 'g.us'; }
    isUser() { return this.server === 'c.us' || this.server === 'lid'; }
    isBroadcast() { return this.server === 'broadcast'; }
    isStatus() { return this._serialized === 'status@broadcast'; }
    isStatusV3() { return this.isStatus(); }
    isNewsletter() { return this.server === 'newsletter'; }
    isBot() { return this.server === 'bot'; }
    isCompanion() { return false; }
    isServer() { return this.server === 'c.us' && this.user === 'server'; }
    isPSA() { return this.user === '0'; }
    isIAS() { return false; }
    isOfficialBizAccount() { return false; }
    isEqual(other) { return !!other && idString(other) === this._serialized; }
    equals(other) { return this.isEqual(other); }
    toString() { return this._serialized; }
    toJid() { return this.user + '@' + (this.server === 'c.us' ? 's.whatsapp.net' : this.server); }
    getDeviceId() { return 0; }
    toJSON() { return this._serialized; }
  }

  function createWid(s) {
    if (s instanceof Wid) return s;
    if (s && typeof s === 'object') s = idString(s);
    if (typeof s !== 'string' || !/^[^@\s]+(@[a-z.]+)?$/.test(s)) {
      throw new Error('createWid: invalid wid ' + String(s));
    }
    return new Wid(s);
  }

  // WAWebMsgKey (wa-js misc/MsgKey.ts): `new MsgKey({from, to, id,
  // participant, selfDir})`, a static async `newId()`, and a serialized form
  // `<fromMe>_<remote>_<id>[_<participant>]`. Newer builds drop
  // `_serialized` and only offer toString() (options.serialized_keys).
  let serializedKeys = true;

  class MsgKey {
    constructor({ from, to, id, participant, selfDir, fromMe, remote }) {
      if (!id) throw new Error('MsgKey: id is required');
      this.fromMe = fromMe !== undefined ? !!fromMe : selfDir === 'out';
      const peer = remote || (this.fromMe ? to : from);
      this.remote = peer instanceof Wid ? peer : createWid(peer);
      this.id = String(id);
      if (participant) this.participant = participant instanceof Wid ? participant : createWid(participant);
      if (serializedKeys) this._serialized = this.toString();
    }
    toString() {
      const base = String(this.fromMe) + '_' + this.remote._serialized + '_' + this.id;
      return this.participant ? base + '_' + this.participant._serialized : base;
    }
    equals(other) { return !!other && idString(other) === this.toString(); }
    static async newId() { return '3EB0' + hex(8); }
    static newId_DEPRECATED() { return '3EB0' + hex(8); }
    static fromString(s) {
      const [fromMe, remote, id, participant] = String(s).split('_');
      return new MsgKey({ fromMe: fromMe === 'true', remote, id, participant });
    }
  }

  function hex(bytes) {
    return Array.from(crypto.getRandomValues(new Uint8Array(bytes)),
      (b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
  }

  // ---------- Module registry (Meta's loader) ----------

  const registered = Object.create(null);
  let withoutModules = new Set();

  // window.require throws for a module that is not registered yet, as
  // Meta's loader does (WAWEB-CONTRACT.md, page readiness).
  window.require = function (name) {
    if (!Object.prototype.hasOwnProperty.call(registered, name)) {
      throw new Error("Requiring unknown module '" + name + "'");
    }
    return registered[name];
  };

  function register(mods) {
    for (const [name, mod] of Object.entries(mods)) {
      if (!withoutModules.has(name)) registered[name] = mod;
    }
  }

  // ---------- State ----------

  const Socket = new Model({ state: 'UNLAUNCHED', hasSynced: false, stream: 'DISCONNECTED' });
  const Conn = new Model({ ref: null, platform: 'web', pushname: 'Centinela Sim', battery: null, plugged: true, isSMB: false });
  const Cmd = new Model({});
  const Stream = new Model({ mode: 'MAIN', info: 'NORMAL', displayInfo: 'NORMAL', available: false });
  // Presence online/offline (wwebjs Utils.js sendSeen marks the account
  // available around the read receipt, then unavailable again).
  Object.assign(Stream, { markAvailable() { Stream.set('available', true); }, markUnavailable() { Stream.set('available', false); } });

  class MsgModel extends Model {
    get isEphemeral() { return !!this.ephemeralDuration; }
    get isStatusV3() { return !!(this.id && this.id.remote && this.id.remote._serialized === 'status@broadcast'); }
    get isGroupMsg() { return !!(this.id && this.id.remote && this.id.remote.isGroup && this.id.remote.isGroup()); }
    get mediaObject() { return undefined; }
    get senderObj() { return contactFor(this.author || this.from); }
    get chat() { return Chat.get(this.id.remote); }
    canReply() { return true; }
    msgContextInfo() { return {}; }
    updateAck(ack) { this.set('ack', ack); }
    avParams() { return {}; }
  }

  class ContactModel extends Model {
    get isMe() { return me !== null && (this.id._serialized === me.phone + '@c.us' || this.id._serialized === me.lid + '@lid'); }
    get isUser() { return this.id.isUser(); }
    get isGroup() { return this.id.isGroup(); }
    get isWAContact() { return true; }
    get isMyContact() { return false; }
    get isBlocked() { return false; }
    get isBusiness() { return false; }
    get isEnterprise() { return false; }
    get isContactBlocked() { return false; }
    get formattedName() { return this.name || this.pushname || '+' + this.id.user; }
    get formattedUser() { return '+' + this.id.user; }
    get userid() { return this.id.user; }
    get displayName() { return this.formattedName; }
    get verifiedName() { return undefined; }
  }

  class ChatModel extends Model {
    constructor(attrs) {
      super(attrs);
      Object.defineProperty(this, 'msgs', { value: new Collection(MsgModel), writable: true });
    }
    get isGroup() { return this.id.isGroup(); }
    get isReadOnly() { return false; }
    get contact() { return contactFor(this.id); }
    get formattedTitle() { return this.name || this.contact.formattedName; }
    get kind() { return this.id.isGroup() ? 'group' : 'chat'; }
    get groupMetadata() { return this.id.isGroup() ? { participants: new Collection(), isLidAddressingMode: false } : undefined; }
    get lastReceivedKey() { const m = this.msgs.last(); return m ? m.id : undefined; }
    getAllMsgs() { return this.msgs.getModelsArray(); }
  }

  const Msg = new Collection(MsgModel);
  const Chat = new Collection(ChatModel);
  const Contact = new Collection(ContactModel);
  // The call collection keeps its calls in a Map of its own
  // (wwebjs attachEventListeners hooks that Map's `set`).
  const Call = new Collection();
  Object.defineProperty(Call, 'calls', { value: new Map(), enumerable: true });
  const Label = new Collection();
  const noop = () => {};

  let deviceId = null;
  let me = null; // { phone, lid } once paired
  let keys = null; // { staticKey, identityKey: ArrayBuffer, advSecret: string }
  let pairingCodes = 0;
  // lid user → phone user, from the messages the phone delivered
  // (WAWebApiContact keeps this mapping; wwebjs enforceLidAndPnRetrieval).
  const lidToPhone = new Map();
  const phoneToLid = new Map();

  function contactFor(wid) {
    const w = createWid(wid);
    return Contact.get(w) || Contact.add({ id: w, type: 'in' });
  }
  // Contact.find resolves to a model, never null (wwebjs getContact).
  Contact.find = async (wid) => contactFor(wid);

  function chatFor(wid) {
    const w = createWid(wid);
    return Chat.get(w) || Chat.add({ id: w, t: nowSeconds(), unreadCount: 0, archive: false, pin: 0, mute: { expiration: 0 }, muteExpiration: 0, isLocked: false });
  }

  function meWid() { return me ? createWid(me.phone + '@c.us') : null; }
  function meLidWid() { return me && me.lid ? createWid(me.lid + '@lid') : null; }

  function nowSeconds() { return Math.floor(Date.now() / 1000); }

  function apiUrl(suffix) {
    return '/sim/api/devices/' + encodeURIComponent(deviceId) + suffix;
  }

  // WhatsApp Web sends messages, chat states and read receipts as stanzas
  // over its one socket, so the server hears them in the order the page sent
  // them. Separate fetches could overtake each other: they go one at a time.
  let outbound = Promise.resolve();
  function stanza(suffix, body) {
    const sent = outbound.then(() => postJson(apiUrl(suffix), body));
    outbound = sent.catch(() => undefined);
    return sent;
  }

  async function postJson(url, body) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const err = new Error('POST ' + url + ': HTTP ' + res.status);
      err.status = res.status;
      err.body = data;
      throw err;
    }
    return data;
  }

  function b64ToBuffer(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function bufferToB64(buf) {
    const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  // ---------- IndexedDB: where WhatsApp Web keeps the pairing ----------

  function idbOpen() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(IDB_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(IDB_STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  async function idbGet(key) {
    const db = await idbOpen();
    try {
      return await new Promise((resolve, reject) => {
        const req = db.transaction(IDB_STORE, 'readonly').objectStore(IDB_STORE).get(key);
        req.onsuccess = () => resolve(req.result === undefined ? null : req.result);
        req.onerror = () => reject(req.error);
      });
    } finally { db.close(); }
  }

  // Written with strict durability: committed to disk before it resolves,
  // so a SIGKILL right after pairing keeps it.
  async function idbPut(key, value) {
    const db = await idbOpen();
    try {
      await new Promise((resolve, reject) => {
        const tx = db.transaction(IDB_STORE, 'readwrite', { durability: 'strict' });
        tx.objectStore(IDB_STORE).put(value, key);
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally { db.close(); }
  }

  function wipeStorage() {
    try { localStorage.clear(); } catch (e) { /* storage may be unavailable */ }
    return new Promise((resolve) => {
      const req = indexedDB.deleteDatabase(IDB_NAME);
      req.onsuccess = req.onerror = req.onblocked = () => resolve();
    });
  }

  async function loadDeviceId() {
    let id = await idbGet('device');
    if (!id) {
      id = hex(16).toLowerCase();
      await idbPut('device', id);
    }
    return id;
  }

  // ---------- Socket life cycle ----------

  let syncTimer = null;
  let syncing = false;

  function syncListeners() {
    return (Socket._handlers.get('change:hasSynced') || []).length;
  }

  function scheduleSync() {
    if (syncing || Socket.hasSynced) return;
    syncing = true;
    const connectedAt = Date.now();
    const step = () => {
      if (Socket.state !== 'CONNECTED') { syncing = false; return; }
      const waited = Date.now() - connectedAt;
      if (waited < SYNC_MIN_MS || (syncListeners() === 0 && waited < SYNC_MAX_MS)) {
        syncTimer = setTimeout(step, 50);
        return;
      }
      syncTimer = setTimeout(() => {
        syncing = false;
        if (Socket.state === 'CONNECTED') Socket.set('hasSynced', true);
      }, syncListeners() ? SYNC_AFTER_LISTENER_MS : 0);
    };
    step();
  }

  function becomeConnected() {
    Conn.set('wid', meWid());
    Socket.set('stream', 'CONNECTED');
    Socket.set('state', 'CONNECTED');
    scheduleSync();
  }

  async function onPaired(d) {
    // The event stream repeats the pairing when it reconnects.
    if (me && me.phone === d.phone) return;
    me = { phone: d.phone, lid: d.lid || null };
    // The pairing is on disk before the page says it is connected.
    await idbPut('me', me);
    Socket.set('state', 'PAIRING');
    becomeConnected();
  }

  // A logout from the phone (wwebjs onLogoutEvent; Client.js framenavigated):
  // the Cmd events, storage wiped, then a navigation to ?post_logout=1.
  let loggingOut = false;
  async function logoutFlow(eventName) {
    if (loggingOut) return;
    loggingOut = true;
    clearTimeout(syncTimer);
    if (eventName === 'logout_from_bridge') Cmd.trigger('logout_from_bridge');
    Cmd.trigger('logout');
    me = null;
    await wipeStorage();
    location.replace(location.pathname + '?post_logout=1');
  }

  // Socket.logout() (wwebjs Client.js logout; wa-js conn/functions/logout.ts):
  // tells the server and resolves at once — wwebjs closes the browser right
  // after — then the page logs itself out: the Cmd event, storage wiped,
  // the post-logout document.
  async function socketLogout() {
    try { await postJson(apiUrl('/logout-self')); } catch (e) { /* logged out locally regardless */ }
    loggingOut = true;
    me = null;
    clearTimeout(syncTimer);
    const wiped = wipeStorage();
    setTimeout(() => Cmd.trigger('logout'), SELF_LOGOUT_EVENT_MS);
    setTimeout(() => wiped.then(() => location.replace(location.pathname + '?post_logout=1')), SELF_LOGOUT_NAVIGATE_MS);
    return true;
  }

  async function socketTakeover() {
    await postJson(apiUrl('/takeover'));
    becomeConnected();
  }

  async function refreshQR() {
    const res = await postJson(apiUrl('/refresh-qr'));
    Conn.set('ref', res.ref);
    Socket.set('state', 'UNPAIRED');
  }

  // ---------- Messages ----------

  // One incoming message as the phone delivers it (wwebjs attachEventListeners:
  // only isNewMsg is new; ciphertext turns into its type with change:type).
  function addIncoming(m) {
    const sender = m.lid ? createWid(m.lid + '@lid') : createWid(m.from + '@c.us');
    if (m.lid) { lidToPhone.set(m.lid, m.from); phoneToLid.set(m.from, m.lid); }
    contactFor(sender).set('pushname', 'Contact ' + m.from.slice(-4));
    let remote = sender;
    let author;
    if (m.kind === 'group') { remote = createWid(m.group + '@g.us'); author = sender; }
    if (m.kind === 'status') { remote = createWid('status@broadcast'); author = sender; }
    const key = new MsgKey({ from: remote, to: meWid(), id: m.id, participant: author, selfDir: 'in' });
    if (m.lid) contactFor(sender).set('phoneNumber', createWid(m.from + '@c.us'));
    const cipher = m.kind === 'ciphertext';
    const msg = new MsgModel({
      id: key,
      from: remote,
      to: meWid(),
      author,
      body: cipher ? undefined : m.text,
      type: cipher ? 'ciphertext' : 'chat',
      subtype: undefined,
      t: nowSeconds(),
      ack: 1,
      notifyName: 'Contact ' + m.from.slice(-4),
      isNewMsg: m.kind !== 'history',
      star: false,
      broadcast: m.kind === 'status',
      isForwarded: false,
      hasReaction: false,
      mentionedJidList: [],
      groupMentions: [],
      links: [],
    });
    const chat = chatFor(remote);
    chat.msgs.add(msg, { silent: true });
    chat.set('t', msg.t);
    if (msg.isNewMsg) chat.set('unreadCount', (chat.unreadCount || 0) + 1);
    Msg.add(msg);
    if (cipher) {
      setTimeout(() => { msg.set('body', m.text); msg.set('type', 'chat'); }, CIPHERTEXT_DECRYPT_MS);
    }
  }

  function findOwnMsg(rawId) {
    return Msg.models.find((m) => m.id && m.id.fromMe && m.id.id === rawId);
  }

  // WAWebSendMsgChatAction.addAndSendMsgToChat(chat, msg) (wwebjs Utils.js
  // sendMessage): only its own ChatModel is accepted; returns
  // [msgPromise, sendResultPromise]; the message starts at ack 0.
  function addAndSendMsgToChat(chat, attrs) {
    if (!(chat instanceof ChatModel)) {
      throw new TypeError('addAndSendMsgToChat: chat is not a ChatModel');
    }
    if (!attrs || !(attrs.id instanceof MsgKey)) {
      throw new TypeError('addAndSendMsgToChat: msg.id is not a WAWebMsgKey');
    }
    const msg = new MsgModel(Object.assign({}, attrs, { ack: 0 }));
    chat.msgs.add(msg, { silent: true });
    const msgPromise = Promise.resolve().then(() => {
      if (!Msg.get(msg.id)) Msg.add(msg);
      chat.set('t', msg.t);
      return msg;
    });
    const sendResult = msgPromise.then(async () => {
      if (Socket.state !== 'CONNECTED') { msg.set('ack', -1); return { messageSendResult: 'ERROR_OFFLINE' }; }
      try {
        const res = await stanza('/send', { id: msg.id.id, to: chat.id._serialized, text: String(msg.body || '') });
        msg.set('ack', res.ack);
        return { messageSendResult: 'OK' };
      } catch (e) {
        msg.set('ack', -1);
        return { messageSendResult: 'ERROR_UNKNOWN' };
      }
    });
    return [msgPromise, sendResult];
  }

  // WAWebChatStateBridge.sendChatState{Composing,Recording,Paused}(wid)
  // (wwebjs Utils.js sendChatstate: createWid first, then the bridge; Chat.js
  // sendStateTyping/sendStateRecording/clearState). It takes a Wid, not a
  // string; the server hears the state at once.
  function chatState(state) {
    return async (wid) => {
      if (!(wid instanceof Wid)) throw new TypeError('sendChatState: not a Wid');
      await stanza('/chatstate', { chat: wid._serialized, state });
    };
  }

  // WAWebUpdateUnreadChatAction.sendSeen({chat, threadId}) (wwebjs Utils.js
  // sendSeen: the ChatModel from Chat.get/findOrCreateLatestChat, between
  // Stream.markAvailable() and markUnavailable()): the chat's messages are
  // read, its unread count drops to 0.
  async function sendSeen(args) {
    const chat = args && args.chat;
    if (!(chat instanceof ChatModel)) throw new TypeError('sendSeen: chat is not a ChatModel');
    await stanza('/seen', { chat: chat.id._serialized });
    chat.set('unreadCount', 0);
  }

  // WAWebQueryExistsJob.queryWidExists(wid): {wid} or null (wwebjs
  // enforceLidAndPnRetrieval, isRegisteredUser).
  async function queryWidExists(wid) {
    const w = createWid(wid);
    const phone = w.isLid() ? lidToPhone.get(w.user) : w.user;
    if (!phone) return null;
    const res = await postJson(apiUrl('/exists'), { phone });
    return res.exists ? { wid: w, biz: false } : null;
  }

  async function findOrCreateLatestChat(wid) {
    const w = createWid(wid);
    if (!w.isUser() && !w.isGroup()) throw new Error('findOrCreateLatestChat: not a chat wid');
    return { chat: chatFor(w), created: true };
  }

  // ---------- The modules ----------

  function buildModules() {
    const waves = [{}, {}, {}];
    // Wave 0: what wwebjs reads at inject (AuthStore.js ExposeAuthStore,
    // Client.js inject).
    Object.assign(waves[0], {
      WAWebSocketModel: { Socket },
      WAWebCmd: { Cmd },
      WAWebConnModel: { Conn },
      WAWebStreamModel: { Stream },
      WAWebOfflineHandler: { OfflineMessageHandler: { getOfflineDeliveryProgress: () => 100, isResumeFromRestartComplete: () => true } },
      WAWebAltDeviceLinkingApi: {
        setPairingType: noop,
        initializeAltDeviceLinking: async () => undefined,
        // Returns the 8-character code (WAWEB-CONTRACT.md, pairing code).
        startAltLinkingFlow: async (phone) => {
          const digits = String(phone).replace(/\D/g, '');
          const res = await postJson(apiUrl('/pairing-code'), { phone: digits });
          pairingCodes++;
          return res.code;
        },
      },
      WABase64: {
        encodeB64: (buf) => bufferToB64(buf),
        decodeB64: (s) => b64ToBuffer(s),
      },
      WAWebCompanionRegClientUtils: { DEVICE_PLATFORM: 'web' },
      WAWebAdvSignatureApi: { getADVSecretKey: () => keys.advSecret },
      WAWebUserPrefsInfoStore: { waNoiseInfo: { get: async () => ({ staticKeyPair: { pubKey: keys.staticKey } }) } },
      WAWebSignalStoreApi: { waSignalStore: { getRegistrationInfo: async () => ({ identityKeyPair: { pubKey: keys.identityKey } }) } },
      WAWebUserPrefsMultiDevice: { getADVSecretKey: () => keys.advSecret },
      WAWebMiscBrowserUtils: { info: () => ({ os: 'Linux', name: 'Chrome', version: '156' }) },
    });
    // Wave 1: identities and contacts.
    Object.assign(waves[1], {
      WAWebWidFactory: {
        createWid,
        createWidFromWidLike: createWid,
        createUserWid: (user, server) => createWid(user + '@' + (server || 'c.us')),
        asUserWidOrThrow: (w) => { const x = createWid(w); if (!x.isUser()) throw new Error('not a user wid'); return x; },
        toUserWid: createWid,
        isWidlike: (w) => { try { createWid(w); return true; } catch (e) { return false; } },
      },
      WAWebUserPrefsMeUser: {
        getMaybeMePnUser: () => meWid(),
        getMaybeMeLidUser: () => meLidWid(),
        getMePnUserOrThrow: () => { const w = meWid(); if (!w) throw new Error('not logged in'); return w; },
        getMeUser: () => meWid(),
        isMeAccount: (w) => !!me && (idString(w) === me.phone + '@c.us' || idString(w) === me.lid + '@lid'),
      },
      WAWebApiContact: {
        getPhoneNumber: (w) => { const x = createWid(w); const p = x.isLid() ? lidToPhone.get(x.user) : null; return p ? createWid(p + '@c.us') : null; },
        getCurrentLid: (w) => { const x = createWid(w); const l = x.isLid() ? x.user : phoneToLid.get(x.user); return l ? createWid(l + '@lid') : null; },
        getAlternateUserWid: (w) => { const x = createWid(w); if (x.isLid()) { const p = lidToPhone.get(x.user); return p ? createWid(p + '@c.us') : null; } const l = phoneToLid.get(x.user); return l ? createWid(l + '@lid') : null; },
      },
      WAWebQueryExistsJob: { queryWidExists, queryExist: queryWidExists },
      WAWebContactCollection: { ContactCollection: Contact },
      WAWebWidToJid: { widToUserJid: (w) => createWid(w).toJid(), widToChatJid: (w) => createWid(w).toJid() },
      WAWebJidToWid: { userJidToUserWid: (j) => createWid(String(j).replace('@s.whatsapp.net', '@c.us')), chatJidToChatWid: (j) => createWid(String(j).replace('@s.whatsapp.net', '@c.us')) },
      WAJids: { validateUserJid: (j) => j },
      WAWebUserPrefsGeneral: { getPushname: () => Conn.pushname },
      WAWebUserPrefsNotifications: { getGlobalNotificationsEnabled: () => true },
      WAWebPhoneUtils: { formattedPhoneNumber: (p) => '+' + String(p).replace(/\D/g, '') },
      WAPhoneFindCC: { findCC: (p) => String(p).slice(0, 2) },
      WAWebContactGetters: {
        getIsMe: (c) => c.isMe, getIsUser: (c) => c.isUser, getIsGroup: (c) => c.isGroup,
        getIsWAContact: () => true, getIsMyContact: () => false, getIsBusiness: () => false,
        getIsEnterprise: () => false, getUserid: (c) => (c.phoneNumber ? c.phoneNumber.user : c.id.user), getVerifiedName: () => undefined,
        getName: (c) => c.name, getPushname: (c) => c.pushname, getShortName: (c) => c.name,
        getFormattedName: (c) => c.formattedName, getFormattedUser: (c) => c.formattedUser,
        getDisplayName: (c) => c.formattedName, getIsBlocked: () => false, getIsContactSyncCompleted: () => true,
        getFormattedShortName: (c) => c.formattedName, getFormattedShortNameWithNonBreakingSpaces: (c) => c.formattedName,
        getNotifyName: (c) => c.pushname, getPhoneNumber: (c) => c.phoneNumber || c.id,
        getVerifiedLevel: () => 0, getStatusMute: () => false,
      },
      WAWebFrontendContactGetters: { getIsMyContact: () => false },
      WAWebContactStatusBridge: { getStatus: async () => ({ status: '' }) },
      WAWebContactProfilePicThumbBridge: { profilePicResync: async () => [], requestProfilePicFromServer: async () => null },
      WAWebBlockContactUtils: { isBlocked: () => false },
      WAWebLidMigrationUtils: { isLidMigrated: () => false },
    });
    // Wave 2: collections, chats and sending.
    Object.assign(waves[2], {
      WAWebCollections: {
        Msg, Chat, Contact, Call, Label,
        Blocklist: new Collection(), GroupMetadata: new Collection(), Presence: new Collection(),
        ProfilePicThumb: new Collection(), Reactions: new Collection(), StatusV3: new Collection(),
        WAWebNewsletterCollection: new Collection(), BusinessProfile: new Collection(),
      },
      WAWebCallCollection: Call,
      WAWebSyncGatingUtils: { isPlaceholderMessageResendEnabled: () => false },
      WAWebNonMessageDataRequestPlaceholderMessageResendUtils: { handlePlaceholderMsgsSeen: noop },
      WAWebFindChatAction: { findOrCreateLatestChat, findChat: async (w) => chatFor(w) },
      WAWebMsgKey: MsgKey,
      WAWebSendMsgChatAction: { addAndSendMsgToChat },
      WAWebGetEphemeralFieldsMsgActionsUtils: { getEphemeralFields: () => ({ ephemeralDuration: 0, ephemeralSettingTimestamp: 0, disappearingModeInitiator: 'chat' }) },
      WAWebChatGetters: {
        getIsNewsletter: (c) => c.id.isNewsletter(), getIsBroadcast: (c) => c.id.isBroadcast(),
        getIsGroup: (c) => c.id.isGroup(), getIsUser: (c) => c.id.isUser(), getKind: (c) => c.kind,
      },
      WALinkify: {
        findLink: (s) => { const m = /https?:\/\/\S+/.exec(String(s || '')); return m ? { href: m[0], url: m[0] } : null; },
        findLinks: (s) => { const out = []; const re = /https?:\/\/\S+/g; let m; while ((m = re.exec(String(s || '')))) out.push({ href: m[0], url: m[0] }); return out; },
      },
      WAWebLinkPreviewChatAction: { getLinkPreview: async () => null },
      WAWebMsgReply: { canReplyMsg: () => true },
      WAWebMsgActionCapability: { canEditMessage: () => false, canDeleteForEveryone: () => false },
      WAWebUpdateUnreadChatAction: { sendSeen, markUnread: async () => undefined },
      WAWebLaunchSocketUtils: { refreshQR },
      WAWebChatStateBridge: { sendChatStateComposing: chatState('composing'), sendChatStateRecording: chatState('recording'), sendChatStatePaused: chatState('paused') },
      WAWebPresenceChatAction: { sendPresenceAvailable: async () => undefined, sendPresenceUnavailable: async () => undefined },
      WAWebChatSendMessages: { sendSeen: async () => undefined },
      WAWebChatLoadMessages: { loadEarlierMsgs: async () => [] },
      WAWebStatusGatingUtils: { canCheckStatusRankingPosterGating: () => false },
      WAWebBizGatingUtils: { isBizProductCatalogEnabled: () => false },
      WAWebNewsletterGatingUtils: { isNewsletterCreationEnabled: () => false },
      WAWebMsgDataFromModel: { msgDataFromMsgModel: (m) => m.serialize() },
      WAWebSetPushnameConnAction: { setPushname: async (n) => { Conn.set('pushname', n); return true; } },
      WAWebApiMessageInfoStore: { queryMsgInfo: async () => null },
      WAWebPinMsgConstants: { PinExpiryDurationOption: {} },
    });
    return waves;
  }

  // ---------- Server-sent events ----------

  const eventHandlers = {
    // A new ref is shown whatever the state: the real page can rotate it
    // after pairing too (seed 002's QR-after-ready bug reacted to that).
    ref: (d) => Conn.set('ref', d.ref),
    paired: (d) => onPaired(d),
    state: (d) => Socket.set('state', d.state),
    logout: () => logoutFlow('logout_from_bridge'),
    incoming: (d) => addIncoming(d.message),
    ack: (d) => { const m = findOwnMsg(d.message_id); if (m) m.set('ack', d.ack); },
  };

  function onServerEvent(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    const handler = data && eventHandlers[data.type];
    if (handler) Promise.resolve(handler(data)).catch(reportListenerError);
  }

  // Resolves once the stream is open, so nothing the server pushes after
  // the page reports ready (Debug.VERSION) can be missed.
  function openEvents() {
    return new Promise((resolve) => {
      const source = new EventSource(apiUrl('/events'));
      source.onmessage = onServerEvent;
      source.onopen = () => resolve();
    });
  }

  // Beats at once (the stream is open), then every HEARTBEAT_MS; a failed
  // beat is the next one's job.
  function startHeartbeats() {
    const page = hex(8);
    const beat = () => postJson(apiUrl('/heartbeat'), { page }).catch(() => {});
    beat();
    setInterval(beat, HEARTBEAT_MS);
  }

  // ---------- Startup ----------

  async function helloWithRetry(paired) {
    const body = { device_id: deviceId, paired_phone: paired ? paired.phone : null, automation: automationMarks() };
    for (let attempt = 1; attempt <= HELLO_RETRIES; attempt++) {
      try {
        return await postJson('/sim/api/hello', body);
      } catch (e) {
        if (attempt < HELLO_RETRIES) await new Promise((r) => setTimeout(r, 1000));
      }
    }
    return null;
  }

  // What a bot check in the page's own world would see: DevTools bindings
  // and driver globals (a `__name` function, chromedriver's `cdc_`), and
  // navigator.webdriver.
  function automationMarks() {
    const names = Object.getOwnPropertyNames(window)
      .filter((k) => /^__|^cdc_|webdriver|puppeteer|playwright/i.test(k));
    if (navigator.webdriver) names.push('navigator.webdriver');
    return names.slice(0, 16).map((n) => String(n).slice(0, 64));
  }

  function applyHello(hello) {
    serializedKeys = !hello.options || hello.options.serialized_keys !== false;
    withoutModules = new Set((hello.options && hello.options.without_modules) || []);
    keys = {
      staticKey: b64ToBuffer(hello.static_key),
      identityKey: b64ToBuffer(hello.identity_key),
      advSecret: hello.adv_secret,
    };
  }

  async function start() {
    render();
    const paired = await idbGet('me');
    deviceId = await loadDeviceId();
    const hello = await helloWithRetry(paired);
    if (!hello) {
      showError('Could not reach /sim/api/hello after ' + HELLO_RETRIES + ' attempts.');
      return;
    }
    applyHello(hello);
    if (hello.state === 'CONNECTED' && hello.phone) {
      me = { phone: hello.phone, lid: hello.lid || null };
    } else {
      me = null;
      if (paired) await wipeStorage().then(() => idbPut('device', deviceId));
    }
    await openEvents();
    startHeartbeats();
    const waves = buildModules();
    register(waves[0]);
    window.Debug = { VERSION: '2.3000.1031980585-sim' };
    waves.slice(1).forEach((mods, i) => setTimeout(() => register(mods), MODULE_WAVES_MS[i + 1]));
    setTimeout(() => Socket.set('state', 'OPENING'), OPENING_AFTER_MS);
    setTimeout(() => settle(hello), SETTLE_AFTER_MS);
  }

  function settle(hello) {
    if (me) { becomeConnected(); return; }
    if (hello.state === 'UNPAIRED_IDLE') { Socket.set('state', 'UNPAIRED_IDLE'); return; }
    if (hello.state !== 'UNPAIRED') { Socket.set('state', hello.state); return; }
    // A ref pushed on the event stream since hello is newer than hello's.
    if (!Conn.ref) Conn.set('ref', hello.ref);
    Socket.set('state', 'UNPAIRED');
  }

  Object.assign(Socket, { logout: socketLogout, takeover: socketTakeover, poke: noop, reconnect: noop });
  // Cmd carries events (`logout`, `logout_from_bridge`); unpairing is
  // Socket.logout() (WAWEB-CONTRACT.md, logout).
  Object.assign(Cmd, { refreshQR });
  Object.assign(Conn, {
    serialize() {
      return { ref: Conn.ref, refTTL: 20000, wid: Conn.wid, connected: Socket.state === 'CONNECTED', me: Conn.wid, protoVersion: [0, 17], clientToken: null, serverToken: null, isResponse: 'false', battery: null, plugged: true, lc: 'en', lg: 'en', locales: 'en-US', is24h: true, platform: Conn.platform, phone: { wa_version: '2.24.0', os_version: '14', device_manufacturer: 'Sim', device_model: 'Sim', os_build_number: 'sim' }, tos: 0, smbTos: 0, pushname: Conn.pushname, blockStoreAdds: false };
    },
  });

  // ---------- Visible UI ----------

  function setText(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }

  function showError(text) { setText('error', text); }

  function messageRow(m) {
    const tr = document.createElement('tr');
    const peer = m.id.remote ? m.id.remote._serialized : '';
    const cells = [m.id.fromMe ? 'out \u2192' : 'in \u2190', peer, String(m.body || ''), String(m.ack)];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }

  function render() {
    setText('device-id', deviceId || '-');
    setText('socket-state', Socket.state);
    setText('has-synced', String(Socket.hasSynced));
    setText('qr-ref', Conn.ref || '-');
    setText('paired-phone', me ? me.phone : '-');
    const tbody = document.getElementById('messages');
    if (!tbody) return;
    tbody.replaceChildren(...Msg.models.slice(-10).map(messageRow));
  }

  Socket.on('change', render);
  Conn.on('change', render);
  Msg.on('add', render);
  Msg.on('change', render);

  delete window.Debug;
  start().catch((e) => showError('simulator failed to start: ' + (e && e.message || e)));
})();
