//! What a session sends to deliver a code, by its engine: a webjs session
//! types a text (`otp.text` in `otp.language`); a Cloud API session must
//! send an authentication template instead (Meta allows codes only in
//! those, and free text only inside the 24 h window: `CLOUD-API.md` §A).
//! [`for_engine`] is the one place that chooses; [`cloud_template`] builds
//! the template's parameters.

use super::code::Code;
use crate::config::{OtpConfig, OtpLanguage};
use crate::engine::cloud::{Template, TemplateLanguage};
use crate::engine::EngineKind;
use serde_json::{json, Value};

/// What a session sends to deliver a code.
#[derive(Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The text a person's phone shows (webjs).
    Text(String),
    /// The authentication template (cloud).
    Template(Template),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Text(_) => f.write_str("Text(<redacted>)"),
            Delivery::Template(t) => write!(f, "Template({}, <redacted>)", t.name),
        }
    }
}

/// How a session of `engine` delivers `code`.
pub fn for_engine(engine: EngineKind, code: &Code, cfg: &OtpConfig) -> Delivery {
    match engine {
        EngineKind::Webjs => Delivery::Text(text(cfg.language, code, &cfg.app)),
        EngineKind::Cloud => {
            let t = cloud_template(code, cfg);
            let components = t["components"].as_array().cloned().unwrap_or_default();
            Delivery::Template(Template {
                name: cfg.template.clone(),
                language: TemplateLanguage {
                    code: cfg.language.code().into(),
                },
                components,
            })
        }
    }
}

/// `"<code> es tu código de verificación de <app>"`, or its English.
pub fn text(language: OtpLanguage, code: &Code, app: &str) -> String {
    let code = code.reveal();
    match language {
        OtpLanguage::Es => format!("{code} es tu código de verificación de {app}"),
        OtpLanguage::En => format!("{code} is your {app} verification code"),
    }
}

/// The `template` object of a Cloud API message delivering `code` with the
/// authentication template `otp.template`: the code once as the body's
/// parameter and once as the URL (copy-code) button's, as Meta requires
/// (developers.facebook.com, "Authentication templates: sending").
pub fn cloud_template(code: &Code, cfg: &OtpConfig) -> Value {
    let code = code.reveal();
    json!({
        "name": cfg.template,
        "language": {"code": cfg.language.code()},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": code}]},
            {"type": "button", "sub_type": "url", "index": "0",
             "parameters": [{"type": "text", "text": code}]}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn a_webjs_session_types_the_text_in_the_configured_language() {
        let mut cfg = Config::defaults().otp;
        cfg.app = "Al Chile".into();
        let code = Code::generate(&mut StdRng::seed_from_u64(1));
        let c = code.reveal().to_owned();
        assert_eq!(
            for_engine(EngineKind::Webjs, &code, &cfg),
            Delivery::Text(format!("{c} es tu código de verificación de Al Chile"))
        );
        cfg.language = OtpLanguage::En;
        assert_eq!(
            for_engine(EngineKind::Webjs, &code, &cfg),
            Delivery::Text(format!("{c} is your Al Chile verification code"))
        );
        assert_eq!(
            format!("{:?}", for_engine(EngineKind::Webjs, &code, &cfg)),
            "Text(<redacted>)"
        );
    }

    #[test]
    fn a_cloud_session_sends_the_authentication_template_and_its_debug_hides_the_code() {
        let cfg = Config::defaults().otp;
        let code = Code::generate(&mut StdRng::seed_from_u64(3));
        let Delivery::Template(t) = for_engine(EngineKind::Cloud, &code, &cfg) else {
            panic!("a template for a cloud session");
        };
        assert_eq!(
            (t.name.as_str(), t.language.code.as_str()),
            ("verification_code", "es")
        );
        let json = serde_json::to_value(&t).expect("json");
        assert_eq!(
            json["components"],
            cloud_template(&code, &cfg)["components"]
        );
        let shown = format!("{:?}", Delivery::Template(t));
        assert!(!shown.contains(code.reveal()), "{shown}");
    }

    #[test]
    fn the_cloud_template_carries_the_code_in_the_body_and_the_url_button() {
        let cfg = Config::defaults().otp;
        let code = Code::generate(&mut StdRng::seed_from_u64(2));
        let t = cloud_template(&code, &cfg);
        assert_eq!(t["name"], "verification_code");
        assert_eq!(t["language"]["code"], "es");
        assert_eq!(t["components"][0]["type"], "body");
        assert_eq!(t["components"][0]["parameters"][0]["text"], code.reveal());
        assert_eq!(t["components"][1]["sub_type"], "url");
        assert_eq!(t["components"][1]["index"], "0");
        assert_eq!(t["components"][1]["parameters"][0]["text"], code.reveal());
    }
}
