#!/usr/bin/env node
// Conformance test for the WhatsApp Web simulator (`centinela sim --tls`):
// the unmodified npm package whatsapp-web.js 1.34.7 is pointed at the
// simulator exactly as it would be pointed at https://web.whatsapp.com/
// (Chromium resolves web.whatsapp.com to SIM_ADDR) and must link, send,
// receive, see acks, show typing and mark chats read, restore its session,
// pair with a code and log out.
//
// Input:  SIM_ADDR=127.0.0.1:PORT  (the simulator, HTTPS, self-signed)
//         CHROMIUM=/usr/bin/chromium (optional)
//         CONFORMANCE_RUN_TIMEOUT_MS (optional, default 240000)
//         CONFORMANCE_WAIT_MS        (optional, default 60000, per wait)
//         CONFORMANCE_VERBOSE=1      (optional, page console and every event)
// Output: one TAP-like line per step, diagnostics as `# ...` lines, and a
//         closing `N passed, M failed`. Exit 0 only if every step passed.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const https = require('https');

const EXPECTED_WWEBJS = '1.34.7';
const STEP_COUNT = 8;
const RUN_TIMEOUT_MS = Number(process.env.CONFORMANCE_RUN_TIMEOUT_MS) || 240000;
const WAIT_MS = Number(process.env.CONFORMANCE_WAIT_MS) || 60000;
const VERBOSE = process.env.CONFORMANCE_VERBOSE === '1';
const SIM_ADDR = process.env.SIM_ADDR || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const PHONE_A = '5491122334455';
const PHONE_B = '5491122334466';
const PEER_OUT = '5491100000001';
const PEER_IN = '5491100000002';
const PEER_LID = '5491100000003';
// The pairing-code alphabet of WhatsApp (no 0, I, O, U).
const PAIRING_CODE_RE = /^([1-9A-HJ-NP-TV-Z]{4})-?([1-9A-HJ-NP-TV-Z]{4})$/;

const startedAt = Date.now();
const handles = []; // every client started, for cleanup
const tempDirs = [];
const unhandled = [];

function diag(line) {
    for (const l of String(line).split('\n')) process.stdout.write(`# ${l}\n`);
}

function secs() {
    return ((Date.now() - startedAt) / 1000).toFixed(1);
}

function errText(e) {
    if (e instanceof Error) return e.message || String(e);
    if (typeof e === 'string') return e;
    try {
        return JSON.stringify(e);
    } catch {
        return String(e);
    }
}

function short(v, n = 300) {
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    return s && s.length > n ? `${s.slice(0, n)}…` : s;
}

// whatsapp-web.js starts some page work without awaiting it
// (requestPairingCode, the framenavigated re-inject); its rejections must be
// seen, not crash the run.
process.on('unhandledRejection', (reason) => {
    unhandled.push(errText(reason));
    diag(`[${secs()}s] unhandled rejection (inside whatsapp-web.js or puppeteer): ${errText(reason)}`);
});

// ---------------------------------------------------------------- control API

const simUrl = SIM_ADDR ? new URL(`https://${SIM_ADDR}`) : null;
// The simulator's certificate is self-signed: trust it for these requests only.
const simAgent = new https.Agent({ rejectUnauthorized: false, keepAlive: false });

function api(method, apiPath, body) {
    return new Promise((resolve, reject) => {
        const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
        const req = https.request(
            {
                hostname: simUrl.hostname.replace(/^\[|\]$/g, ''),
                port: simUrl.port || 443,
                path: apiPath,
                method,
                agent: simAgent,
                headers: {
                    accept: 'application/json',
                    ...(payload
                        ? { 'content-type': 'application/json', 'content-length': payload.length }
                        : {}),
                },
                timeout: WAIT_MS,
            },
            (res) => {
                const chunks = [];
                res.on('data', (c) => chunks.push(c));
                res.on('end', () => {
                    const text = Buffer.concat(chunks).toString('utf8');
                    let json;
                    try {
                        json = text ? JSON.parse(text) : undefined;
                    } catch {
                        json = undefined;
                    }
                    resolve({ status: res.statusCode, json, text });
                });
                res.on('error', reject);
            },
        );
        req.on('timeout', () => req.destroy(new Error(`${method} ${apiPath}: no answer in ${WAIT_MS} ms`)));
        req.on('error', (e) => reject(new Error(`${method} ${apiPath}: ${errText(e)}`)));
        req.end(payload);
    });
}

async function apiOk(method, apiPath, body) {
    const res = await api(method, apiPath, body);
    if (res.status !== 200) {
        throw new Error(`${method} ${apiPath} ${short(body ?? '')} -> HTTP ${res.status} ${short(res.text)}`);
    }
    if (res.json === undefined) {
        throw new Error(`${method} ${apiPath} -> 200 but not JSON: ${short(res.text)}`);
    }
    return res.json;
}

// ---------------------------------------------------------------- waiting

function withTimeout(promise, ms, label) {
    let timer;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`${label}: not done in ${ms} ms`)), ms);
        }),
    ]).finally(() => clearTimeout(timer));
}

// Polls a condition on the simulator (its API has no push channel).
async function pollUntil(fn, label, timeout = WAIT_MS, interval = 250) {
    const deadline = Date.now() + timeout;
    let last;
    for (;;) {
        const { done, value, seen } = await fn();
        if (done) return value;
        last = seen;
        if (Date.now() >= deadline) {
            throw new Error(`${label}: not seen in ${timeout} ms; last seen: ${short(last, 600)}`);
        }
        await new Promise((r) => setTimeout(r, interval));
    }
}

const CLIENT_EVENTS = [
    'qr',
    'code',
    'authenticated',
    'auth_failure',
    'ready',
    'loading_screen',
    'change_state',
    'message',
    'message_create',
    'message_ack',
    'message_ciphertext',
    'disconnected',
];

function describeArgs(ev, args) {
    const a = args[0];
    if (ev.startsWith('message') && a && typeof a === 'object') {
        const id = a.id && a.id._serialized;
        return `{id:${id}, from:${a.from}, to:${a.to}, type:${a.type}, body:${short(a.body, 40)}}${
            ev === 'message_ack' ? ` ack=${args[1]}` : ''
        }`;
    }
    return short(args.map((x) => (x === undefined ? 'undefined' : x)), 120);
}

// Records every event of a client, so a wait can look at what already fired
// (events fire during initialize(), before anyone could await them) and at
// the order in which things fired.
class Recorder {
    constructor(client, name) {
        this.name = name;
        this.events = [];
        this.waiters = new Set();
        for (const ev of CLIENT_EVENTS) {
            client.on(ev, (...args) => this.push(ev, args));
        }
    }

    push(ev, args) {
        const e = { ev, args, seq: this.events.length, at: secs() };
        this.events.push(e);
        if (VERBOSE) diag(`[${e.at}s] ${this.name}: ${ev} ${describeArgs(ev, args)}`);
        for (const w of [...this.waiters]) w.check(e);
    }

    mark() {
        return this.events.length;
    }

    trail(from = 0) {
        return (
            this.events
                .slice(from)
                .map((e) => `${e.ev}@${e.at}s`)
                .join(' ') || '(no events)'
        );
    }

    // Resolves with the first `ev` event at or after `from` passing `filter`;
    // rejects if one of `forbid` (or init_error) fires before it, or on timeout.
    wait(ev, { from = 0, filter = () => true, forbid = [], timeout = WAIT_MS, label = ev } = {}) {
        const forbidden = new Set([...forbid, 'init_error']);
        return new Promise((resolve, reject) => {
            const w = {
                check: (e) => {
                    if (e.seq < from) return false;
                    if (e.ev === ev) {
                        let pass = false;
                        try {
                            pass = filter(...e.args);
                        } catch (err) {
                            finish(() => reject(new Error(`${this.name}: checking ${ev}: ${errText(err)}`)));
                            return true;
                        }
                        if (pass) {
                            finish(() => resolve(e));
                            return true;
                        }
                    }
                    if (forbidden.has(e.ev)) {
                        const what = e.ev === 'init_error' ? `initialize() failed: ${errText(e.args[0])}` : `'${e.ev}' fired (${describeArgs(e.ev, e.args)})`;
                        finish(() => reject(new Error(`${this.name}: ${what} while waiting for ${label}; events so far: ${this.trail()}`)));
                        return true;
                    }
                    return false;
                },
            };
            const timer = setTimeout(
                () =>
                    finish(() =>
                        reject(new Error(`${this.name}: no ${label} in ${timeout} ms; events so far: ${this.trail()}`)),
                    ),
                timeout,
            );
            const finish = (f) => {
                clearTimeout(timer);
                this.waiters.delete(w);
                f();
            };
            for (const e of this.events) if (w.check(e)) return;
            this.waiters.add(w);
        });
    }
}

// ---------------------------------------------------------------- clients

let Client;
let LocalAuth;

function makeTempDir(tag) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `centinela-wwebjs-${tag}-`));
    tempDirs.push(dir);
    return dir;
}

function puppeteerOptions() {
    return {
        executablePath: CHROMIUM,
        headless: true,
        args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-dev-shm-usage',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            `--host-resolver-rules=MAP web.whatsapp.com ${SIM_ADDR}`,
            '--ignore-certificate-errors',
        ],
    };
}

// Creates a Client and starts initialize() without awaiting it: its events
// go to the recorder, and its failure becomes an `init_error` event.
function startClient(name, clientId, dataPath, extra = {}) {
    const client = new Client({
        authStrategy: new LocalAuth({ clientId, dataPath }),
        webVersionCache: { type: 'none' },
        puppeteer: puppeteerOptions(),
        ...extra,
    });
    const rec = new Recorder(client, name);
    const handle = { name, client, rec, pagesHooked: new WeakSet() };
    handles.push(handle);
    hookPage(handle);
    client.initialize().catch((e) => rec.push('init_error', [e]));
    return handle;
}

// Page errors are what the simulator's author needs when a step fails: show
// uncaught page exceptions and console errors (everything with VERBOSE).
function hookPage(handle) {
    const timer = setInterval(() => {
        const page = handle.client.pupPage;
        if (!page || handle.pagesHooked.has(page)) return;
        handle.pagesHooked.add(page);
        clearInterval(timer);
        page.on('pageerror', (e) => {
            handle.rec.push('page_error', [errText(e)]);
            // The first line, and where in whatsapp-web.js's injected code it
            // happened (`evaluate at Client.<method> (…/Client.js:line)`).
            const lines = errText(e).split('\n');
            const where = VERBOSE ? lines.slice(1) : lines.filter((l) => /evaluate at /.test(l)).slice(0, 1);
            diag(`[${secs()}s] ${handle.name} page error: ${[lines[0], ...where.map((l) => l.trim())].join('\n  ')}`);
        });
        page.on('console', (m) => {
            if (!VERBOSE && m.type() !== 'error') return;
            const loc = m.location && m.location();
            const where = loc && loc.url ? ` (${loc.url})` : '';
            diag(`[${secs()}s] ${handle.name} console.${m.type()}: ${short(m.text(), 500)}${where}`);
        });
        page.on('framenavigated', (f) => {
            if (VERBOSE && f === page.mainFrame()) diag(`[${secs()}s] ${handle.name} navigated to ${f.url()}`);
        });
    }, 50);
    timer.unref();
    handle.stopHook = () => clearInterval(timer);
}

function browserAlive(handle) {
    const proc = handle.client.pupBrowser && handle.client.pupBrowser.process && handle.client.pupBrowser.process();
    return !!(proc && proc.exitCode === null && proc.signalCode === null);
}

function browserGroup(handle) {
    const browser = handle.client.pupBrowser;
    const proc = browser && browser.process && browser.process();
    return proc && proc.pid ? proc.pid : null;
}

function groupAlive(pgid) {
    try {
        process.kill(-pgid, 0);
        return true;
    } catch {
        return false;
    }
}

// Puppeteer starts Chromium as the leader of its own process group: kill the
// whole group (renderers, zygote, GPU process), even after the leader exited.
function killBrowser(handle) {
    const pgid = browserGroup(handle);
    if (!pgid) return;
    try {
        process.kill(-pgid, 'SIGKILL');
    } catch {
        /* already gone */
    }
}

async function destroyClient(handle) {
    if (handle.stopHook) handle.stopHook();
    try {
        await withTimeout(handle.client.destroy(), 20000, `${handle.name}.destroy()`);
    } catch (e) {
        diag(`${handle.name}: destroy failed: ${errText(e)}`);
    }
    if (browserAlive(handle)) {
        diag(`${handle.name}: browser still running after destroy(); killing it`);
        killBrowser(handle);
    }
}

// Idempotent, and run once more right before exit: after a logout
// whatsapp-web.js's own framenavigated handler re-creates the session dir
// (LocalAuth.beforeBrowserInitialized) asynchronously, possibly after cleanup.
function removeTempDirs() {
    for (const dir of tempDirs) {
        if (!fs.existsSync(dir)) continue;
        try {
            fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
        } catch (e) {
            diag(`could not remove ${dir}: ${errText(e)}`);
        }
    }
}

function hardCleanup() {
    for (const h of handles) killBrowser(h);
    removeTempDirs();
}

// Waits (bounded) until no process of any browser group is left.
async function waitBrowsersGone(timeout = 10000) {
    const groups = handles.map(browserGroup).filter(Boolean);
    const deadline = Date.now() + timeout;
    while (groups.some(groupAlive) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
    }
    const left = groups.filter(groupAlive);
    if (left.length) diag(`browser process group(s) ${left.join(', ')} still alive after SIGKILL`);
}

// ---------------------------------------------------------------- steps

const ctx = {}; // what later steps need from earlier ones

function check(cond, what) {
    if (!cond) throw new Error(what);
}

async function scanWithLatest(handle, qrEvent) {
    // The page rotates refs: scan the newest QR; retry if it went stale
    // between the event and the request.
    let e = qrEvent;
    for (let attempt = 1; ; attempt++) {
        const qr = e.args[0];
        const res = await api('POST', '/sim/scan', { qr, phone: PHONE_A });
        if (res.status === 200 && res.json) return res.json;
        const newer = handle.rec.events.filter((x) => x.ev === 'qr' && x.seq > e.seq).pop();
        if (res.status === 404 && newer && attempt < 3) {
            diag(`scan of a rotated QR gave 404; retrying with the newer one`);
            e = newer;
            continue;
        }
        throw new Error(`POST /sim/scan with the QR the page showed (${short(qr, 80)}) -> HTTP ${res.status} ${short(res.text)}`);
    }
}

function checkQrShape(qr) {
    check(typeof qr === 'string' && qr.length > 0, `qr event gave ${typeof qr} ${short(qr)}, not a string`);
    const parts = qr.split(',');
    check(
        parts.length === 5,
        `QR is not ref,staticKeyB64,identityKeyB64,advSecretKey,platform (${parts.length} parts): ${short(qr, 200)}`,
    );
    const names = ['ref', 'staticKeyB64', 'identityKeyB64', 'advSecretKey', 'platform'];
    parts.forEach((p, i) => {
        check(p && p !== 'undefined' && p !== 'null', `QR part ${names[i]} is ${JSON.stringify(p)}: ${short(qr, 200)}`);
    });
    for (const i of [1, 2]) {
        check(/^[A-Za-z0-9+/]+={0,2}$/.test(parts[i]), `QR part ${names[i]} is not base64: ${parts[i]}`);
    }
}

async function step1() {
    const devices = await apiOk('GET', '/sim/devices');
    check(Array.isArray(devices), `GET /sim/devices is not an array: ${short(devices)}`);

    const dataA = makeTempDir('a');
    ctx.dataA = dataA;
    const A = startClient('A', 'conformance-a', dataA);
    ctx.A = A;

    const qrEvent = await A.rec.wait('qr', { forbid: ['authenticated', 'ready', 'disconnected', 'auth_failure'] });
    checkQrShape(qrEvent.args[0]);

    const scan = await scanWithLatest(A, qrEvent);
    check(scan.device_id !== undefined && scan.device_id !== null && scan.device_id !== '', `scan answer has no device_id: ${short(scan)}`);
    check(scan.phone === PHONE_A, `scan answer phone is ${short(scan.phone)}, expected ${PHONE_A}`);
    ctx.deviceA = String(scan.device_id);

    const auth = await A.rec.wait('authenticated', { from: qrEvent.seq, forbid: ['ready', 'disconnected', 'auth_failure'] });
    await A.rec.wait('ready', { from: auth.seq, forbid: ['disconnected', 'auth_failure'] });

    const wid = A.client.info && A.client.info.wid;
    check(wid && wid.user === PHONE_A, `client.info.wid is ${short(wid)}, expected user ${PHONE_A}`);
    return `device ${ctx.deviceA}`;
}

async function step2() {
    const { A } = ctx;
    const m = await withTimeout(A.client.sendMessage(`${PEER_OUT}@c.us`, 'hola'), WAIT_MS, 'sendMessage()');
    check(m && m.id, `sendMessage resolved to ${short(m)}`);
    const serialized = m.id._serialized;
    check(typeof serialized === 'string', `the sent message's id has no _serialized: ${short(m.id)}`);
    check(m.fromMe === true || m.id.fromMe === true, `the sent message is not fromMe: ${short(m.id)}`);

    const sent = await pollUntil(async () => {
        const list = await apiOk('GET', `/sim/devices/${encodeURIComponent(ctx.deviceA)}/sent`);
        const hit = Array.isArray(list) ? list.filter((s) => s.to === PEER_OUT && s.text === 'hola') : [];
        return { done: hit.length > 0, value: hit, seen: list };
    }, `a 'hola' to ${PEER_OUT} in /sim/devices/${ctx.deviceA}/sent`);

    const expectedPrefix = `true_${PEER_OUT}@c.us_`;
    const match = sent.find((s) => expectedPrefix + s.message_id === serialized);
    check(
        match,
        `m.id._serialized is ${serialized}, but the phone got message_id(s) ${sent.map((s) => s.message_id).join(', ')} (expected ${expectedPrefix}<message_id>)`,
    );
    ctx.sent = m;
    ctx.sentRawId = match.message_id;
    return `id ${serialized}`;
}

async function step3() {
    const { A } = ctx;
    const incoming = `/sim/devices/${encodeURIComponent(ctx.deviceA)}/incoming`;
    const from = A.rec.mark();

    await apiOk('POST', incoming, { from: PEER_IN, text: 'old', kind: 'history', lid: false });
    await apiOk('POST', incoming, { from: PEER_IN, text: 'hola-in', kind: 'chat', lid: false });

    const first = await A.rec.wait('message', { from, forbid: ['disconnected'], label: "a 'message' event for the chat message" });
    const msg = first.args[0];
    check(msg.body !== 'old', `the history message produced a 'message' event (${describeArgs('message', [msg])})`);
    check(msg.body === 'hola-in', `first 'message' has body ${short(msg.body)}, expected 'hola-in'`);
    check(msg.from === `${PEER_IN}@c.us`, `first 'message' is from ${short(msg.from)}, expected ${PEER_IN}@c.us`);

    await apiOk('POST', incoming, { from: PEER_LID, text: 'hola-lid', kind: 'chat', lid: true });
    const lidEvent = await A.rec.wait('message', {
        from: first.seq + 1,
        filter: (m) => m.body === 'hola-lid',
        forbid: ['disconnected'],
        label: "a 'message' event for the @lid message",
    });
    const lidMsg = lidEvent.args[0];
    check(typeof lidMsg.from === 'string' && lidMsg.from.endsWith('@lid'), `the lid message is from ${short(lidMsg.from)}, not an @lid`);

    // History loads are not new messages: no event of any kind for them.
    const fromHistory = A.rec.events
        .slice(from)
        .filter((e) => (e.ev === 'message' || e.ev === 'message_create') && e.args[0] && e.args[0].body === 'old');
    check(fromHistory.length === 0, `the history message produced '${fromHistory.map((e) => e.ev).join("', '")}'`);

    // The library's own way to get a lid sender's phone number.
    const pairs = await withTimeout(A.client.getContactLidAndPhone([lidMsg.from]), WAIT_MS, 'getContactLidAndPhone()');
    const pair = Array.isArray(pairs) ? pairs[0] : undefined;
    check(pair && pair.pn === `${PEER_LID}@c.us`, `getContactLidAndPhone(['${lidMsg.from}']) gave ${short(pairs)}, expected pn ${PEER_LID}@c.us`);
    check(pair.lid === lidMsg.from, `getContactLidAndPhone gave lid ${short(pair.lid)}, expected ${lidMsg.from}`);

    // And the one most users call: msg.getContact() (for a lid contact whose
    // phone the page knows, wwebjs's getContactModel puts the phone in id).
    const contact = await withTimeout(lidMsg.getContact(), WAIT_MS, 'msg.getContact()');
    const contactId = contact && contact.id && contact.id._serialized;
    check(
        (contact && contact.number === PEER_LID) || contactId === `${PEER_LID}@c.us`,
        `msg.getContact() gave id ${short(contactId)} number ${short(contact && contact.number)}, expected ${PEER_LID}`,
    );
    return `lid sender ${lidMsg.from} -> ${pair.pn}; contact id ${contactId}, number ${contact.number}`;
}

async function step4() {
    const { A, sent, sentRawId } = ctx;
    const from = A.rec.mark();
    await apiOk('POST', `/sim/devices/${encodeURIComponent(ctx.deviceA)}/ack`, { message_id: sentRawId, ack: 3 });
    const e = await A.rec.wait('message_ack', {
        from,
        filter: (m, ack) => m && m.id && m.id._serialized === sent.id._serialized && ack === 3,
        forbid: ['disconnected'],
        label: `message_ack 3 for ${sent.id._serialized}`,
    });
    const msg = e.args[0];
    check(msg.ack === 3, `message_ack carried ack 3 but the message's ack is ${short(msg.ack)}`);
    return `ack 3 for ${sent.id._serialized}`;
}

async function chatMarks() {
    const marks = await apiOk('GET', `/sim/devices/${encodeURIComponent(ctx.deviceA)}/chatstates`);
    check(marks && Array.isArray(marks.chat_states) && Array.isArray(marks.seen), `GET …/chatstates is not {chat_states, seen}: ${short(marks)}`);
    return marks;
}

async function step5() {
    const { A, sentRawId } = ctx;
    // client.sendMessage marks the chat seen before it sends (its sendSeen
    // option, on by default): the server heard the seen mark first.
    const before = await chatMarks();
    const seenOut = before.seen.find((s) => s.chat === `${PEER_OUT}@c.us`);
    check(seenOut, `sendMessage to ${PEER_OUT} left no seen mark: ${short(before)}`);
    const sentList = await apiOk('GET', `/sim/devices/${encodeURIComponent(ctx.deviceA)}/sent`);
    const hola = Array.isArray(sentList) ? sentList.find((m) => m.message_id === sentRawId) : undefined;
    check(hola && typeof hola.at === 'string', `the sent 'hola' has no arrival time: ${short(sentList)}`);
    check(Date.parse(seenOut.at) <= Date.parse(hola.at), `seen at ${seenOut.at}, but the message arrived at ${hola.at}`);

    // Typing, recording, stop; then the chat is read (Chat.js sendStateTyping,
    // sendStateRecording, clearState, sendSeen).
    const chatId = `${PEER_IN}@c.us`;
    const chat = await withTimeout(A.client.getChatById(chatId), WAIT_MS, 'getChatById()');
    check(chat && chat.id && chat.id._serialized === chatId, `getChatById gave ${short(chat && chat.id)}`);
    check(chat.unreadCount >= 1, `the chat with ${PEER_IN} has unreadCount ${short(chat.unreadCount)} after an incoming message`);
    await withTimeout(chat.sendStateTyping(), WAIT_MS, 'chat.sendStateTyping()');
    await withTimeout(chat.sendStateRecording(), WAIT_MS, 'chat.sendStateRecording()');
    await withTimeout(chat.clearState(), WAIT_MS, 'chat.clearState()');
    const seen = await withTimeout(chat.sendSeen(), WAIT_MS, 'chat.sendSeen()');
    check(seen === true, `chat.sendSeen() resolved to ${short(seen)}`);
    const marks = await pollUntil(async () => {
        const m = await chatMarks();
        const states = m.chat_states.filter((c) => c.chat === chatId).map((c) => c.state);
        const seenIn = m.seen.filter((c) => c.chat === chatId);
        return { done: states.length >= 3 && seenIn.length >= 1, value: { states, seenIn }, seen: m };
    }, `composing, recording, paused and a seen mark for ${chatId} in …/chatstates`);
    check(
        JSON.stringify(marks.states) === JSON.stringify(['composing', 'recording', 'paused']),
        `chat states for ${chatId} arrived as ${short(marks.states)}, expected composing, recording, paused`,
    );
    const read = await withTimeout(A.client.getChatById(chatId), WAIT_MS, 'getChatById() after sendSeen');
    check(read.unreadCount === 0, `after sendSeen the chat's unreadCount is ${short(read.unreadCount)}`);
    return `states ${marks.states.join(', ')}; seen ${marks.seenIn.length}; sendMessage marked ${PEER_OUT} seen first`;
}

async function step6() {
    const { A, dataA } = ctx;
    await withTimeout(A.client.destroy(), WAIT_MS, 'A.destroy()');
    check(!browserAlive(A), 'the browser of client A is still running after destroy()');

    const A2 = startClient('A2', 'conformance-a', dataA);
    ctx.A2 = A2;
    await A2.rec.wait('ready', {
        forbid: ['qr', 'code', 'auth_failure', 'disconnected'],
        label: 'ready on the restored session',
    });
    const wid = A2.client.info && A2.client.info.wid;
    check(wid && wid.user === PHONE_A, `restored client.info.wid is ${short(wid)}, expected user ${PHONE_A}`);
    const authenticated = A2.rec.events.some((e) => e.ev === 'authenticated');
    return `ready without qr${authenticated ? ', authenticated fired' : ''}`;
}

async function step7() {
    const dataB = makeTempDir('b');
    const B = startClient('B', 'conformance-b', dataB, {
        pairWithPhoneNumber: { phoneNumber: PHONE_B, showNotification: false },
    });
    ctx.B = B;

    let codeEvent = await B.rec.wait('code', { forbid: ['qr', 'ready', 'authenticated', 'disconnected', 'auth_failure'] });
    let paired;
    for (let attempt = 1; ; attempt++) {
        const raw = codeEvent.args[0];
        const m = typeof raw === 'string' ? PAIRING_CODE_RE.exec(raw.trim().toUpperCase()) : null;
        check(m, `code event gave ${short(raw)}, not an 8-character pairing code of the WhatsApp alphabet`);
        const code = `${m[1]}-${m[2]}`;
        const res = await api('POST', '/sim/pair', { code, phone: PHONE_B });
        if (res.status === 200 && res.json) {
            paired = res.json;
            break;
        }
        const newer = B.rec.events.filter((x) => x.ev === 'code' && x.seq > codeEvent.seq).pop();
        if (res.status === 404 && newer && attempt < 3) {
            codeEvent = newer;
            continue;
        }
        throw new Error(`POST /sim/pair {code:'${code}'} (page gave ${short(raw)}) -> HTTP ${res.status} ${short(res.text)}`);
    }
    check(paired.device_id !== undefined && paired.device_id !== null && paired.device_id !== '', `pair answer has no device_id: ${short(paired)}`);
    check(paired.phone === PHONE_B, `pair answer phone is ${short(paired.phone)}, expected ${PHONE_B}`);
    ctx.deviceB = String(paired.device_id);

    await B.rec.wait('ready', { from: codeEvent.seq, forbid: ['qr', 'disconnected', 'auth_failure'] });
    const wid = B.client.info && B.client.info.wid;
    check(wid && wid.user === PHONE_B, `client B info.wid is ${short(wid)}, expected user ${PHONE_B}`);
    return `code ${codeEvent.args[0]}, device ${ctx.deviceB}`;
}

async function step8() {
    const { A2, B } = ctx;

    // The client logs itself out.
    await withTimeout(A2.client.logout(), WAIT_MS, 'A2.logout()');
    const stateA = await pollUntil(async () => {
        const list = await apiOk('GET', '/sim/devices');
        const dev = Array.isArray(list) ? list.find((d) => String(d.id) === ctx.deviceA) : undefined;
        return { done: !dev || dev.state !== 'CONNECTED', value: dev ? dev.state : '(device gone)', seen: dev || list };
    }, `device ${ctx.deviceA} leaving CONNECTED after client.logout()`);
    check(stateA === 'UNPAIRED' || stateA === '(device gone)', `after client.logout() device ${ctx.deviceA} is ${stateA}, expected UNPAIRED`);

    // The phone logs the other device out.
    const from = B.rec.mark();
    await apiOk('POST', `/sim/devices/${encodeURIComponent(ctx.deviceB)}/logout`);
    const e = await B.rec.wait('disconnected', { from, label: "'disconnected' after the phone's logout" });
    return `A: ${stateA}; B disconnected (${short(e.args[0])})`;
}

const STEPS = [
    { n: 1, name: 'qr, scan, authenticated, ready', run: step1, deps: [] },
    { n: 2, name: 'sendMessage reaches the phone under the same id', run: step2, deps: [1] },
    { n: 3, name: 'incoming chat is a message, history is not, a lid sender resolves to its phone', run: step3, deps: [1] },
    { n: 4, name: 'ack 3 from the phone gives message_ack 3', run: step4, deps: [2] },
    { n: 5, name: 'typing, recording and paused chat states and a seen mark reach the server', run: step5, deps: [2, 3] },
    { n: 6, name: 'restart on the same LocalAuth session: ready without qr', run: step6, deps: [1] },
    { n: 7, name: 'pairing code, pair, ready', run: step7, deps: [] },
    { n: 8, name: 'logout from the client, then from the phone, disconnects', run: step8, deps: [6, 7] },
];

// ---------------------------------------------------------------- main

let finished = false;
let passed = 0;
let failed = 0;

const reported = new Set();

function report(step, ok, detail) {
    reported.add(step.n);
    if (ok) {
        passed++;
        process.stdout.write(`ok ${step.n} - ${step.name}\n`);
        if (detail) diag(`  ${detail} [${secs()}s]`);
    } else {
        failed++;
        process.stdout.write(`not ok ${step.n} - ${step.name}: ${String(detail).replace(/\s*\n\s*/g, ' ')}\n`);
    }
}

// On an interruption, the steps not reported yet count as failed.
function reportRest(reason) {
    for (const step of STEPS) if (!reported.has(step.n)) report(step, false, reason);
}

function finish(code) {
    if (finished) return;
    finished = true;
    for (const h of handles) killBrowser(h);
    removeTempDirs();
    process.stdout.write(`${passed} passed, ${failed} failed\n`);
    process.exit(code);
}

async function main() {
    process.stdout.write(`1..${STEP_COUNT}\n`);

    let abortRun;
    const runAborted = new Promise((_, reject) => {
        abortRun = reject;
    });
    runAborted.catch(() => {});
    const runTimer = setTimeout(() => abortRun(new Error(`whole run exceeded ${RUN_TIMEOUT_MS} ms`)), RUN_TIMEOUT_MS);
    // If cleanup itself hangs, still never leave Chromium behind.
    const hardTimer = setTimeout(() => {
        diag('cleanup hung; killing browsers');
        hardCleanup();
        reportRest('interrupted: cleanup hung');
        finish(1);
    }, RUN_TIMEOUT_MS + 30000);
    hardTimer.unref();

    const outcome = {};
    let setupError = null;
    try {
        if (!SIM_ADDR) throw new Error('SIM_ADDR is not set (expected 127.0.0.1:PORT of `centinela sim --tls`)');
        if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM} (set CHROMIUM)`);
        const pkg = require('whatsapp-web.js/package.json');
        if (pkg.version !== EXPECTED_WWEBJS) throw new Error(`whatsapp-web.js ${pkg.version} is installed, expected ${EXPECTED_WWEBJS} (run npm ci here)`);
        ({ Client, LocalAuth } = require('whatsapp-web.js'));
        diag(`whatsapp-web.js ${pkg.version} against https://${SIM_ADDR}/ (as web.whatsapp.com), browser ${CHROMIUM}`);
    } catch (e) {
        setupError = errText(e);
    }

    let aborted = null;
    try {
        for (const step of STEPS) {
            if (setupError) {
                outcome[step.n] = false;
                report(step, false, setupError);
                continue;
            }
            if (aborted) {
                outcome[step.n] = false;
                report(step, false, `not run: ${aborted}`);
                continue;
            }
            const badDep = step.deps.find((d) => !outcome[d]);
            if (badDep) {
                outcome[step.n] = false;
                report(step, false, `not run: step ${badDep} failed`);
                continue;
            }
            try {
                const detail = await Promise.race([step.run(), runAborted]);
                outcome[step.n] = true;
                report(step, true, detail);
            } catch (e) {
                outcome[step.n] = false;
                report(step, false, errText(e));
                if (/whole run exceeded/.test(errText(e))) aborted = errText(e);
            }
        }
    } finally {
        clearTimeout(runTimer);
        await Promise.all(handles.map((h) => destroyClient(h)));
        hardCleanup();
        await waitBrowsersGone();
    }
    if (unhandled.length) diag(`${unhandled.length} unhandled rejection(s) inside the library during the run (see above)`);
    finish(failed === 0 && passed === STEP_COUNT ? 0 : 1);
}

for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
]) {
    process.on(sig, () => {
        if (finished) return;
        diag(`${sig}: killing browsers and removing temp dirs`);
        hardCleanup();
        reportRest(`interrupted by ${sig}`);
        finish(code);
    });
}

main().catch((e) => {
    diag(`internal error: ${e && e.stack ? e.stack : errText(e)}`);
    hardCleanup();
    reportRest('internal error of conformance.js');
    finish(1);
});
