// Centinela's page agent, installed with Page.addScriptToEvaluateOnNewDocument
// so it runs again in every document (reloads, navigations). It reads no DOM:
// it speaks the page contract of shared/WAWEB-CONTRACT.md — waits for
// window.Debug.VERSION, requires WhatsApp Web's own modules lazily (they keep
// registering after it), and reports to Rust. There is no binding in this
// (the page's own) world: reports go as CustomEvents on a channel named by
// a random token of this launch to the relay in Centinela's isolated world
// (relay.js), which holds the binding. Rust validates every report; this
// side only keeps them small. After attaching it reports the current values
// too, so an event that fired before it listened is not lost.
(() => {
  if (window.top !== window) return;
  const CHANNEL = '__CHANNEL__';
  // Taken before any page script runs, so the page cannot intercept them.
  const dispatch = EventTarget.prototype.dispatchEvent;
  const listen = EventTarget.prototype.addEventListener;
  const Custom = window.CustomEvent;
  const doc = document;
  const post = (s) => dispatch.call(doc, new Custom(CHANNEL, { detail: s }));
  const queue = [];
  let relayed = false;
  listen.call(doc, CHANNEL + ':ready', () => {
    relayed = true;
    while (queue.length) post(queue.shift());
  });
  const emit = (ev) => {
    let s;
    try { s = JSON.stringify(ev); } catch (e) { return; }
    if (relayed) post(s);
    else if (queue.length < 1000) queue.push(s);
  };
  dispatch.call(doc, new Custom(CHANNEL + ':hello'));

  // The dead-man switch (lib.rs docs): Rust pings every second with an
  // event on CHANNEL + ':alive'. A document that hears none for DEADMAN_MS
  // leaves for about:blank, which closes WhatsApp's socket and keeps its
  // IndexedDB (the pairing) on disk; so a frozen node's browser stops
  // acting as the device. Each document starts a full window (the ping
  // reaches it within a second). 0: off. about:blank itself is left alone.
  const DEADMAN_MS = Number('__DEADMAN_MS__') || 0;
  if (DEADMAN_MS > 0 && location.protocol !== 'about:') {
    const clock = performance;
    const leave = location;
    let heard = clock.now();
    listen.call(doc, CHANNEL + ':alive', () => { heard = clock.now(); });
    const deadman = setInterval(() => {
      if (clock.now() - heard <= DEADMAN_MS) return;
      clearInterval(deadman);
      leave.replace('about:blank#centinela-deadman'); // DEADMAN_URL in lib.rs
    }, Math.min(500, Math.max(50, DEADMAN_MS / 4)));
  }
  const MODULE_WAIT_MS = 20000;
  const MAX_TEXT = 65536;
  const unpaired = (s) => s === 'UNPAIRED' || s === 'UNPAIRED_IDLE';
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const idStr = (id) => (id == null ? '' : (id._serialized !== undefined ? String(id._serialized) : String(id)));

  // The document after a logout (whatsapp-web.js Client.js framenavigated).
  if (/[?&]post_logout=1/.test(location.search)) emit({ ev: 'logout', why: 'post_logout' });

  // window.require throws while a module is not registered yet: retry until
  // it is, and name it if it never comes.
  async function need(name) {
    const until = Date.now() + MODULE_WAIT_MS;
    for (;;) {
      try {
        const m = window.require(name);
        if (m) return m;
      } catch (e) { /* not registered yet */ }
      if (Date.now() > until) {
        const err = new Error('missing module ' + name);
        err.missingModule = name;
        throw err;
      }
      await sleep(100);
    }
  }

  function fail(e) {
    if (e && e.missingModule) emit({ ev: 'missing', module: e.missingModule });
    else emit({ ev: 'error', message: String((e && e.message) || e).slice(0, 500) });
  }

  // QR material (Client.js inject, needAuthentication branch), built only
  // when authentication is needed.
  async function qrBuilder() {
    const b64 = (await need('WABase64')).encodeB64;
    const noise = await (await need('WAWebUserPrefsInfoStore')).waNoiseInfo.get();
    const reg = await (await need('WAWebSignalStoreApi')).waSignalStore.getRegistrationInfo();
    const platform = (await need('WAWebCompanionRegClientUtils')).DEVICE_PLATFORM;
    const multiDevice = await need('WAWebUserPrefsMultiDevice');
    const staticKey = b64(noise.staticKeyPair.pubKey);
    const identityKey = b64(reg.identityKeyPair.pubKey);
    return (ref) => [ref, staticKey, identityKey, multiDevice.getADVSecretKey(), platform].join(',');
  }

  async function meDigits() {
    const MeUser = await need('WAWebUserPrefsMeUser');
    const wid = MeUser.getMaybeMePnUser() || MeUser.getMaybeMeLidUser();
    return wid && wid.user ? String(wid.user) : null;
  }

  // Incoming messages (whatsapp-web.js attachEventListeners): only isNewMsg
  // is new; ciphertext waits for change:type; groups, status and other
  // types are skipped; @lid senders are mapped to their phone number.
  async function attachMessages() {
    const { Msg } = await need('WAWebCollections');
    const Contacts = await need('WAWebApiContact');
    const pending = new Map();
    const report = (m) => {
      const remote = idStr(m.id.remote);
      if (remote.endsWith('@g.us')) return emit({ ev: 'skipped', kind: 'group' });
      if (remote === 'status@broadcast' || remote.endsWith('@broadcast')) return emit({ ev: 'skipped', kind: 'status' });
      if (m.type !== 'chat') return emit({ ev: 'skipped', kind: String(m.type).slice(0, 32) });
      const from = m.from;
      const jid = idStr(from);
      let phone = from && from.user ? String(from.user) : jid.split('@')[0];
      if (jid.endsWith('@lid')) {
        const pn = Contacts.getPhoneNumber(from);
        if (!pn || !pn.user) return emit({ ev: 'skipped', kind: 'lid_unresolved' });
        phone = String(pn.user);
      }
      emit({ ev: 'message', id: idStr(m.id), from: phone, jid, text: String(m.body == null ? '' : m.body).slice(0, MAX_TEXT) });
    };
    Msg.on('add', (m) => {
      if (!m || !m.id || m.id.fromMe) return;
      if (!m.isNewMsg) return emit({ ev: 'skipped', kind: 'history' });
      if (m.type === 'ciphertext') {
        if (pending.size > 1000) pending.clear();
        pending.set(m, Date.now());
        return;
      }
      report(m);
    });
    Msg.on('change:type', (m) => {
      if (!pending.delete(m) || m.type === 'ciphertext') return;
      if (m.type === 'revoked') return;
      report(m);
    });
    Msg.on('change:ack', (m, ack) => {
      if (m && m.id && m.id.fromMe) emit({ ev: 'ack', id: idStr(m.id), ack: Number(ack) });
    });
  }

  // IndexedDB runs a database's transactions in order: a read transaction
  // over all of its stores completes only after every earlier write has
  // committed to the profile's files. Only databases the page created are
  // opened (at their own version), so nothing is created or upgraded.
  async function committed() {
    const dbs = typeof indexedDB.databases === 'function' ? await indexedDB.databases() : [];
    for (const info of dbs) {
      if (!info || !info.name) continue;
      await new Promise((resolve) => {
        const req = indexedDB.open(info.name, info.version);
        req.onerror = () => resolve();
        req.onblocked = () => resolve();
        req.onsuccess = () => {
          const db = req.result;
          const stores = Array.from(db.objectStoreNames);
          if (!stores.length) { db.close(); return resolve(); }
          try {
            const tx = db.transaction(stores, 'readonly');
            tx.oncomplete = tx.onerror = tx.onabort = () => { db.close(); resolve(); };
          } catch (e) { db.close(); resolve(); }
        };
      });
    }
  }

  async function attach() {
    const Socket = (await need('WAWebSocketModel')).Socket;
    const Conn = (await need('WAWebConnModel')).Conn;
    const Cmd = (await need('WAWebCmd')).Cmd;
    emit({ ev: 'injected', version: String(window.Debug.VERSION).slice(0, 100) });

    Cmd.on('logout', () => emit({ ev: 'logout', why: 'logout' }));
    Cmd.on('logout_from_bridge', () => emit({ ev: 'logout', why: 'logout_from_bridge' }));

    let qr = null;
    const showQr = async (ref) => {
      if (!ref || !unpaired(Socket.state)) return;
      if (!qr) qr = await qrBuilder();
      emit({ ev: 'qr', qr: qr(ref) });
    };
    const messages = attachMessages();
    messages.catch(fail);
    const reportReady = async () => {
      await messages;
      emit({ ev: 'synced', me: await meDigits() });
      await committed();
      emit({ ev: 'durable' });
    };
    const onState = (state) => {
      emit({ ev: 'state', state: String(state).slice(0, 64) });
      if (state === 'UNPAIRED') showQr(Conn.ref).catch(fail);
      // The page stopped rotating the QR: ask for a new one (Client.js
      // onAuthAppStateChangedEvent). The page only exists while the QR
      // window is open: Rust closes it when the window ends.
      if (state === 'UNPAIRED_IDLE') {
        need('WAWebCmd').then((m) => m.Cmd.refreshQR()).catch(fail);
      }
    };
    Socket.on('change:state', (_m, state) => onState(state));
    Socket.on('change:hasSynced', (_m, synced) => { if (synced) reportReady().catch(fail); });
    Conn.on('change:ref', (_m, ref) => { showQr(ref).catch(fail); });

    onState(Socket.state);
    if (Socket.state === 'CONNECTED' && Socket.hasSynced) reportReady().catch(fail);
  }

  const started = Date.now();
  const timer = setInterval(() => {
    if (!(window.Debug && window.Debug.VERSION && window.require)) {
      if (Date.now() - started > 120000) clearInterval(timer);
      return;
    }
    clearInterval(timer);
    attach().catch(fail);
  }, 50);
})();
