/* Centinela dashboard logic: login, sessions, QR, admission, live log and demo phone.
   Live updates come only from the WebSocket (no polling); strings and translation live in i18n.js. */
(function () {
  'use strict';

  const I18N = window.CentinelaI18n;
  const { t, has, tCode } = I18N;
  const TOKEN_KEY = 'centinela_token';
  const LIVE_STATES = ['CONNECTING', 'QR', 'AUTHENTICATED', 'READY'];
  const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
  const LOG_CAP = 500;
  const MESSAGE_AREAS = ['login-error', 'sessions-message', 'new-session-error', 'send-result', 'admission-message', 'phone-result'];
  const BACKOFF_MIN = 1000;
  const BACKOFF_MAX = 30000;

  // Everything forgotten at logout is in fresh().
  const fresh = () => ({
    sessions: new Map(), rows: new Map(), qrId: null, rate: null, rateBusy: false, rateDirty: false,
    logs: [], pending: [], paused: false, simOn: false, devices: [], sendKey: '',
    ws: null, wsTimer: null, backoff: BACKOFF_MIN, wsOpened: false, seq: 0, seqAtClose: 0,
  });
  const st = Object.assign({ token: null, user: null, epoch: 0, ticker: null, qrTicket: 0 }, fresh());
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const isAdmin = () => !!st.user && st.user.role === 'admin';
  const sessionPath = (id, rest) => '/api/v1/sessions/' + enc(id) + (rest || '');
  const sessionName = (id) => (st.sessions.get(id) || {}).name || id || '?';

  // ---------- DOM helpers ----------

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (v !== null && v !== undefined) node.setAttribute(k, v); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function button(attrs, label, ariaLabel) {
    const b = el('button', Object.assign({ type: 'button', class: 'btn btn-small' }, attrs), label);
    if (ariaLabel) b.setAttribute('aria-label', ariaLabel);
    return b;
  }

  // Live texts, filled now and refreshed by tick(): a countdown to `until` and a relative time since `iso`.
  function countdownSpan(until, tpl, tplDone) {
    const span = el('span', { class: 'countdown', 'data-until': until, 'data-tpl': tpl, 'data-tpl-done': tplDone, 'aria-live': 'off' });
    tickCountdown(span);
    return span;
  }

  function sinceSpan(iso) {
    return el('time', { datetime: iso, 'data-since': iso, title: new Date(iso).toLocaleString(I18N.lang()) }, I18N.relTime(iso));
  }

  // A message area (role=status): text, error flag, and optionally an extra node (a countdown).
  function setMsg(id, text, isError, extra) {
    const node = $(id);
    node.textContent = text || '';
    node.classList.toggle('error', !!isError);
    node.dataset.result = text ? (isError ? 'error' : 'ok') : '';
    if (text && extra) node.append(' ', extra);
  }

  // Runs an API action; the text it returns (or its error) goes to a message area.
  async function act(msgId, fn) {
    try {
      const text = await fn();
      if (typeof text === 'string') setMsg(msgId, text);
    } catch (e) {
      if (e.status !== 401) setMsg(msgId, errorText(e), true);
    }
  }

  // Rebuilds a container, giving focus back to the control (same data-key) that had it.
  function keepFocus(container, rebuild) {
    const active = document.activeElement;
    const key = active && container.contains(active) ? active.dataset.key : null;
    rebuild();
    const again = key && container.querySelector('[data-key="' + CSS.escape(key) + '"]');
    if (again) again.focus();
  }

  // Delegated clicks on buttons matching selector: the button is disabled while run(btn) works.
  function delegate(containerId, selector, msgId, run, after) {
    $(containerId).addEventListener('click', async (ev) => {
      const btn = ev.target.closest(selector);
      if (!btn || btn.disabled) return;
      btn.disabled = true;
      await act(msgId, () => run(btn));
      btn.disabled = false;
      after();
    });
  }

  // ---------- Language and the 1 s display timer ----------

  function applyStaticText() {
    I18N.applyStatic();
    $('lang-toggle').textContent = I18N.lang() === 'es' ? 'EN' : 'ES';
    $('lang-toggle').setAttribute('aria-label', t('lang.switch'));
  }

  // Re-renders everything in the other language; one-off messages (maybe server text) are cleared.
  function toggleLang() {
    I18N.setLang(I18N.lang() === 'es' ? 'en' : 'es');
    applyStaticText();
    MESSAGE_AREAS.forEach((id) => setMsg(id, ''));
    $('toasts').textContent = '';
    if (st.user) renderAll();
  }

  function renderAll() {
    st.sendKey = '';
    [renderHeader, renderWsStatus, renderSessions, renderQr, renderSendOptions, renderAdmission, renderPhone,
      updatePauseLabel, tick].forEach((render) => render());
  }

  function clock(secs) {
    const h = Math.floor(secs / 3600);
    const mmss = String(Math.floor((secs % 3600) / 60)).padStart(h ? 2 : 1, '0') + ':' + String(secs % 60).padStart(2, '0');
    return h ? h + ':' + mmss : mmss;
  }

  function tickCountdown(node) {
    const until = Date.parse(node.dataset.until);
    if (!Number.isFinite(until)) { node.textContent = ''; return; }
    const left = Math.ceil((until - Date.now()) / 1000);
    node.dataset.remaining = String(Math.max(0, left));
    node.textContent = left > 0 ? t(node.dataset.tpl || 'countdown.left', { time: clock(left) }) : t(node.dataset.tplDone || 'countdown.over');
  }

  // Relative times and countdowns, computed locally (this timer never touches the network).
  function tick() {
    document.querySelectorAll('[data-until]').forEach((n) => { if (n.dataset.until) tickCountdown(n); });
    document.querySelectorAll('[data-since]').forEach((n) => { n.textContent = I18N.relTime(n.dataset.since); });
  }

  // ---------- API ----------

  function apiError(status, body, fallback) {
    const detail = (body && body.error) || {};
    const e = new Error(detail.message || fallback || 'HTTP ' + status);
    return Object.assign(e, { status, code: detail.code || (status ? 'http_' + status : 'network'), details: detail });
  }

  // opts.auth (default true): send the token, and a 401 ends the session unless opts.noLogout.
  // opts.text: return the body as text (the SVG QR).
  async function api(method, path, body, opts) {
    const o = Object.assign({ auth: true, noLogout: false, text: false }, opts);
    const headers = {};
    if (o.auth && st.token) headers.Authorization = 'Bearer ' + st.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw apiError(0, null, t('error.network'));
    }
    if (res.ok && o.text) return res.text();
    const raw = await res.text();
    let data = null;
    try { data = raw ? JSON.parse(raw) : null; } catch (e) { /* not JSON */ }
    if (res.status === 401 && o.auth && !o.noLogout) endSession(t('login.expired'));
    if (!res.ok) throw apiError(res.status, data, res.statusText);
    return data;
  }

  function errorText(e) {
    if (e.status === 0) return t('error.network');
    if (has('error.' + e.code)) return t('error.' + e.code);
    return has('block.' + e.code) ? t('block.' + e.code) : e.message;
  }

  // ---------- Auth and views ----------

  async function startup() {
    applyStaticText();
    bindEvents();
    st.token = sessionStorage.getItem(TOKEN_KEY);
    if (!st.token) { showLogin(''); return; }
    try {
      enterApp((await api('GET', '/auth/me')).user);
    } catch (e) {
      if (e.status !== 401) showLogin(errorText(e));
    }
  }

  function setLoggedIn(on) {
    $('login-view').hidden = on;
    ['app', 'logout-button', 'ws-status', 'user-info'].forEach((id) => { $(id).hidden = !on; });
  }

  function showLogin(message) {
    setLoggedIn(false);
    $('login-submit').disabled = false;
    setMsg('login-error', message, true);
    $('login-username').focus();
  }

  async function onLoginSubmit(ev) {
    ev.preventDefault();
    const username = $('login-username').value.trim();
    const password = $('login-password').value;
    if (!username || !password) { setMsg('login-error', t('login.missing'), true); return; }
    setMsg('login-error', '');
    $('login-submit').disabled = true;
    try {
      const r = await api('POST', '/auth/login', { username, password }, { auth: false });
      st.token = r.token;
      sessionStorage.setItem(TOKEN_KEY, r.token);
      $('login-password').value = '';
      enterApp(r.user);
    } catch (e) {
      const msg = { 401: t('login.invalid'), 429: t('login.tooMany') + ' ' + e.message }[e.status];
      setMsg('login-error', msg || errorText(e), true);
    } finally {
      $('login-submit').disabled = false;
    }
  }

  function enterApp(user) {
    st.user = user;
    st.epoch += 1;
    setLoggedIn(true);
    document.body.classList.toggle('is-admin', isAdmin());
    $('log-panel').hidden = $('new-session-tenant-field').hidden = !isAdmin();
    $('new-session-tenant').required = isAdmin();
    renderAll();
    loadSessions();
    refreshRate();
    probeSim();
    connectWs();
    st.ticker = setInterval(tick, 1000);
  }

  function renderHeader() {
    const u = st.user;
    const vars = { name: u.username, role: t('role.' + u.role), tenant: u.tenant_id };
    $('user-info').textContent = t(u.tenant_id ? 'user.withTenant' : 'user.plain', vars);
  }

  async function onLogout() {
    try { await api('POST', '/auth/logout', undefined, { noLogout: true }); } catch (e) { /* leaving anyway */ }
    endSession('');
  }

  // Forgets the token and all live state, then shows the login page.
  function endSession(message) {
    st.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (st.user) {
      st.user = null;
      st.epoch += 1;
      closeWs();
      clearInterval(st.ticker);
      Object.assign(st, fresh());
      ['sessions-body', 'admission-body', 'log-lines', 'phone-scan-list', 'phone-devices', 'toasts']
        .forEach((id) => { $(id).textContent = ''; });
      MESSAGE_AREAS.forEach((id) => setMsg(id, ''));
      $('phone-panel').hidden = true;
      renderQr();
    }
    showLogin(message);
  }

  // ---------- Sessions ----------

  function sortedSessions() {
    return [...st.sessions.values()].sort((a, b) => (a.name || '').localeCompare(b.name || '') || a.id.localeCompare(b.id));
  }

  async function loadSessions() {
    const epoch = st.epoch;
    await act('sessions-message', async () => {
      const r = await api('GET', '/api/v1/sessions');
      if (epoch !== st.epoch) return;
      st.sessions = new Map((r.sessions || []).map((s) => [s.id, s]));
      sessionsChanged();
      if (st.qrId) loadQr(st.qrId); // its code may have rotated while we were not listening
    });
  }

  function sessionsChanged(updated) {
    if (updated) st.sessions.set(updated.id, updated);
    renderSessions();
    syncQr();
    renderSendOptions();
    renderPhone();
  }

  // Rows are updated in place, so focus and a pending delete confirmation survive live updates.
  function renderSessions() {
    const body = $('sessions-body');
    const list = sortedSessions();
    list.forEach((s, i) => {
      const row = st.rows.get(s.id) || createRow(s.id);
      updateRow(row, s);
      if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
    });
    st.rows.forEach((row, id) => { if (!st.sessions.has(id)) { row.remove(); st.rows.delete(id); } });
    $('sessions-empty').hidden = list.length > 0;
    $('sessions-table').hidden = list.length === 0;
  }

  function createRow(id) {
    const row = el('tr', { 'data-session-id': id });
    ['name', 'tenant', 'state', 'reason', 'since', 'phone', 'actions']
      .forEach((col) => row.appendChild(el('td', { class: 'col-' + col, 'data-col': col })));
    row.querySelector('.col-tenant').classList.add('admin-only');
    const actions = row.querySelector('.col-actions');
    ['connect', 'disconnect', 'logout', 'delete', 'show-qr']
      .forEach((a) => actions.appendChild(button({ class: 'btn btn-small btn-' + a, 'data-action': a })));
    st.rows.set(id, row);
    return row;
  }

  function updateRow(row, s) {
    const cells = {};
    row.querySelectorAll('td').forEach((td) => { td.dataset.label = t('col.' + td.dataset.col); cells[td.dataset.col] = td; });
    row.dataset.state = s.state;
    cells.name.textContent = s.name;
    cells.tenant.textContent = s.tenant_id;
    cells.state.textContent = s.state;
    cells.state.className = 'col-state state state-' + String(s.state).toLowerCase();
    cells.state.title = tCode('state.', s.state);
    renderReasonCell(cells.reason, s);
    cells.since.textContent = '';
    if (s.since) cells.since.appendChild(sinceSpan(s.since));
    cells.phone.textContent = s.phone || '—';
    updateRowButtons(row, s);
  }

  function renderReasonCell(td, s) {
    td.textContent = s.state === 'DISCONNECTED' && s.reason ? tCode('reason.', s.reason) : '';
    const adm = s.admission;
    if (!adm || (adm.status !== 'queued' && adm.status !== 'denied')) return;
    const note = td.appendChild(el('span', { class: 'admission-note admission-' + adm.status }));
    if (adm.status === 'queued') {
      note.textContent = t('adm.queued', { position: adm.position === undefined || adm.position === null ? '?' : adm.position }) + ' ';
      if (adm.start_at) note.appendChild(countdownSpan(adm.start_at, 'adm.startsIn', 'adm.startsNow'));
    } else {
      note.textContent = t('adm.denied', { reason: tCode('block.', adm.reason) }) + ' ';
      if (adm.proxy) note.append(adm.proxy + ' ');
      if (adm.block_until) note.appendChild(countdownSpan(adm.block_until, 'countdown.left', 'countdown.over'));
      else if (adm.wait_time_minutes) note.append(t('adm.waitMinutes', { n: adm.wait_time_minutes }));
    }
  }

  function updateRowButtons(row, s) {
    const neverConnected = s.state === 'DISCONNECTED' && (!s.reason || s.reason === 'never_connected');
    const enabled = {
      connect: s.state === 'DISCONNECTED', disconnect: LIVE_STATES.includes(s.state),
      logout: !neverConnected, delete: true, 'show-qr': s.state === 'QR',
    };
    row.querySelectorAll('button[data-action]').forEach((b) => {
      const action = b.dataset.action;
      b.disabled = !enabled[action];
      if (action === 'show-qr') b.hidden = s.state !== 'QR';
      if (b.dataset.armed) return;
      b.textContent = t('action.' + action);
      b.setAttribute('aria-label', t('action.' + action) + ': ' + s.name);
    });
  }

  function onSessionAction(ev) {
    const btn = ev.target.closest('button[data-action]');
    const s = btn && !btn.disabled && st.sessions.get(btn.closest('tr').dataset.sessionId);
    if (!s) return;
    const action = btn.dataset.action;
    if (action === 'connect') connectSession(s);
    else if (action === 'disconnect' || action === 'logout') stopSession(s, action);
    else if (action === 'delete') deleteClicked(btn, s);
    else if (action === 'show-qr') showQrOf(s.id);
  }

  async function connectSession(s) {
    try {
      const r = await api('POST', sessionPath(s.id, '/connect'));
      if (r.outcome === 'queued') {
        r.session.admission = r.session.admission || { status: 'queued', start_at: r.start_at, position: r.position };
        const startsIn = r.start_at && countdownSpan(r.start_at, 'adm.startsIn', 'adm.startsNow');
        setMsg('sessions-message', t('msg.queued', { name: s.name, position: r.position }), false, startsIn);
        st.queuedNoticeFor = s.id;
      } else {
        setMsg('sessions-message', t('msg.alreadyLive', { name: s.name }));
      }
      if (r.session) sessionsChanged(r.session);
    } catch (e) {
      if (e.status === 429) connectDenied(s, e.details);
      else if (e.status !== 401) setMsg('sessions-message', errorText(e), true);
    }
  }

  // A 429 on connect: the row and the message show the reason and a countdown to block_until.
  function connectDenied(s, d) {
    s.admission = { status: 'denied', reason: d.reason || d.code, wait_time_minutes: d.wait_time_minutes, block_until: d.block_until };
    sessionsChanged(s);
    const text = t('msg.denied', { name: s.name, reason: tCode('block.', s.admission.reason) });
    const left = d.block_until && countdownSpan(d.block_until, 'countdown.left', 'countdown.over');
    setMsg('sessions-message', d.block_until ? text : text + ' ' + (d.message || ''), true, left);
  }

  function stopSession(s, action) {
    act('sessions-message', async () => {
      const updated = await api('POST', sessionPath(s.id, '/' + action));
      if (updated && updated.id) sessionsChanged(updated);
      return t('msg.' + action, { name: s.name });
    });
  }

  // Delete asks for a second click within 5 s (an in-page confirmation rather than a modal dialog).
  function deleteClicked(btn, s) {
    if (btn.dataset.armed) {
      clearTimeout(btn.armTimer);
      disarm(btn, s.id);
      act('sessions-message', async () => {
        await api('DELETE', sessionPath(s.id));
        st.sessions.delete(s.id);
        sessionsChanged();
        return t('msg.deleted', { name: s.name });
      });
      return;
    }
    btn.dataset.armed = '1';
    btn.textContent = t('action.confirmDelete');
    btn.setAttribute('aria-label', t('action.confirmDeleteAria', { name: s.name }));
    setMsg('sessions-message', t('msg.confirmDelete', { name: s.name }));
    btn.armTimer = setTimeout(() => disarm(btn, s.id), 5000);
  }

  function disarm(btn, id) {
    delete btn.dataset.armed;
    if (st.sessions.has(id)) updateRowButtons(btn.closest('tr'), st.sessions.get(id));
  }

  async function onNewSession(ev) {
    ev.preventDefault();
    const name = $('new-session-name').value.trim();
    const tenant = $('new-session-tenant').value.trim();
    if (!name || (isAdmin() && !tenant)) { setMsg('new-session-error', t('new.missing'), true); return; }
    $('new-session-submit').disabled = true;
    await act('new-session-error', async () => {
      const s = await api('POST', '/api/v1/sessions', isAdmin() ? { tenant_id: tenant, name } : { name });
      sessionsChanged(s);
      $('new-session-name').value = '';
      return t('new.created', { name: s.name });
    });
    $('new-session-submit').disabled = false;
  }

  // ---------- QR ----------

  // Keeps the QR panel on a session in QR (the first one, if the shown one left QR) or hides it.
  function syncQr() {
    const current = st.sessions.get(st.qrId);
    if (!current || current.state !== 'QR') {
      const next = sortedSessions().find((s) => s.state === 'QR');
      st.qrId = next ? next.id : null;
      if (next) loadQr(next.id);
    }
    renderQr();
  }

  function showQrOf(id) {
    st.qrId = id;
    loadQr(id);
    renderQr();
    $('qr-panel').scrollIntoView({ block: 'nearest' });
  }

  function renderQr() {
    const s = st.sessions.get(st.qrId);
    const img = $('qr-image');
    const countdown = $('qr-countdown');
    $('qr-panel').hidden = !s;
    countdown.dataset.until = (s && s.qr_expires_at) || '';
    countdown.textContent = '';
    if (!s) {
      st.qrTicket += 1; // drops any image still on its way
      img.removeAttribute('src');
      img.dataset.sessionId = '';
      setMsg('qr-error', '');
      return;
    }
    $('qr-session-name').textContent = t('qr.for', { name: s.name });
    $('pairing-code-value').textContent = s.pairing_code ? t('qr.code', { code: s.pairing_code.code }) : '';
    img.alt = t('qr.alt', { name: s.name });
    if (s.qr_expires_at) tickCountdown(countdown);
  }

  function svgDataUrl(text) {
    let binary = '';
    new TextEncoder().encode(text).forEach((b) => { binary += String.fromCharCode(b); });
    return 'data:image/svg+xml;base64,' + btoa(binary);
  }

  // An <img> cannot send the bearer token, so the SVG is fetched and inlined as a data: URL.
  async function loadQr(id) {
    const ticket = ++st.qrTicket;
    try {
      const svg = await api('GET', sessionPath(id, '/qr?format=svg'), undefined, { text: true });
      if (ticket !== st.qrTicket || st.qrId !== id) return;
      $('qr-image').src = svgDataUrl(svg);
      $('qr-image').dataset.sessionId = id;
      setMsg('qr-error', '');
    } catch (e) {
      if (ticket === st.qrTicket && e.status !== 401) setMsg('qr-error', e.status === 409 ? t('qr.gone') : errorText(e), true);
    }
  }

  // Link with a phone number: the code to type on the phone (WhatsApp →
  // Linked devices → Link with phone number), admitted per number.
  async function onPairingCode(ev) {
    ev.preventDefault();
    const id = st.qrId;
    const phone = $('pairing-code-phone').value.trim();
    if (!id || !phone) return;
    $('pairing-code-submit').disabled = true;
    await act('pairing-code-message', async () => {
      const r = await api('POST', sessionPath(id, '/pairing-code'), { phone });
      const s = st.sessions.get(id);
      if (s) s.pairing_code = { code: r.code, expires_at: r.expires_at };
      renderQr();
      return t('qr.codeShown');
    });
    $('pairing-code-submit').disabled = false;
  }

  function onPairingCodeEvent(m) {
    const s = st.sessions.get(m.session_id);
    if (!s || !m.pairing_code) return;
    s.pairing_code = m.pairing_code;
    if (st.qrId === s.id) renderQr();
    refreshDevices(); // the demo phone can now type it
  }

  // ---------- Send test message ----------

  function renderSendOptions() {
    const ready = sortedSessions().filter((s) => s.state === 'READY');
    const key = JSON.stringify(ready.map((s) => [s.id, s.name, s.phone]));
    if (key === st.sendKey) return; // unchanged: leave the select (and its focus) alone
    st.sendKey = key;
    const select = $('send-session');
    const previous = select.value;
    select.textContent = '';
    ready.forEach((s) => select.appendChild(el('option', { value: s.id }, s.phone ? s.name + ' (' + s.phone + ')' : s.name)));
    if (!ready.length) select.appendChild(el('option', { value: '' }, t('send.none')));
    if (ready.some((s) => s.id === previous)) select.value = previous;
    select.disabled = !ready.length;
    $('send-submit').disabled = !ready.length;
  }

  async function onSend(ev) {
    ev.preventDefault();
    const id = $('send-session').value;
    const body = { to: $('send-to').value.trim(), text: $('send-text').value };
    if (!id || !body.to || !body.text) { setMsg('send-result', t('send.missing'), true); return; }
    $('send-submit').disabled = true;
    await act('send-result', async () => {
      const r = await api('POST', sessionPath(id, '/messages'), body);
      return t('send.ok', { id: r.id, status: r.status });
    });
    $('send-submit').disabled = !$('send-session').value;
  }

  // ---------- Admission panel ----------

  // One GET per trigger (a WebSocket event or an action); triggers mid-flight coalesce into one more GET.
  async function refreshRate() {
    if (st.rateBusy) { st.rateDirty = true; return; }
    st.rateBusy = true;
    const epoch = st.epoch;
    await act('admission-message', async () => {
      const r = await api('GET', '/api/rate-limit-status');
      if (epoch === st.epoch) { st.rate = r; renderAdmission(); }
    });
    if (epoch !== st.epoch) return;
    st.rateBusy = false;
    if (st.rateDirty) { st.rateDirty = false; refreshRate(); }
  }

  function renderAdmission() {
    const r = st.rate;
    const global = $('global-attempts');
    global.textContent = r ? t('adm.global', { n: r.global_attempts_last_hour, limit: r.global_limit }) : '';
    if (r && r.global_blocked) global.append(' — ', el('strong', { class: 'bad' }, t('adm.globalBlocked')));
    global.dataset.blocked = String(!!(r && r.global_blocked));
    const orgs = (r && r.organizations) || [];
    const body = $('admission-body');
    keepFocus(body, () => { body.textContent = ''; orgs.forEach((o) => body.appendChild(orgRow(o))); });
    $('admission-empty').hidden = orgs.length > 0;
    tick();
  }

  const yesNo = (value, goodWhenTrue) =>
    el('span', { class: 'badge ' + (value === goodWhenTrue ? 'badge-ok' : 'badge-bad') }, t(value ? 'yes' : 'no'));

  function orgRow(o) {
    const row = el('tr', { 'data-org-id': o.organization_id, 'data-can-connect': String(!!o.can_connect) });
    const add = (labelKey, content) => {
      const td = row.appendChild(el('td', { 'data-label': t(labelKey) }));
      if (content instanceof Node) td.appendChild(content); else td.textContent = content;
      return td;
    };
    const wait = o.wait_time_minutes ? t('adm.waitMinutes', { n: o.wait_time_minutes }) : '—';
    add('adm.col.org', o.organization_id);
    add('adm.col.canConnect', yesNo(!!o.can_connect, true));
    add('adm.col.reason', o.block_reason ? tCode('block.', o.block_reason) : '—');
    add('adm.col.remaining', o.block_until ? countdownSpan(o.block_until, 'countdown.left', 'countdown.over') : wait);
    add('adm.col.attempts', o.attempts_last_24h + ' / ' + o.daily_limit);
    add('adm.col.block515', yesNo(!!o.is_blocked_515, false));
    add('adm.col.lastFailure', o.last_failure ? sinceSpan(o.last_failure) : '—');
    const actions = add('col.actions', '');
    actions.classList.add('admin-only', 'actions');
    if (isAdmin()) {
      ['unblock', 'reset-cooldown'].forEach((a) => actions.appendChild(button({ 'data-org-action': a, 'data-key': a + ':' + o.organization_id },
        t('adm.action.' + a), t('adm.action.' + a) + ': ' + o.organization_id)));
    }
    return row;
  }

  // Unblock / reset cooldown (admins).
  async function orgAction(btn) {
    const orgId = btn.closest('tr').dataset.orgId;
    await api('POST', '/api/v1/tenants/' + enc(orgId) + '/' + btn.dataset.orgAction);
    return t('adm.done.' + btn.dataset.orgAction, { id: orgId });
  }

  // ---------- Live log (admins) ----------

  const levelRank = (level) => (LEVELS.includes(level) ? LEVELS.indexOf(level) : LEVELS.indexOf('info')); // audit ranks as info

  function passesFilter(entry) {
    const tenant = $('log-filter-tenant').value.trim().toLowerCase();
    return levelRank(entry.level) >= levelRank($('log-filter-level').value)
      && (!tenant || (entry.tenant || '').toLowerCase().includes(tenant));
  }

  function logLine(entry) {
    const li = el('li', { class: 'log-line level-' + entry.level, 'data-level': entry.level });
    const time = new Date(entry.at);
    const fields = Object.entries(entry.fields || {}).filter(([, v]) => v !== undefined && v !== null)
      .map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)));
    li.append(
      el('time', { class: 'log-time', datetime: entry.at || null }, isNaN(time) ? '' : time.toLocaleTimeString(I18N.lang(), { hour12: false })),
      el('span', { class: 'log-level' }, entry.level.toUpperCase()),
      el('span', { class: 'log-tenant' }, entry.tenant || '-'),
      el('span', { class: 'log-message', title: entry.target || null }, entry.message),
      el('span', { class: 'log-fields' }, fields.join(' ')));
    return li;
  }

  // Newest at the bottom; follows the tail only if the reader is already there.
  function addLogEntry(entry) {
    st.logs.push(entry);
    if (st.logs.length > LOG_CAP) st.logs.shift();
    if (!passesFilter(entry)) return;
    const list = $('log-lines');
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.appendChild(logLine(entry));
    while (list.children.length > LOG_CAP) list.firstChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  // While paused, lines wait in st.pending (the newest LOG_CAP of them).
  function receiveLog(entry) {
    if (!st.paused) { addLogEntry(entry); return; }
    st.pending.push(entry);
    if (st.pending.length > LOG_CAP) st.pending.shift();
    updatePauseLabel();
  }

  function rerenderLogs() {
    const list = $('log-lines');
    const frag = document.createDocumentFragment();
    st.logs.filter(passesFilter).forEach((e) => frag.appendChild(logLine(e)));
    list.textContent = '';
    list.appendChild(frag);
    list.scrollTop = list.scrollHeight;
  }

  function togglePause() {
    st.paused = !st.paused;
    if (!st.paused) st.pending.splice(0).forEach(addLogEntry);
    updatePauseLabel();
  }

  function updatePauseLabel() {
    const b = $('log-pause');
    b.setAttribute('aria-pressed', String(st.paused));
    b.textContent = st.paused ? t('log.resume', { n: st.pending.length }) : t('log.pause');
  }

  // After a reconnect: what the audit log recorded while the socket was down. Missed supervisor
  // log lines come back as log lines, everything else as "audit" lines (`data`, or `detail`, as fields).
  async function loadAudit(since) {
    if (!isAdmin() || !since) return;
    const r = await api('GET', '/api/v1/logs?since=' + enc(since)).catch(() => ({})); // best effort
    (r.entries || []).forEach((e) => {
      const data = e.data !== undefined ? e.data : e.detail;
      if (data && data.type === 'log') { WS_HANDLERS.log(data); return; }
      const fields = data && typeof data === 'object' ? Object.assign({}, data, { type: undefined, seq: undefined }) : { detail: data };
      receiveLog({ at: e.at, level: 'audit', tenant: e.tenant || '', target: 'audit', message: t('log.audit', { actor: e.actor || '-', action: e.action || '' }), fields });
    });
  }

  // ---------- Demo phone (the simulator is mounted only in demo mode) ----------

  async function probeSim() {
    const epoch = st.epoch;
    try {
      const list = await api('GET', '/sim/devices', undefined, { auth: false });
      if (epoch !== st.epoch) return;
      Object.assign(st, { simOn: true, devices: Array.isArray(list) ? list : [] });
      $('phone-panel').hidden = false;
      renderPhone();
    } catch (e) {
      if (epoch === st.epoch) { st.simOn = false; $('phone-panel').hidden = true; }
    }
  }

  const refreshDevices = () => { if (st.simOn) probeSim(); };
  function renderPhone() {
    if (!st.simOn) return;
    const qrList = $('phone-scan-list');
    keepFocus(qrList, () => {
      qrList.textContent = '';
      sortedSessions().filter((s) => s.state === 'QR').forEach((s) => qrList.appendChild(el('li')).appendChild(button(
        { class: 'btn btn-primary', 'data-sim-action': 'scan', 'data-session-id': s.id, 'data-key': 'scan:' + s.id },
        t('sim.scan', { name: s.name }))));
      if (!qrList.children.length) qrList.appendChild(el('li', { class: 'empty' }, t('sim.noQr')));
    });
    const devices = $('phone-devices');
    keepFocus(devices, () => {
      devices.textContent = '';
      st.devices.forEach((d) => devices.appendChild(deviceItem(d)));
      if (!st.devices.length) devices.appendChild(el('li', { class: 'empty' }, t('sim.noDevices')));
    });
  }

  function deviceItem(d) {
    const li = el('li', { class: 'device', 'data-device-id': d.id, 'data-device-state': d.state });
    li.appendChild(el('span', { class: 'device-info' }, t('sim.device', { id: d.id, state: tCode('sim.state.', d.state), phone: d.phone || '—' })));
    if (d.pairing_code) {
      const pair = li.appendChild(el('span', { class: 'actions' }));
      pair.appendChild(button({ 'data-sim-action': 'pair', 'data-device-id': d.id, 'data-code': d.pairing_code, 'data-key': 'pair:' + d.id },
        t('sim.action.pair', { code: d.pairing_code }), t('sim.action.pair', { code: d.pairing_code }) + ': ' + d.id));
    }
    if (d.state !== 'CONNECTED') return li;
    const actions = li.appendChild(el('span', { class: 'actions' }));
    ['logout', 'tos-block', 'proxy-block', 'incoming'].forEach((a) => actions.appendChild(button({ 'data-sim-action': a, 'data-device-id': d.id, 'data-key': a + ':' + d.id },
      t('sim.action.' + a), t('sim.action.' + a) + ': ' + d.id)));
    return li;
  }

  // Scan: the phone scans the session's current QR string (the JSON form of the QR endpoint).
  async function simAction(btn) {
    const action = btn.dataset.simAction;
    if (action === 'pair') {
      await api('POST', '/sim/pair', { code: btn.dataset.code, phone: $('phone-number').value.trim() }, { auth: false });
    } else if (action === 'scan') {
      const current = await api('GET', sessionPath(btn.dataset.sessionId, '/qr'));
      await api('POST', '/sim/scan', { qr: current.qr, phone: $('phone-number').value.trim() }, { auth: false });
    } else {
      const body = action === 'incoming' ? { from: $('sim-from').value.trim(), text: $('sim-text').value } : undefined;
      await api('POST', '/sim/devices/' + enc(btn.dataset.deviceId) + '/' + action, body, { auth: false });
    }
    return t('sim.done.' + action);
  }

  function toast(text) {
    const list = $('toasts');
    const item = list.appendChild(el('li', { class: 'toast' }, text));
    while (list.children.length > 5) list.firstChild.remove();
    setTimeout(() => item.remove(), 8000);
  }

  // ---------- WebSocket (the only source of live updates) ----------

  function renderWsStatus() {
    const live = !!st.ws && st.ws.readyState === WebSocket.OPEN;
    $('ws-status').dataset.status = live ? 'live' : 'reconnecting';
    $('ws-status').textContent = t(live ? 'ws.live' : 'ws.reconnecting');
  }

  function connectWs() {
    clearTimeout(st.wsTimer);
    if (!st.token) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(proto + '//' + location.host + '/api/v1/ws?token=' + enc(st.token) + (isAdmin() ? '&logs=1' : ''));
    st.ws = ws;
    ws.addEventListener('open', () => onWsOpen(ws));
    ws.addEventListener('message', (ev) => { if (ws === st.ws) onWsMessage(ev.data); });
    ws.addEventListener('close', () => onWsClose(ws));
    renderWsStatus();
  }

  // Every (re)open catches up: the session list and the admission panel are fetched again.
  function onWsOpen(ws) {
    if (ws !== st.ws) return;
    const reconnected = st.wsOpened;
    Object.assign(st, { wsOpened: true, backoff: BACKOFF_MIN });
    renderWsStatus();
    loadSessions();
    refreshRate();
    if (reconnected) { refreshDevices(); loadAudit(st.seqAtClose); }
  }

  // Reconnects after 1 s, doubling up to 30 s.
  function onWsClose(ws) {
    if (ws !== st.ws) return;
    Object.assign(st, { ws: null, seqAtClose: st.seq });
    if (!st.token) return;
    renderWsStatus();
    st.wsTimer = setTimeout(reconnectWs, st.backoff);
    st.backoff = Math.min(st.backoff * 2, BACKOFF_MAX);
  }

  // Checks the token first: an expired one leads to the login page, not to endless retries.
  async function reconnectWs() {
    try { await api('GET', '/auth/me'); } catch (e) { if (e.status === 401) return; }
    if (st.token && !st.ws) connectWs();
  }

  function closeWs() {
    const ws = st.ws;
    clearTimeout(st.wsTimer);
    st.ws = null;
    if (ws) ws.close();
  }

  const WS_HANDLERS = {
    transition: (m) => onTransition(m),
    admission: (m) => onAdmission(m),
    log: (m) => receiveLog({
      at: m.at, level: String(m.level || 'info').toLowerCase(), tenant: m.tenant_id || '',
      target: m.target, message: m.message || '', fields: m.fields,
    }),
    message_in: (m) => toast(t('toast.incoming', { session: sessionName(m.session_id), from: m.from, text: m.text })),
    pairing_code: onPairingCodeEvent,
    ack: (m) => toast(t('toast.ack', { session: sessionName(m.session_id), id: m.message_id, ack: tCode('ack.', String(m.ack)) })),
    resync: () => { loadSessions(); refreshRate(); refreshDevices(); },
  };

  function onWsMessage(data) {
    let m = null;
    try { m = JSON.parse(data); } catch (e) { /* ignored */ }
    if (!m || typeof m !== 'object' || !WS_HANDLERS[m.type]) return;
    if (typeof m.seq === 'number' && m.seq > st.seq) st.seq = m.seq;
    WS_HANDLERS[m.type](m);
  }

  function onTransition(m) {
    refreshRate();
    refreshDevices();
    const s = st.sessions.get(m.session_id);
    if (!s) { loadSessions(); return; } // a session this page has not seen yet
    const to = m.to || {};
    const wasQr = s.state === 'QR';
    const rotated = wasQr && to.state === 'QR' && to.code !== s.qr_code;
    s.state = to.state || s.state;
    s.since = m.at || s.since;
    s.reason = s.state === 'DISCONNECTED' ? (to.reason || m.reason || null) : null;
    if (to.me) s.phone = to.me;
    s.qr_expires_at = s.state === 'QR' ? (to.expires_at || null) : null;
    s.qr_code = s.state === 'QR' ? (to.code || null) : null;
    if (s.state !== 'QR') s.pairing_code = null;
    if (s.state !== 'DISCONNECTED') s.admission = null;
    // The "queued" notice of this session is over once it leaves DISCONNECTED.
    if (st.queuedNoticeFor === s.id && s.state !== 'DISCONNECTED') {
      setMsg('sessions-message', '');
      st.queuedNoticeFor = null;
    }
    // A session that starts showing a QR takes the panel; a rotation reloads the image shown.
    if (s.state === 'QR' && (!wasQr || (rotated && st.qrId === s.id))) { st.qrId = s.id; loadQr(s.id); }
    sessionsChanged();
  }

  function onAdmission(m) {
    refreshRate();
    const s = st.sessions.get(m.session_id);
    if (!s) return;
    if (m.decision === 'queued') s.admission = { status: 'queued', start_at: m.start_at, position: m.position };
    else if (m.decision === 'denied') s.admission = { status: 'denied', reason: m.reason, wait_time_minutes: m.wait_time_minutes, block_until: m.block_until };
    else s.admission = null;
    sessionsChanged();
  }

  // ---------- Wiring ----------

  function bindEvents() {
    const on = (id, type, handler) => $(id).addEventListener(type, handler);
    on('login-form', 'submit', onLoginSubmit);
    on('logout-button', 'click', onLogout);
    on('lang-toggle', 'click', toggleLang);
    on('sessions-body', 'click', onSessionAction);
    on('new-session-form', 'submit', onNewSession);
    on('send-form', 'submit', onSend);
    on('pairing-code-form', 'submit', onPairingCode);
    delegate('admission-body', 'button[data-org-action]', 'admission-message', orgAction, refreshRate);
    delegate('phone-panel', 'button[data-sim-action]', 'phone-result', simAction, refreshDevices);
    on('log-pause', 'click', togglePause);
    on('log-filter-level', 'change', rerenderLogs);
    on('log-filter-tenant', 'input', rerenderLogs);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', startup);
  else startup();
}());
