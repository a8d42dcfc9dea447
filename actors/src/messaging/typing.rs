//! Human typing: a person types before they send, so a session shows
//! "typing…" in the chat for about as long as the text would take to type,
//! then sends it. Pure: given the setting and the text, how long to type.
//! The sender (`session/outgoing.rs`) shows the state and arms the timer.

use std::time::Duration;

/// Nobody watches "typing…" for longer than this, however long the text.
pub const MAX_TYPING: Duration = Duration::from_secs(8);

/// `messaging.typing_chars_per_second`; 0 turns typing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Typing {
    pub chars_per_second: u32,
}

impl Typing {
    /// How long `text` is shown being typed before it goes out: its length
    /// in characters at `chars_per_second`, at most [`MAX_TYPING`]; `None`
    /// when typing is off.
    pub fn duration(&self, text: &str) -> Option<Duration> {
        if self.chars_per_second == 0 {
            return None;
        }
        let chars = text.chars().count() as u64;
        let ms = chars.saturating_mul(1000) / u64::from(self.chars_per_second);
        Some(Duration::from_millis(ms).min(MAX_TYPING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_takes_the_texts_length_at_the_configured_speed() {
        let t = Typing {
            chars_per_second: 15,
        };
        assert_eq!(
            t.duration("hola, que tal?!"),
            Some(Duration::from_secs(1)),
            "15 characters at 15 a second"
        );
        assert_eq!(t.duration("hola"), Some(Duration::from_millis(266)));
        assert_eq!(t.duration(""), Some(Duration::ZERO));
        // Characters, not bytes: "¿qué?" is 5 characters, 7 bytes.
        assert_eq!(t.duration("¿qué?"), Some(Duration::from_millis(333)));
    }

    #[test]
    fn typing_is_capped_at_eight_seconds() {
        let t = Typing {
            chars_per_second: 15,
        };
        assert_eq!(
            t.duration(&"a".repeat(120)),
            Some(MAX_TYPING),
            "exactly 8 s"
        );
        assert_eq!(t.duration(&"a".repeat(121)), Some(MAX_TYPING));
        assert_eq!(t.duration(&"a".repeat(65_536)), Some(MAX_TYPING));
        let fast = Typing {
            chars_per_second: u32::MAX,
        };
        assert_eq!(fast.duration("hola"), Some(Duration::ZERO));
    }

    #[test]
    fn zero_characters_per_second_turns_typing_off() {
        let t = Typing {
            chars_per_second: 0,
        };
        assert_eq!(t.duration("hola"), None);
        assert_eq!(t.duration(""), None);
    }
}
