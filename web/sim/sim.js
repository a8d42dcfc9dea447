// sim.js — WhatsApp Web simulator for Centinela. Exposes window.require(...) modules
// shaped like real WhatsApp Web (Socket, Conn, Cmd, Msg, ...) so an engine driving
// headless Chromium can treat this page like web.whatsapp.com. State comes from the
// Rust state server via POST /sim/api/hello and the SSE stream /sim/api/devices/{id}/events.
'use strict';

(function () {
  const DEVICE_KEY = 'centinela_sim_device';
  const PAIRED_KEY = 'centinela_sim_paired';
  const HELLO_RETRIES = 30;
  const SYNC_DELAY_MS = 50;
  const RELOAD_DELAY_MS = 300;

  // ---------- Minimal Backbone-like model ----------

  class Model {
    constructor(attrs) {
      Object.defineProperty(this, '_handlers', { value: new Map() });
      Object.assign(this, attrs || {});
    }

    on(event, cb) {
      if (!this._handlers.has(event)) this._handlers.set(event, []);
      this._handlers.get(event).push(cb);
      return this;
    }

    off(event, cb) {
      if (event === undefined) { this._handlers.clear(); return this; }
      if (!cb) { this._handlers.delete(event); return this; }
      const list = this._handlers.get(event) || [];
      this._handlers.set(event, list.filter((h) => h !== cb && h._original !== cb));
      return this;
    }

    once(event, cb) {
      const wrapper = (...args) => { this.off(event, wrapper); cb(...args); };
      wrapper._original = cb;
      return this.on(event, wrapper);
    }

    trigger(event, ...args) {
      for (const cb of (this._handlers.get(event) || []).slice()) {
        try { cb(...args); } catch (e) { reportListenerError(e); }
      }
      // Like Backbone, a collection re-emits the events of the models it holds.
      if (this._collection) this._collection.trigger(event, ...args);
      return this;
    }

    set(attr, value) {
      if (this[attr] === value) return this;
      this[attr] = value;
      this.trigger('change:' + attr, this, value);
      this.trigger('change', this);
      return this;
    }
  }

  function reportListenerError(e) {
    if (typeof window.reportError === 'function') window.reportError(e);
  }

  class Collection extends Model {
    constructor() {
      super();
      this.models = [];
    }

    get(id) {
      return this.models.find((m) => m.id._serialized === id);
    }

    add(msg) {
      Object.defineProperty(msg, '_collection', { value: this, configurable: true });
      this.models.push(msg);
      this.trigger('add', msg);
      return msg;
    }
  }

  // ---------- Module state ----------

  const Socket = new Model({ state: 'OPENING', hasSynced: false });
  const Conn = new Model({ ref: null, wid: null, platform: 'web' });
  const Cmd = new Model({ logout: logoutSelf });
  const Msg = new Collection();
  let keys = { static_key: '', identity_key: '', adv_secret: '' };

  const deviceId = loadDeviceId();

  const modules = {
    WAWebSocketModel: { Socket },
    WAWebConnModel: { Conn },
    WAWebCmd: { Cmd },
    WAWebCollections: { Msg },
    // The QR's key material, under the module names WhatsApp Web uses today
    // (as whatsapp-web.js reads them).
    WAWebUserPrefsInfoStore: {
      waNoiseInfo: { get: async () => ({ staticKeyPair: { pubKey: keys.static_key } }) },
    },
    WAWebSignalStoreApi: {
      waSignalStore: {
        getRegistrationInfo: async () => ({ identityKeyPair: { pubKey: keys.identity_key } }),
      },
    },
    WAWebAdvSignatureApi: { getADVSecretKey: async () => keys.adv_secret },
    WAWebCompanionRegClientUtils: { DEVICE_PLATFORM: 'web' },
    WABase64: { encodeB64: (x) => x },
    WAWebSendTextMsgChatAction: { sendTextMsgToChat },
    WAWebMiscBrowserUtils: { info: () => ({ os: 'web' }) },
  };

  window.require = function (name) {
    if (!Object.prototype.hasOwnProperty.call(modules, name)) {
      throw new Error('Cannot find module \'' + name + '\'');
    }
    return modules[name];
  };

  // ---------- Device identity and pairing storage ----------

  function loadDeviceId() {
    let id = localStorage.getItem(DEVICE_KEY);
    if (!id) {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      id = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
      localStorage.setItem(DEVICE_KEY, id);
    }
    return id;
  }

  function loadPairing() {
    try {
      return JSON.parse(localStorage.getItem(PAIRED_KEY) || 'null');
    } catch (e) {
      return null;
    }
  }

  function storePairing(phone) {
    localStorage.setItem(PAIRED_KEY, JSON.stringify({ phone }));
  }

  function clearPairing() {
    localStorage.removeItem(PAIRED_KEY);
  }

  function widFor(phone) {
    return { user: phone, server: 'c.us', _serialized: phone + '@c.us' };
  }

  function apiUrl(suffix) {
    return '/sim/api/devices/' + encodeURIComponent(deviceId) + suffix;
  }

  async function postJson(url, body) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error('POST ' + url + ' failed: HTTP ' + res.status);
    return res.json();
  }

  // ---------- State transitions ----------

  function becomeConnected(phone) {
    storePairing(phone);
    Conn.set('wid', widFor(phone));
    Socket.set('state', 'CONNECTED');
    setTimeout(() => Socket.set('hasSynced', true), SYNC_DELAY_MS);
  }

  function becomeUnpaired() {
    clearPairing();
    Cmd.trigger('logout');
    Socket.set('hasSynced', false);
    Socket.set('state', 'UNPAIRED');
  }

  async function logoutSelf() {
    try {
      await fetch(apiUrl('/logout-self'), { method: 'POST' });
    } catch (e) {
      // Ignored on purpose: the local logout happens regardless.
    }
    becomeUnpaired();
  }

  function streamError() {
    Socket.trigger('stream_error', { code: 515 });
  }

  // ---------- Messages ----------

  function makeMessage({ fromMe, rawId, peer, body, t, ack }) {
    const own = Conn.wid ? Conn.wid._serialized : null;
    return new Model({
      id: { fromMe, remote: peer, id: rawId, _serialized: rawId },
      from: fromMe ? own : peer,
      to: fromMe ? peer : own,
      body,
      type: 'chat',
      t,
      ack,
    });
  }

  function nowSeconds() {
    return Math.floor(Date.now() / 1000);
  }

  function addIncoming(message) {
    Msg.add(makeMessage({
      fromMe: false,
      rawId: String(message.id),
      peer: message.from + '@c.us',
      body: message.text,
      t: typeof message.t === 'number' ? message.t : nowSeconds(),
      ack: 0,
    }));
  }

  function applyAck(messageId, ack) {
    const msg = Msg.get(messageId);
    if (msg) msg.set('ack', ack);
  }

  async function sendTextMsgToChat(to, text) {
    if (Socket.state !== 'CONNECTED') throw new Error('Socket is not CONNECTED');
    const digits = String(to).replace(/@.*$/, '').replace(/\D/g, '');
    if (!digits) throw new Error('Invalid recipient: ' + to);
    const res = await postJson(apiUrl('/send'), { to: digits, text });
    Msg.add(makeMessage({
      fromMe: true,
      rawId: String(res.message_id),
      peer: digits + '@c.us',
      body: text,
      t: nowSeconds(),
      ack: 1,
    }));
    return { messageId: res.message_id, ack: 1 };
  }

  // ---------- Server-sent events ----------

  const eventHandlers = {
    ref: (d) => Conn.set('ref', d.ref),
    paired: (d) => becomeConnected(d.phone),
    logout: () => becomeUnpaired(),
    conflict: () => Socket.set('state', 'CONFLICT'),
    tos_block: () => Socket.set('state', 'TOS_BLOCK'),
    ban: () => streamError(),
    restart_required: () => {
      streamError();
      setTimeout(() => location.reload(), RELOAD_DELAY_MS);
    },
    incoming: (d) => addIncoming(d.message),
    ack: (d) => applyAck(d.message_id, d.ack),
  };

  function onServerEvent(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    const handler = data && eventHandlers[data.type];
    if (handler) handler(data);
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

  // ---------- Startup ----------

  async function helloWithRetry() {
    const paired = loadPairing();
    const body = { device_id: deviceId, paired_phone: paired ? paired.phone : null };
    for (let attempt = 1; attempt <= HELLO_RETRIES; attempt++) {
      try {
        return await postJson('/sim/api/hello', body);
      } catch (e) {
        if (attempt < HELLO_RETRIES) await new Promise((r) => setTimeout(r, 1000));
      }
    }
    return null;
  }

  function applyHello(hello) {
    keys = {
      static_key: hello.static_key,
      identity_key: hello.identity_key,
      adv_secret: hello.adv_secret,
    };
    if (hello.state === 'CONNECTED' && hello.phone) {
      storePairing(hello.phone);
      Conn.set('wid', widFor(hello.phone));
      Socket.set('state', 'CONNECTED');
    } else {
      clearPairing();
      Conn.set('ref', hello.ref);
      Socket.set('state', 'UNPAIRED');
    }
  }

  async function start() {
    render();
    const hello = await helloWithRetry();
    if (!hello) {
      showError('Could not reach /sim/api/hello after ' + HELLO_RETRIES + ' attempts.');
      return;
    }
    applyHello(hello);
    await openEvents();
    window.Debug = { VERSION: '2.3000.0-sim' };
    if (Socket.state === 'CONNECTED') {
      setTimeout(() => Socket.set('hasSynced', true), SYNC_DELAY_MS);
    }
  }

  // ---------- Visible UI ----------

  function setText(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }

  function showError(text) {
    setText('error', text);
  }

  function messageRow(m) {
    const tr = document.createElement('tr');
    const peer = m.id.fromMe ? m.to : m.from;
    const cells = [m.id.fromMe ? 'out \u2192' : 'in \u2190', peer, m.body, String(m.ack)];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }

  function render() {
    const paired = loadPairing();
    setText('device-id', deviceId);
    setText('socket-state', Socket.state);
    setText('has-synced', String(Socket.hasSynced));
    setText('qr-ref', Conn.ref || '-');
    setText('paired-phone', paired ? paired.phone : '-');
    const tbody = document.getElementById('messages');
    if (!tbody) return;
    tbody.replaceChildren(...Msg.models.slice(-10).map(messageRow));
  }

  Socket.on('change', render);
  Conn.on('change', render);
  Msg.on('add', render);
  Msg.on('change', render);

  delete window.Debug;
  start();
})();
