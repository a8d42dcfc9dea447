//! The WhatsApp Web simulator's state server: it plays the phone and
//! WhatsApp's servers for the simulator page (`web/sim/`), which implements
//! WhatsApp Web's module contract inside real Chromium. One device per
//! browser profile that opened the page; the pairing itself lives in the
//! page's localStorage (inside the profile), so restore-without-QR is real.
//!
//! Served alone by `centinela sim` and mounted by `centinela serve --demo`.
//! State is in memory: the simulator is a test double of WhatsApp, not part
//! of Centinela's domain.

mod routes;

pub use routes::router;

use rand::Rng;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a device's page is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceState {
    Unpaired,
    Connected,
    Conflict,
    TosBlock,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    pub message_id: String,
    pub to: String,
    pub text: String,
}

struct Device {
    state: DeviceState,
    phone: Option<String>,
    reference: String,
    static_key: String,
    identity_key: String,
    adv_secret: String,
    sent: Vec<SentMessage>,
    subscribers: Vec<mpsc::UnboundedSender<String>>,
}

impl Device {
    fn new() -> Self {
        Self {
            state: DeviceState::Unpaired,
            phone: None,
            reference: random_b64(12),
            static_key: random_b64(32),
            identity_key: random_b64(32),
            adv_secret: random_b64(32),
            sent: Vec::new(),
            subscribers: Vec::new(),
        }
    }

    /// The QR string WhatsApp Web shows: `ref,staticKey,identityKey,advSecret,platform`.
    fn qr(&self) -> Option<String> {
        (self.state == DeviceState::Unpaired).then(|| {
            format!(
                "{},{},{},{},web",
                self.reference, self.static_key, self.identity_key, self.adv_secret
            )
        })
    }

    /// Pushes one event to every open page of this device.
    fn push(&mut self, event: serde_json::Value) {
        let text = event.to_string();
        self.subscribers.retain(|tx| tx.send(text.clone()).is_ok());
    }

    fn rotate(&mut self) {
        self.reference = random_b64(12);
        let event = serde_json::json!({"type": "ref", "ref": self.reference});
        self.push(event);
    }
}

fn random_b64(bytes: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..bytes * 4 / 3)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A device as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub state: DeviceState,
    pub qr: Option<String>,
    pub phone: Option<String>,
}

/// The simulator; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    devices: Arc<Mutex<HashMap<String, Device>>>,
    qr_rotation: Duration,
    next_message: Arc<std::sync::atomic::AtomicU64>,
}

impl Simulator {
    /// `qr_rotation`: how often an unpaired device's QR `ref` changes
    /// (WhatsApp Web: about 20 s).
    pub fn new(qr_rotation: Duration) -> Self {
        Self {
            devices: Arc::default(),
            qr_rotation,
            next_message: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Device>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn message_id(&self, prefix: &str) -> String {
        let n = self
            .next_message
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}{n:016X}")
    }

    /// Rotates the QR of every unpaired device with an open page, forever.
    /// Ends when the last clone of the simulator is dropped.
    pub fn spawn_rotation(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.devices);
        let period = self.qr_rotation;
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
                    if d.state == DeviceState::Unpaired && !d.subscribers.is_empty() {
                        d.rotate();
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
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn sent(&self, device: &str) -> Option<Vec<SentMessage>> {
        self.lock().get(device).map(|d| d.sent.clone())
    }
}
