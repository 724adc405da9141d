//! Stop-string matching over incrementally decoded text, with hold-back for streaming.
//!
//! Owns deciding how much generated text is final: text that could still grow into a stop string,
//! or that ends in an incomplete UTF-8 sequence, is withheld from the stream.

/// Tracks the decoded text of one sequence.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    emitted: usize,
}

/// The outcome of feeding the latest text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCheck {
    /// Keep going; `delta` is newly final text for streaming.
    Continue {
        /// Newly final text.
        delta: String,
    },
    /// A stop string matched: `text` is the final text (cut before it), `delta` its unsent part.
    Stopped {
        /// Which stop string.
        stop: String,
        /// The final text.
        text: String,
        /// Final text not streamed yet.
        delta: String,
    },
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            emitted: 0,
        }
    }

    /// Feeds the whole decoded text so far.
    pub fn check(&mut self, text: &str) -> StopCheck {
        let first = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = first {
            let delta = text.get(self.emitted.min(at)..at).unwrap_or("").to_string();
            self.emitted = at;
            return StopCheck::Stopped {
                stop: stop.clone(),
                text: text[..at].to_string(),
                delta,
            };
        }
        // Withhold an incomplete UTF-8 tail (decoded as U+FFFD) and any suffix that is a prefix
        // of a stop string.
        let mut safe = text.trim_end_matches('\u{FFFD}').len();
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if s.is_char_boundary(k) && text.ends_with(&s[..k]) {
                    safe = safe.min(text.len() - k);
                    break;
                }
            }
        }
        while !text.is_char_boundary(safe) {
            safe -= 1;
        }
        let delta = if safe > self.emitted {
            text[self.emitted..safe].to_string()
        } else {
            String::new()
        };
        self.emitted = self.emitted.max(safe);
        StopCheck::Continue { delta }
    }

    /// Text not yet streamed when generation ends for another reason.
    pub fn flush(&mut self, text: &str) -> String {
        let d = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_partial_stop_and_cuts_at_match() {
        let mut m = StopMatcher::new(&["</answer>".to_string()]);
        assert_eq!(
            m.check("42 </ans"),
            StopCheck::Continue {
                delta: "42 ".into()
            }
        );
        match m.check("42 </answer> more") {
            StopCheck::Stopped { text, delta, .. } => {
                assert_eq!(text, "42 ");
                assert_eq!(delta, "");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn withholds_incomplete_utf8_then_flushes() {
        let mut m = StopMatcher::new(&[]);
        assert_eq!(
            m.check("ab\u{FFFD}"),
            StopCheck::Continue { delta: "ab".into() }
        );
        assert_eq!(
            m.check("ab\u{e9}"),
            StopCheck::Continue {
                delta: "\u{e9}".into()
            }
        );
        assert_eq!(m.flush("ab\u{e9}"), "");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut m = StopMatcher::new(&["B".to_string(), "A".to_string()]);
        match m.check("xxAyyB") {
            StopCheck::Stopped { stop, text, .. } => {
                assert_eq!(stop, "A");
                assert_eq!(text, "xx");
            }
            other => panic!("{other:?}"),
        }
    }
}
