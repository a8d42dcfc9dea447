// Centinela's page agent, installed with Page.addScriptToEvaluateOnNewDocument
// so it runs again in every document (reloads, navigations). It reads no DOM:
// it waits for window.Debug.VERSION, then uses WhatsApp Web's own modules via
// window.require(...) and reports to Rust through the CDP binding
// window.__centinela(string). After attaching it reports the current values
// too, so an event that fired before it listened is not lost.
(() => {
  if (window.top !== window) return;
  const emit = (ev) => {
    try { window.__centinela(JSON.stringify(ev)); } catch (e) { /* binding not ready */ }
  };
  const unpaired = (s) => s === 'UNPAIRED' || s === 'UNPAIRED_IDLE';

  async function qrBuilder(R) {
    const b64 = R('WABase64').encodeB64;
    const noise = await R('WAWebUserPrefsInfoStore').waNoiseInfo.get();
    const reg = await R('WAWebSignalStoreApi').waSignalStore.getRegistrationInfo();
    const adv = await R('WAWebAdvSignatureApi').getADVSecretKey();
    const platform = R('WAWebCompanionRegClientUtils').DEVICE_PLATFORM;
    const keys = [b64(noise.staticKeyPair.pubKey), b64(reg.identityKeyPair.pubKey), adv, platform];
    return (ref) => [ref].concat(keys).join(',');
  }

  function me(Conn) {
    return Conn.wid ? (Conn.wid.user || String(Conn.wid._serialized || '').split('@')[0]) : null;
  }

  async function attach() {
    const R = window.require;
    const Socket = R('WAWebSocketModel').Socket;
    const Conn = R('WAWebConnModel').Conn;
    const Cmd = R('WAWebCmd').Cmd;
    const Msg = R('WAWebCollections').Msg;
    const qr = await qrBuilder(R);
    emit({ ev: 'injected', version: String(window.Debug.VERSION) });

    Socket.on('change:state', (_m, state) => {
      emit({ ev: 'state', state });
      if (unpaired(state) && Conn.ref) emit({ ev: 'qr', qr: qr(Conn.ref) });
    });
    Socket.on('change:hasSynced', (_m, synced) => { if (synced) emit({ ev: 'synced', me: me(Conn) }); });
    Socket.on('stream_error', (e) => emit({ ev: 'stream_error', code: Number(e && e.code) || 0 }));
    // Every ref change is reported, even after pairing (real WhatsApp Web does
    // rotate it then): the guard against QR-after-ready lives in Rust.
    Conn.on('change:ref', (_m, ref) => { if (ref) emit({ ev: 'qr', qr: qr(ref) }); });
    Cmd.on('logout', () => emit({ ev: 'logout' }));
    Msg.on('add', (m) => {
      if (m && m.id && !m.id.fromMe) {
        emit({ ev: 'message', id: m.id._serialized, from: String(m.from || '').split('@')[0], text: String(m.body || '') });
      }
    });
    Msg.on('change:ack', (m, ack) => {
      if (m && m.id && m.id.fromMe) emit({ ev: 'ack', id: m.id._serialized, ack: Number(ack) });
    });

    emit({ ev: 'state', state: Socket.state });
    if (unpaired(Socket.state) && Conn.ref) emit({ ev: 'qr', qr: qr(Conn.ref) });
    if (Socket.state === 'CONNECTED' && Socket.hasSynced) emit({ ev: 'synced', me: me(Conn) });
  }

  const timer = setInterval(() => {
    if (!(window.Debug && window.Debug.VERSION && window.require)) return;
    clearInterval(timer);
    attach().catch((e) => emit({ ev: 'error', message: String(e && e.message || e) }));
  }, 50);
})();
