//! Campaign templates: `{name}` placeholders filled from one recipient's
//! variables in a single pass over the template, so a value is copied as
//! written and never scanned for placeholders of its own (values that
//! name other variables cannot expand again). Everything is capped — the
//! number of variables, their names and values, and the rendered text —
//! so the work and the output are bounded whatever a tenant sends. It
//! knows nothing of campaigns or sending.

use std::collections::BTreeMap;

/// Variables one recipient may carry.
pub const MAX_VARS: usize = 20;
/// Longest variable name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest variable value, in characters.
pub const MAX_VALUE_CHARS: usize = 1_000;
/// Longest rendered text, in characters (a message's limit).
pub const MAX_RENDERED_CHARS: usize = 4_096;

/// Why a recipient's text cannot be rendered. Names are not repeated back:
/// an over-long one is exactly what must not reach a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("at most {MAX_VARS} variables per recipient, {0} given")]
    TooManyVars(usize),
    #[error("variable names are 1-{MAX_NAME_CHARS} letters, digits, '_', '-' or '.'")]
    BadName,
    #[error("variable values are at most {MAX_VALUE_CHARS} characters")]
    ValueTooLong,
    #[error("the rendered text is over {MAX_RENDERED_CHARS} characters")]
    TooLong,
}

/// Whether `vars` are within the caps (count, names, values).
pub fn check_vars(vars: &BTreeMap<String, String>) -> Result<(), RenderError> {
    if vars.len() > MAX_VARS {
        return Err(RenderError::TooManyVars(vars.len()));
    }
    for (name, value) in vars {
        let chars = name.chars().count();
        let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
        if chars == 0 || chars > MAX_NAME_CHARS || !name.chars().all(allowed) {
            return Err(RenderError::BadName);
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(RenderError::ValueTooLong);
        }
    }
    Ok(())
}

/// Fills `{name}` placeholders from `vars` in one pass; unknown ones stay
/// as written. Fails on variables over the caps and, as soon as it is
/// reached, on output over [`MAX_RENDERED_CHARS`].
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, RenderError> {
    check_vars(vars)?;
    let mut out = Output::default();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push(&rest[..open])?;
        let after = &rest[open + 1..];
        let value = after
            .find(['{', '}'])
            .filter(|&end| after.as_bytes()[end] == b'}')
            .and_then(|end| Some((vars.get(&after[..end])?, end)));
        match value {
            Some((value, end)) => {
                out.push(value)?;
                rest = &after[end + 1..];
            }
            None => {
                out.push("{")?;
                rest = after;
            }
        }
    }
    out.push(rest)?;
    Ok(out.text)
}

/// The variables `template` names (`{name}` with a valid name), in order
/// of first use: what a recipient needs for its text to be complete (a
/// placeholder without its variable is copied as written).
pub fn placeholders(template: &str) -> Vec<&str> {
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    let mut names: Vec<&str> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after
            .find(['{', '}'])
            .filter(|&end| after.as_bytes()[end] == b'}')
        {
            Some(end) => {
                let name = &after[..end];
                let valid = (1..=MAX_NAME_CHARS).contains(&name.chars().count())
                    && name.chars().all(allowed);
                if valid && !names.contains(&name) {
                    names.push(name);
                }
                rest = &after[end + 1..];
            }
            None => rest = after,
        }
    }
    names
}

/// The text being built and its length in characters, checked at each push.
#[derive(Default)]
struct Output {
    text: String,
    chars: usize,
}

impl Output {
    fn push(&mut self, s: &str) -> Result<(), RenderError> {
        self.chars += s.chars().count();
        if self.chars > MAX_RENDERED_CHARS {
            return Err(RenderError::TooLong);
        }
        self.text.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn placeholders_are_the_valid_names_in_order_once_each() {
        assert_eq!(
            placeholders("Hola {name}, {date} {name} {not valid} {} {x"),
            ["name", "date"]
        );
        assert_eq!(placeholders("{{a}}"), ["a"]);
        assert!(placeholders("sin variables").is_empty());
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn templates_fill_known_variables_only() {
        let v = vars(&[("name", "Ana"), ("date", "lunes")]);
        assert_eq!(
            render("Hola {name}, tu turno es el {date} ({clinic})", &v),
            Ok("Hola Ana, tu turno es el lunes ({clinic})".into())
        );
    }

    #[test]
    fn values_are_never_scanned_for_placeholders() {
        let v = vars(&[("a", "{b}"), ("b", "x")]);
        assert_eq!(render("{a} {b}", &v), Ok("{b} x".into()));
    }

    #[test]
    fn stray_braces_stay_as_written() {
        let v = vars(&[("name", "Ana")]);
        assert_eq!(render("{{name}}", &v), Ok("{Ana}".into()));
        assert_eq!(render("} {name {", &v), Ok("} {name {".into()));
        assert_eq!(render("{nombre}{}{", &v), Ok("{nombre}{}{".into()));
        assert_eq!(
            render("¿{name}?", &v),
            Ok("¿Ana?".into()),
            "multi-byte text"
        );
    }

    #[test]
    fn a_template_bomb_renders_once_and_stops_at_the_cap() {
        // Replacing one variable at a time over the growing text would make
        // 3,000 × 300³ characters of this.
        let v = vars(&[
            ("a", &"{b}".repeat(300)),
            ("b", &"{c}".repeat(300)),
            ("c", &"{d}".repeat(300)),
            ("d", "boom"),
        ]);
        let started = Instant::now();
        assert_eq!(render(&"{a}".repeat(1000), &v), Err(RenderError::TooLong));
        assert_eq!(
            render("{a}", &v),
            Ok("{b}".repeat(300)),
            "one pass: the value as written"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_rendered_text_may_reach_the_cap_but_not_pass_it() {
        let v = vars(&[("v", &"é".repeat(1000))]);
        let four = "{v}".repeat(4);
        assert_eq!(
            render(&format!("{four}{}", "x".repeat(96)), &v).map(|s| s.chars().count()),
            Ok(4096)
        );
        assert_eq!(
            render(&format!("{four}{}", "x".repeat(97)), &v),
            Err(RenderError::TooLong)
        );
    }

    #[test]
    fn variables_over_the_caps_are_refused() {
        let many: BTreeMap<String, String> = (0..=MAX_VARS)
            .map(|i| (format!("v{i}"), "x".into()))
            .collect();
        assert_eq!(render("x", &many), Err(RenderError::TooManyVars(21)));
        let long_name = "n".repeat(MAX_NAME_CHARS + 1);
        for bad in ["", "a b", "a{b", "a}b", long_name.as_str()] {
            assert_eq!(
                render("x", &vars(&[(bad, "x")])),
                Err(RenderError::BadName),
                "{bad:?}"
            );
        }
        let at_cap = "n".repeat(MAX_NAME_CHARS);
        assert!(render("x", &vars(&[(at_cap.as_str(), "x"), ("día", "lunes")])).is_ok());
        let long_value = "x".repeat(MAX_VALUE_CHARS + 1);
        assert_eq!(
            render("x", &vars(&[("v", &long_value)])),
            Err(RenderError::ValueTooLong)
        );
    }
}
