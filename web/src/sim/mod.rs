//! The WhatsApp Web simulator's state server: it plays the phone and
//! WhatsApp's servers for the simulator page (`web/sim/`), which implements
//! the page contract of `shared/WAWEB-CONTRACT.md` inside real Chromium. One
//! device per browser profile that opened the page; the pairing itself lives
//! in the page's IndexedDB (inside the profile), as WhatsApp Web keeps it, so
//! restore-without-QR is real.
//!
//! Served alone by `centinela sim` (optionally over HTTPS, so an unmodified
//! whatsapp-web.js can load it as `https://web.whatsapp.com/`) and mounted by
//! `centinela serve --demo` (behind [`guard`]'s checks). State is in memory
//! and bounded: the simulator is a test double of WhatsApp, not part of
//! Centinela's domain.
//!
//! It also watches for what fleet mode must never do: two live pages of one
//! paired device at once ([`pages`]), counted per device as `overlaps`
//! (`GET /sim/overlaps`, and each device's view). Each device's open event
//! streams are counted too, and a test can wait for a number of them or
//! for overlaps (`GET /sim/devices/{id}/wait?streams=N&overlaps=M`): the
//! page leaving (a browser killed, or a dead-man switch firing) closes its
//! stream.

pub mod graph;
pub mod guard;
mod pages;
mod routes;
pub mod tls;

pub use guard::{ControlAccess, Guard};
pub use routes::{guarded, router, router_with};

use centinela_actors::clock::{Clock, SystemClock, Timestamp};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Devices kept at most; the least recently seen one without an open page
/// is forgotten first.
const MAX_DEVICES: usize = 2_000;
/// Sent messages remembered per device (oldest dropped first).
const MAX_SENT: usize = 1_000;
/// Open event streams per device (a page reload opens a new one).
const MAX_SUBSCRIBERS: usize = 8;
/// Numbers marked as not on WhatsApp, and `@lid` identities handed out.
const MAX_NUMBERS: usize = 10_000;
/// Chat states and seen marks remembered per device (oldest dropped first).
const MAX_MARKS: usize = 1_000;

/// `Socket.state` of a device, with WhatsApp Web's own names
/// (whatsapp-web.js `Constants.js` `WAState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeviceState {
    #[serde(rename = "UNPAIRED")]
    Unpaired,
    /// The QR stopped rotating; `Cmd.refreshQR()` brings it back.
    #[serde(rename = "UNPAIRED_IDLE")]
    UnpairedIdle,
    #[serde(rename = "CONNECTED")]
    Connected,
    #[serde(rename = "CONFLICT")]
    Conflict,
    #[serde(rename = "TOS_BLOCK")]
    TosBlock,
    #[serde(rename = "SMB_TOS_BLOCK")]
    SmbTosBlock,
    #[serde(rename = "PROXYBLOCK")]
    ProxyBlock,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unpaired => "UNPAIRED",
            Self::UnpairedIdle => "UNPAIRED_IDLE",
            Self::Connected => "CONNECTED",
            Self::Conflict => "CONFLICT",
            Self::TosBlock => "TOS_BLOCK",
            Self::SmbTosBlock => "SMB_TOS_BLOCK",
            Self::ProxyBlock => "PROXYBLOCK",
        }
    }

    fn is_unpaired(self) -> bool {
        matches!(self, Self::Unpaired | Self::UnpairedIdle)
    }
}

/// A message the device sent, as WhatsApp's servers received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    /// The key's raw id (`WAWebMsgKey.newId()`), e.g. `3EB0…`.
    pub message_id: String,
    /// The recipient's digits.
    pub to: String,
    /// The recipient's jid as the page addressed it.
    pub jid: String,
    pub text: String,
    pub ack: i8,
    /// When WhatsApp's servers received it.
    pub at: Timestamp,
}

/// What a chat state says (`WAWebChatStateBridge`: `sendChatStateComposing`,
/// `sendChatStateRecording`, `sendChatStatePaused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatState {
    Composing,
    Recording,
    Paused,
}

/// A chat state the device sent, as WhatsApp's servers received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatStateMark {
    /// The chat's jid (`<digits>@c.us` or `<lid>@lid`).
    pub chat: String,
    pub state: ChatState,
    pub at: Timestamp,
}

/// A chat the device marked read (`WAWebUpdateUnreadChatAction.sendSeen`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenMark {
    pub chat: String,
    pub at: Timestamp,
}

/// Everything a device said about its chats besides messages
/// (`GET /sim/devices/{id}/chatstates`), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMarks {
    pub chat_states: Vec<ChatStateMark>,
    pub seen: Vec<SeenMark>,
}

/// A pairing code the page asked for (`startAltLinkingFlow`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PairingCode {
    code: String,
    phone: String,
}

struct Device {
    state: DeviceState,
    phone: Option<String>,
    /// The linked account's own `@lid` user.
    lid: Option<String>,
    reference: String,
    /// Refs shown since the last scan or `refreshQR`.
    rotations: u32,
    static_key: String,
    identity_key: String,
    adv_secret: String,
    pairing_code: Option<PairingCode>,
    sent: VecDeque<SentMessage>,
    chat_states: VecDeque<ChatStateMark>,
    seen_marks: VecDeque<SeenMark>,
    subscribers: Vec<mpsc::UnboundedSender<String>>,
    /// The pages heard (heartbeats), and the overlaps they showed.
    pages: pages::Pages,
    seen: Instant,
    /// Automation marks the page saw in its own world at its last start.
    automation: Vec<String>,
}

impl Device {
    fn new() -> Self {
        Self {
            state: DeviceState::Unpaired,
            phone: None,
            lid: None,
            reference: random_ref(),
            rotations: 0,
            static_key: random_key_b64(),
            identity_key: random_key_b64(),
            adv_secret: random_key_b64(),
            pairing_code: None,
            sent: VecDeque::new(),
            chat_states: VecDeque::new(),
            seen_marks: VecDeque::new(),
            subscribers: Vec::new(),
            pages: pages::Pages::default(),
            seen: Instant::now(),
            automation: Vec::new(),
        }
    }

    /// The QR string WhatsApp Web shows: `ref,staticKey,identityKey,advSecret,platform`
    /// (whatsapp-web.js `Client.js` `inject`). None while idle or paired.
    fn qr(&self) -> Option<String> {
        (self.state == DeviceState::Unpaired).then(|| {
            format!(
                "{},{},{},{},web",
                self.reference, self.static_key, self.identity_key, self.adv_secret
            )
        })
    }

    /// Event streams the server has not seen closed.
    fn open_streams(&self) -> usize {
        self.subscribers.iter().filter(|s| !s.is_closed()).count()
    }

    /// Pushes one event to every open page of this device.
    fn push(&mut self, event: serde_json::Value) {
        let text = event.to_string();
        self.subscribers.retain(|tx| tx.send(text.clone()).is_ok());
    }

    /// A new ref for the QR (the page's `Conn.ref`).
    fn new_ref(&mut self) {
        self.reference = random_ref();
        let event = serde_json::json!({"type": "ref", "ref": self.reference});
        self.push(event);
    }

    fn pair(&mut self, phone: &str, lid: String) {
        self.state = DeviceState::Connected;
        self.phone = Some(phone.to_owned());
        self.lid = Some(lid.clone());
        self.rotations = 0;
        self.pairing_code = None;
        self.push(serde_json::json!({"type": "paired", "phone": phone, "lid": lid}));
    }

    fn unpair(&mut self) {
        self.state = DeviceState::Unpaired;
        self.phone = None;
        self.lid = None;
        self.rotations = 0;
        self.pairing_code = None;
        self.reference = random_ref();
    }

    fn set_state(&mut self, state: DeviceState) {
        self.state = state;
        self.push(serde_json::json!({"type": "state", "state": state.as_str()}));
    }

    fn record_sent(&mut self, m: SentMessage) {
        if self.sent.len() >= MAX_SENT {
            self.sent.pop_front();
        }
        self.sent.push_back(m);
    }

    fn record_chat_state(&mut self, m: ChatStateMark) {
        if self.chat_states.len() >= MAX_MARKS {
            self.chat_states.pop_front();
        }
        self.chat_states.push_back(m);
    }

    fn record_seen(&mut self, m: SeenMark) {
        if self.seen_marks.len() >= MAX_MARKS {
            self.seen_marks.pop_front();
        }
        self.seen_marks.push_back(m);
    }
}

/// Held by an open event stream; wakes [`Simulator::wait_pages`] when
/// the stream ends.
struct StreamGuard(Arc<tokio::sync::watch::Sender<u64>>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// Now, as the simulated servers stamp what they receive.
fn now() -> Timestamp {
    SystemClock.now()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill(&mut b[..]);
    b
}

/// 32 random bytes in standard base64, as `WABase64.encodeB64` prints a key.
fn random_key_b64() -> String {
    b64(&random_bytes::<32>())
}

/// A QR ref as WhatsApp Web's look: `2@` and base64.
fn random_ref() -> String {
    format!("2@{}", b64(&random_bytes::<24>()))
}

/// Standard base64 with padding (keys, refs; tests use it for HTTP Basic).
pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The alphabet of WhatsApp's pairing codes (`WAWEB-CONTRACT.md`, pairing code).
const CODE_ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";

fn random_pairing_code() -> String {
    let mut rng = rand::rng();
    let mut code: String = (0..8)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    code.insert(4, '-');
    code
}

/// A device as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub state: DeviceState,
    pub qr: Option<String>,
    pub phone: Option<String>,
    pub pairing_code: Option<String>,
    /// Automation marks (bindings, driver globals, navigator.webdriver) the
    /// page saw in its own world when it last started.
    pub automation: Vec<String>,
    /// Event streams open (one per live page; 0 once every page left).
    pub streams: usize,
    /// Times two pages of this device were alive at once ([`pages`]).
    pub overlaps: u64,
}

/// One device's pages as `GET /sim/devices/{id}/wait` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PagesView {
    /// Open event streams.
    pub streams: usize,
    /// Overlaps so far.
    pub overlaps: u64,
}

impl PagesView {
    /// Exactly `streams` open streams (if given), at least `overlaps` (if given).
    pub fn satisfies(&self, streams: Option<usize>, overlaps: Option<u64>) -> bool {
        streams.is_none_or(|n| self.streams == n) && overlaps.is_none_or(|n| self.overlaps >= n)
    }
}

/// `GET /sim/overlaps`: every overlap the simulator saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overlaps {
    /// The sum over all devices.
    pub total: u64,
    /// Device id → its overlaps, for devices with any.
    pub devices: std::collections::BTreeMap<String, u64>,
}

/// How the simulated page behaves; the switches exist so tests can model
/// what the real page does in some builds.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// How often an unpaired device's QR `ref` changes (WhatsApp Web: about 20 s).
    pub qr_rotation: Duration,
    /// Refs shown without a scan before the page goes `UNPAIRED_IDLE`.
    pub idle_after: u32,
    /// Message keys carry `_serialized` (whatsapp-web.js 1.34.7 reads it);
    /// off models the newer builds wa-js describes, where only
    /// `toString()` gives the serialized key.
    pub serialized_keys: bool,
    /// Modules the page never registers (to model a WhatsApp Web update
    /// that renamed them).
    pub without_modules: Vec<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            qr_rotation: Duration::from_secs(20),
            idle_after: 5,
            serialized_keys: true,
            without_modules: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Numbers {
    /// Numbers `queryWidExists` says are not on WhatsApp.
    unregistered: HashSet<String>,
    /// phone → its `@lid` user.
    lids: HashMap<String, String>,
}

/// The simulator; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    devices: Arc<Mutex<HashMap<String, Device>>>,
    numbers: Arc<Mutex<Numbers>>,
    options: Arc<SimOptions>,
    next_message: Arc<AtomicU64>,
    auth_probe: Arc<Mutex<AuthProbeLog>>,
    /// Bumped whenever an event stream opens or closes, or an overlap is
    /// counted (for waiters).
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

/// What `/sim/auth-probe` saw: a web server asking for HTTP credentials,
/// which a browser must never answer with its proxy's login.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuthProbeLog {
    pub challenged: u64,
    /// `Authorization` headers received (at most 32 kept).
    pub credentials: Vec<String>,
}

impl Simulator {
    /// A simulator with default behaviour and the given QR rotation.
    pub fn new(qr_rotation: Duration) -> Self {
        Self::with_options(SimOptions {
            qr_rotation,
            ..SimOptions::default()
        })
    }

    pub fn with_options(options: SimOptions) -> Self {
        Self {
            devices: Arc::default(),
            numbers: Arc::default(),
            options: Arc::new(options),
            next_message: Arc::default(),
            auth_probe: Arc::default(),
            changed: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// A heartbeat of `page` (an id of one document) showing `device`:
    /// counts an overlap when another page of it was heard meanwhile (see
    /// [`pages`]). None for an unknown device.
    pub fn heartbeat(&self, device: &str, page: &str) -> Option<u64> {
        let mut devices = self.lock();
        let d = devices.get_mut(device)?;
        let now = Instant::now();
        d.seen = now;
        let new = d.pages.beat(page, now);
        if new > 0 {
            self.changed.send_modify(|n| *n += 1);
            tracing::warn!(
                device,
                phone = d.phone.as_deref().unwrap_or("-"),
                overlaps = d.pages.overlaps(),
                "two live pages of one device at once"
            );
        }
        Some(d.pages.overlaps())
    }

    /// Every overlap seen, per device.
    pub fn overlaps(&self) -> Overlaps {
        let devices: std::collections::BTreeMap<String, u64> = self
            .lock()
            .iter()
            .map(|(id, d)| (id.clone(), d.pages.overlaps()))
            .filter(|(_, n)| *n > 0)
            .collect();
        Overlaps {
            total: devices.values().sum(),
            devices,
        }
    }

    /// The open event streams and the overlaps of `device`; None if it is
    /// unknown.
    pub fn pages(&self, device: &str) -> Option<PagesView> {
        self.lock().get(device).map(|d| PagesView {
            streams: d.open_streams(),
            overlaps: d.pages.overlaps(),
        })
    }

    /// Waits up to `limit` until `device` has exactly `streams` open event
    /// streams (if given) and at least `overlaps` overlaps (if given);
    /// returns what it has then (a caller sees whether it got there), or
    /// None for an unknown device. Woken by streams opening and closing and
    /// overlaps counted, never by polling.
    pub async fn wait_pages(
        &self,
        device: &str,
        streams: Option<usize>,
        overlaps: Option<u64>,
        limit: Duration,
    ) -> Option<PagesView> {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            changed.borrow_and_update();
            let now = self.pages(device)?;
            if now.satisfies(streams, overlaps) {
                return Some(now);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Some(now),
            }
        }
    }

    /// What an event stream holds while it is open: when it is dropped (the
    /// page left and the server noticed), waiters look again.
    fn stream_guard(&self) -> StreamGuard {
        self.changed.send_modify(|n| *n += 1);
        StreamGuard(self.changed.clone())
    }

    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// Records one request to the auth probe.
    pub fn probe_auth(&self, authorization: Option<String>) {
        let mut log = self.auth_probe.lock().unwrap_or_else(|p| p.into_inner());
        log.challenged += 1;
        if let Some(a) = authorization {
            if log.credentials.len() < 32 {
                log.credentials.push(a);
            }
        }
    }

    pub fn auth_probe_log(&self) -> AuthProbeLog {
        self.auth_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Device>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn numbers(&self) -> MutexGuard<'_, Numbers> {
        self.numbers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message id as phones make them: 20 uppercase hex digits.
    fn message_id(&self, prefix: &str) -> String {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        let salt = u32::from_be_bytes(random_bytes::<4>());
        format!("{prefix}{salt:08X}{n:010X}")
    }

    /// The `@lid` user of a phone number, made once per number.
    fn lid_of(&self, phone: &str) -> String {
        let mut numbers = self.numbers();
        if let Some(lid) = numbers.lids.get(phone) {
            return lid.clone();
        }
        if numbers.lids.len() >= MAX_NUMBERS {
            numbers.lids.clear();
        }
        let n = u64::from_be_bytes(random_bytes::<8>()) % 900_000_000_000_000;
        let lid = (100_000_000_000_000 + n).to_string();
        numbers.lids.insert(phone.to_owned(), lid.clone());
        lid
    }

    fn is_registered(&self, phone: &str) -> bool {
        !self.numbers().unregistered.contains(phone)
    }

    fn mark_unregistered(&self, phone: &str) {
        let mut numbers = self.numbers();
        if numbers.unregistered.len() >= MAX_NUMBERS {
            numbers.unregistered.clear();
        }
        numbers.unregistered.insert(phone.to_owned());
    }

    /// Makes room for one more device: forgets the least recently seen
    /// device without an open page.
    fn evict_if_full(devices: &mut HashMap<String, Device>) {
        if devices.len() < MAX_DEVICES {
            return;
        }
        let oldest = devices
            .iter()
            .filter(|(_, d)| d.subscribers.iter().all(|s| s.is_closed()))
            .min_by_key(|(_, d)| d.seen)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            devices.remove(&id);
        }
    }

    /// Rotates the QR of every unpaired device with an open page; after
    /// `idle_after` refs without a scan the page goes `UNPAIRED_IDLE` and
    /// stays there until `Cmd.refreshQR()`. Ends when the last clone of the
    /// simulator is dropped.
    pub fn spawn_rotation(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.devices);
        let (period, idle_after) = (self.options.qr_rotation, self.options.idle_after);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(devices) = weak.upgrade() else {
                    return;
                };
                let mut devices = devices.lock().unwrap_or_else(|p| p.into_inner());
                for d in devices.values_mut() {
                    d.subscribers.retain(|s| !s.is_closed());
                    if d.state != DeviceState::Unpaired || d.subscribers.is_empty() {
                        continue;
                    }
                    d.rotations += 1;
                    if d.rotations >= idle_after {
                        d.set_state(DeviceState::UnpairedIdle);
                    } else {
                        d.new_ref();
                    }
                }
            }
        })
    }

    pub fn devices(&self) -> Vec<DeviceView> {
        let mut out: Vec<DeviceView> = self
            .lock()
            .iter()
            .map(|(id, d)| DeviceView {
                id: id.clone(),
                state: d.state,
                qr: d.qr(),
                phone: d.phone.clone(),
                pairing_code: d
                    .state
                    .is_unpaired()
                    .then(|| d.pairing_code.as_ref().map(|p| p.code.clone()))
                    .flatten(),
                automation: d.automation.clone(),
                streams: d.open_streams(),
                overlaps: d.pages.overlaps(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn sent(&self, device: &str) -> Option<Vec<SentMessage>> {
        self.lock()
            .get(device)
            .map(|d| d.sent.iter().cloned().collect())
    }

    /// The chat states and seen marks `device` sent, oldest first.
    pub fn chat_marks(&self, device: &str) -> Option<ChatMarks> {
        self.lock().get(device).map(|d| ChatMarks {
            chat_states: d.chat_states.iter().cloned().collect(),
            seen: d.seen_marks.iter().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(random_key_b64().len(), 44);
    }

    #[test]
    fn pairing_codes_use_whatsapps_alphabet_as_xxxx_xxxx() {
        for _ in 0..100 {
            let code = random_pairing_code();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert!(code
                .bytes()
                .filter(|&b| b != b'-')
                .all(|b| CODE_ALPHABET.contains(&b)));
        }
    }

    #[test]
    fn chat_states_and_seen_marks_are_kept_per_device_and_bounded() {
        let sim = Simulator::new(Duration::from_secs(20));
        assert_eq!(sim.chat_marks("nope"), None);
        sim.lock().insert("d1".into(), Device::new());
        for i in 0..MAX_MARKS + 5 {
            let mut devices = sim.lock();
            let d = devices.get_mut("d1").expect("device");
            d.record_chat_state(ChatStateMark {
                chat: format!("{i}@c.us"),
                state: ChatState::Composing,
                at: now(),
            });
            d.record_seen(SeenMark {
                chat: format!("{i}@c.us"),
                at: now(),
            });
        }
        let marks = sim.chat_marks("d1").expect("known device");
        assert_eq!(marks.chat_states.len(), MAX_MARKS);
        assert_eq!(marks.seen.len(), MAX_MARKS);
        assert_eq!(marks.chat_states[0].chat, "5@c.us", "oldest dropped first");
        let json = serde_json::to_value(&marks.chat_states[0]).expect("json");
        assert_eq!(json["state"], "composing");
    }

    #[test]
    fn a_number_keeps_its_lid() {
        let sim = Simulator::new(Duration::from_secs(20));
        let lid = sim.lid_of("5491100000003");
        assert_eq!(lid.len(), 15);
        assert_eq!(sim.lid_of("5491100000003"), lid);
        assert_ne!(sim.lid_of("5491100000004"), lid);
    }
}
