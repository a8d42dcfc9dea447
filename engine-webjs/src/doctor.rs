//! `centinela doctor`: does the WhatsApp Web at a URL still offer the page
//! contract this engine speaks (`shared/WAWEB-CONTRACT.md`)? WhatsApp renames
//! and moves modules every few weeks, and whatsapp-web.js users learn it from
//! a broken production; this opens the page in a throwaway profile, reads
//! `Debug.VERSION`, requires every module the engine uses and checks the
//! members it calls. Against the simulator it passes; on a machine with
//! internet it checks the real site.

use super::{evaluate, process, timed, WebjsEngine};
use centinela_actors::engine::{DriverSpec, EngineError};
use centinela_actors::ids::{SessionId, TenantId};
use chromiumoxide::Browser;
use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;

/// Every module the engine requires, with the members it reads or calls
/// (`inject.js`, `send.js`, `chat_state.js`, `seen.js`, the logout and
/// pairing-code calls).
pub const CONTRACT: &[(&str, &[&str])] = &[
    (
        "WAWebSocketModel",
        &["Socket.state", "Socket.on", "Socket.logout"],
    ),
    ("WAWebConnModel", &["Conn.on"]),
    ("WAWebCmd", &["Cmd.on", "Cmd.refreshQR"]),
    ("WABase64", &["encodeB64"]),
    ("WAWebUserPrefsInfoStore", &["waNoiseInfo.get"]),
    (
        "WAWebSignalStoreApi",
        &["waSignalStore.getRegistrationInfo"],
    ),
    ("WAWebCompanionRegClientUtils", &["DEVICE_PLATFORM"]),
    ("WAWebUserPrefsMultiDevice", &["getADVSecretKey"]),
    (
        "WAWebUserPrefsMeUser",
        &["getMaybeMePnUser", "getMaybeMeLidUser"],
    ),
    ("WAWebCollections", &["Msg.on", "Chat.get"]),
    ("WAWebApiContact", &["getPhoneNumber"]),
    ("WAWebWidFactory", &["createWid"]),
    ("WAWebQueryExistsJob", &["queryWidExists"]),
    ("WAWebFindChatAction", &["findOrCreateLatestChat"]),
    ("WAWebMsgKey", &["newId"]),
    (
        "WAWebGetEphemeralFieldsMsgActionsUtils",
        &["getEphemeralFields"],
    ),
    ("WAWebSendMsgChatAction", &["addAndSendMsgToChat"]),
    (
        "WAWebChatStateBridge",
        &[
            "sendChatStateComposing",
            "sendChatStateRecording",
            "sendChatStatePaused",
        ],
    ),
    ("WAWebUpdateUnreadChatAction", &["sendSeen"]),
    (
        "WAWebStreamModel",
        &["Stream.markAvailable", "Stream.markUnavailable"],
    ),
    (
        "WAWebAltDeviceLinkingApi",
        &[
            "setPairingType",
            "initializeAltDeviceLinking",
            "startAltLinkingFlow",
        ],
    ),
];

/// One module of the contract, as the page offers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModuleCheck {
    pub module: String,
    /// `window.require` returned it.
    pub found: bool,
    /// Members the engine uses that it lacks.
    pub missing: Vec<String>,
}

impl ModuleCheck {
    pub fn shape_ok(&self) -> bool {
        self.found && self.missing.is_empty()
    }
}

/// What `doctor` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorReport {
    pub url: String,
    /// `Debug.VERSION`, or None when the page never set it.
    pub version: Option<String>,
    pub modules: Vec<ModuleCheck>,
}

impl DoctorReport {
    /// Everything the engine needs is there.
    pub fn ok(&self) -> bool {
        self.version.is_some() && self.modules.iter().all(ModuleCheck::shape_ok)
    }

    /// The table `centinela doctor` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "WhatsApp Web {} at {}\n{:<42} {:<6} shape\n",
            self.version.as_deref().unwrap_or("(no Debug.VERSION)"),
            self.url,
            "module",
            "found"
        );
        for m in &self.modules {
            let shape = if !m.found {
                "-".to_owned()
            } else if m.missing.is_empty() {
                "ok".to_owned()
            } else {
                format!("missing {}", m.missing.join(", "))
            };
            let found = if m.found { "yes" } else { "no" };
            out.push_str(&format!("{:<42} {:<6} {shape}\n", m.module, found));
        }
        out
    }
}

/// The page-side check, run once: it waits (in the page; Meta's loader has
/// no registration event) up to `version_ms` for `Debug.VERSION`, then up to
/// `settle_ms` for every module and member path of the contract to resolve,
/// and returns `{version, modules}` as they stand then.
fn check_js(version_ms: u128, settle_ms: u128) -> String {
    let contract: Vec<(&str, &[&str])> = CONTRACT.to_vec();
    let json = serde_json::to_string(&contract).unwrap_or_else(|_| "[]".into());
    format!(
        "(async (contract) => {{ \
           const sleep = (ms) => new Promise((r) => setTimeout(r, ms)); \
           const version = () => (window.Debug && window.Debug.VERSION) ? String(window.Debug.VERSION) : null; \
           const check = () => contract.map(([name, members]) => {{ let m; try {{ m = window.require(name); }} catch (e) {{ m = undefined; }} \
             if (m === undefined || m === null) return {{ module: name, found: false, missing: members }}; \
             const missing = members.filter((path) => {{ let v = m; for (const k of path.split('.')) {{ if (v === undefined || v === null) return true; v = v[k]; }} return v === undefined; }}); \
             return {{ module: name, found: true, missing }}; }}); \
           const versionUntil = Date.now() + {version_ms}; \
           while (!version() && Date.now() < versionUntil) await sleep(200); \
           if (!version()) return {{ version: null, modules: check() }}; \
           const settleUntil = Date.now() + {settle_ms}; \
           let modules = check(); \
           while (!modules.every((m) => m.found && !m.missing.length) && Date.now() < settleUntil) {{ await sleep(250); modules = check(); }} \
           return {{ version: version(), modules }}; \
         }})({json})"
    )
}

/// What the page-side check returns.
#[derive(Deserialize)]
struct PageCheck {
    version: Option<String>,
    modules: Vec<ModuleCheck>,
}

impl WebjsEngine {
    /// Opens `url` in a throwaway profile and checks the contract. Modules
    /// keep registering after `Debug.VERSION`: they get `settle` to appear.
    pub async fn doctor(&self, url: &str, settle: Duration) -> Result<DoctorReport, EngineError> {
        let profile =
            std::env::temp_dir().join(format!("centinela-doctor-{}", uuid::Uuid::new_v4()));
        centinela_actors::store::private_dir(&profile)
            .map_err(|e| EngineError::Io(e.to_string()))?;
        let spec = DriverSpec {
            tenant: TenantId::new("doctor").map_err(|e| EngineError::Launch(e.to_string()))?,
            session: SessionId::new("doctor").map_err(|e| EngineError::Launch(e.to_string()))?,
            state_dir: profile.clone(),
            user_agent: None,
            proxy: None,
            cloud: None,
        };
        let out = self.check(&spec, url, settle).await;
        let dir = profile.clone();
        let _ = tokio::task::spawn_blocking(move || {
            process::sweep(None, &[], &dir);
            std::fs::remove_dir_all(&dir)
        })
        .await;
        out
    }

    async fn check(
        &self,
        spec: &DriverSpec,
        url: &str,
        settle: Duration,
    ) -> Result<DoctorReport, EngineError> {
        let major = self.chrome_major().await;
        let ua = super::user_agent::for_tenant(&spec.tenant, major);
        let super::Launched {
            mut browser,
            mut handler,
            mut child,
            bridge,
        } = self.launch(spec, &ua, None).await?;
        let pump = tokio::spawn(async move { while handler.next().await.is_some() {} });
        let out = self.inspect(&browser, url, settle).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), browser.close()).await;
        super::pipe::reap(&mut child).await;
        pump.abort();
        bridge.abort();
        out
    }

    async fn inspect(
        &self,
        browser: &Browser,
        url: &str,
        settle: Duration,
    ) -> Result<DoctorReport, EngineError> {
        let limit = self.cfg.page_timeout;
        let page = timed("opening a page", limit, browser.new_page("about:blank")).await?;
        match tokio::time::timeout(limit, page.goto(url)).await {
            Err(_) => return Err(EngineError::Timeout("loading WhatsApp Web")),
            Ok(Err(e)) => return Err(EngineError::Protocol(format!("loading {url}: {e}"))),
            Ok(Ok(_)) => {}
        }
        // One evaluation waits for the version and the modules in the page.
        let js = check_js(limit.as_millis(), settle.as_millis());
        let raw = evaluate(
            &page,
            "checking the page contract",
            js,
            limit + limit + settle,
        )
        .await?;
        let found: PageCheck = serde_json::from_value(raw)
            .map_err(|e| EngineError::Protocol(format!("doctor check: {e}")))?;
        Ok(DoctorReport {
            url: url.to_owned(),
            version: found.version,
            modules: found.modules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_what_is_missing() {
        let r = DoctorReport {
            url: "https://web.whatsapp.com/".into(),
            version: Some("2.3000.1".into()),
            modules: vec![
                ModuleCheck {
                    module: "WAWebSocketModel".into(),
                    found: true,
                    missing: vec![],
                },
                ModuleCheck {
                    module: "WAWebMsgKey".into(),
                    found: false,
                    missing: vec!["newId".into()],
                },
                ModuleCheck {
                    module: "WAWebCmd".into(),
                    found: true,
                    missing: vec!["Cmd.refreshQR".into()],
                },
            ],
        };
        assert!(!r.ok());
        let t = r.table();
        assert!(t.contains("WhatsApp Web 2.3000.1"));
        assert!(t
            .lines()
            .any(|l| l.starts_with("WAWebMsgKey") && l.contains(" no ")));
        assert!(t.contains("missing Cmd.refreshQR"));
    }
}
