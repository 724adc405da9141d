//! Seeded generated tasks for small models: multi-digit arithmetic, coin flip and last-letter
//! concatenation (the classic chain-of-thought probes).
//!
//! Names: `gen:<generator>[:count[:seed]]` (or `generated/<generator>…`), default count
//! [`DEFAULT_COUNT`] and seed 0. Example `i` depends only on (generator, seed, i), so a
//! shorter task is a prefix of a longer one with the same seed.

use super::{AnswerRule, Example, Gold, Task, TaskError, TaskKind};
use crate::rng::{derive_seed, SplitMix64};

/// The generators, by name.
pub const GENERATORS: [&str; 3] = ["arithmetic", "coin_flip", "last_letters"];

/// Examples generated when the name gives no count.
pub const DEFAULT_COUNT: usize = 200;

const FIRST_NAMES: &[&str] = &[
    "Ava", "Liam", "Maya", "Noah", "Zoe", "Omar", "Lena", "Ivan", "Rosa", "Felix", "Nadia", "Hugo",
    "Clara", "Mateo", "Iris", "Jonas", "Priya", "Diego", "Elena", "Kofi", "Sara", "Tomas", "Yuki",
    "Aaron", "Bianca", "Caleb", "Dalia", "Emil", "Fiona", "Gavin",
];

const LAST_NAMES: &[&str] = &[
    "Garcia", "Smith", "Novak", "Tanaka", "Okafor", "Larsen", "Rossi", "Kim", "Silva", "Weber",
    "Murphy", "Patel", "Costa", "Dubois", "Khan", "Moreau", "Lopez", "Fischer", "Ivanova",
    "Brooks",
];

/// A task generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generator {
    /// `a op b` with 3–4 digit operands and `+`, `-` or `*`; gold the integer.
    Arithmetic,
    /// A coin starts heads up, 2–5 people flip it or not; gold `yes`/`no`.
    CoinFlip,
    /// Concatenate the last letters of 2–4 names; gold the lowercase letters.
    LastLetters,
}

impl Generator {
    /// The generator with this name (see [`GENERATORS`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "arithmetic" => Some(Self::Arithmetic),
            "coin_flip" => Some(Self::CoinFlip),
            "last_letters" => Some(Self::LastLetters),
            _ => None,
        }
    }

    /// The generator's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Arithmetic => "arithmetic",
            Self::CoinFlip => "coin_flip",
            Self::LastLetters => "last_letters",
        }
    }
}

/// Parses a generated-task name and generates it.
pub(crate) fn load(name: &str) -> Result<Task, TaskError> {
    let rest = name
        .strip_prefix("gen:")
        .or_else(|| name.strip_prefix("generated/"))
        .unwrap_or(name);
    let mut parts = rest.split(':');
    let generator = parts.next().unwrap_or_default();
    let bad = |reason: String| TaskError::BadTaskSpec {
        name: name.to_string(),
        reason,
    };
    let usage = format!("expected gen:{generator}[:<count>[:<seed>]]");
    let Some(gen) = Generator::from_name(generator) else {
        return Err(bad(format!(
            "unknown generator `{generator}` (known: {})",
            GENERATORS.join(", ")
        )));
    };
    let count = match parts.next() {
        Some(c) => c
            .parse::<usize>()
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| bad(format!("count `{c}` is not a positive integer ({usage})")))?,
        None => DEFAULT_COUNT,
    };
    let seed = match parts.next() {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| bad(format!("seed `{s}` is not an unsigned integer ({usage})")))?,
        None => 0,
    };
    if let Some(extra) = parts.next() {
        return Err(bad(format!("unexpected `:{extra}` ({usage})")));
    }
    Ok(generate(gen, count, seed))
}

/// Builds one (question, gold) pair from a per-example generator.
type MakeExample = fn(&mut SplitMix64) -> (String, String);

/// Generates `count` examples from `seed`. The task is named `gen:<generator>:<count>:<seed>`,
/// kind math; arithmetic uses the math rule, the word tasks exact match.
pub fn generate(generator: Generator, count: usize, seed: u64) -> Task {
    let (rule, make): (AnswerRule, MakeExample) = match generator {
        Generator::Arithmetic => (AnswerRule::Math, arithmetic),
        Generator::CoinFlip => (AnswerRule::Exact, coin_flip),
        Generator::LastLetters => (AnswerRule::Exact, last_letters),
    };
    let name = generator.name();
    let tag = name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64));
    let examples = (0..count)
        .map(|i| {
            let mut rng = SplitMix64::new(derive_seed(&[seed, tag, i as u64]));
            let (question, gold) = make(&mut rng);
            Example {
                id: i.to_string(),
                question,
                gold: Gold::Answer(gold),
            }
        })
        .collect();
    Task {
        name: format!("gen:{name}:{count}:{seed}"),
        kind: TaskKind::Math,
        rule,
        letters: String::new(),
        examples,
        protected: false,
    }
}

/// A uniform integer in `lo..=hi`.
fn range(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

fn pick<'a>(rng: &mut SplitMix64, items: &[&'a str]) -> &'a str {
    items[range(rng, 0, items.len() as u64 - 1) as usize]
}

/// `a op b` with 3–4 digit operands; the gold is the exact integer (may be negative).
fn arithmetic(rng: &mut SplitMix64) -> (String, String) {
    let a = range(rng, 100, 9999) as i64;
    let b = range(rng, 100, 9999) as i64;
    let (sym, value) = match range(rng, 0, 2) {
        0 => ("+", a + b),
        1 => ("-", a - b),
        _ => ("*", a * b),
    };
    (format!("What is {a} {sym} {b}?"), value.to_string())
}

/// A coin starts heads up; 2–5 people each flip it or not. Gold `yes` iff the flips are even.
fn coin_flip(rng: &mut SplitMix64) -> (String, String) {
    let people = range(rng, 2, 5);
    let mut text = String::from("A coin is heads up.");
    let mut flips = 0;
    let mut used: Vec<&str> = Vec::new();
    for _ in 0..people {
        let mut name = pick(rng, FIRST_NAMES);
        while used.contains(&name) {
            name = pick(rng, FIRST_NAMES);
        }
        used.push(name);
        if rng.next_u64() & 1 == 1 {
            flips += 1;
            text.push_str(&format!(" {name} flips the coin."));
        } else {
            text.push_str(&format!(" {name} does not flip the coin."));
        }
    }
    text.push_str(" Is the coin still heads up? Answer yes or no.");
    (text, if flips % 2 == 0 { "yes" } else { "no" }.to_string())
}

/// Two to four full names; the gold concatenates the last letter of each word.
fn last_letters(rng: &mut SplitMix64) -> (String, String) {
    let n = range(rng, 2, 4);
    let words: Vec<&str> = (0..n)
        .map(|k| {
            if k % 2 == 0 {
                pick(rng, FIRST_NAMES)
            } else {
                pick(rng, LAST_NAMES)
            }
        })
        .collect();
    let gold: String = words
        .iter()
        .filter_map(|w| w.chars().last())
        .collect::<String>()
        .to_lowercase();
    let question = format!(
        "Take the last letter of each word in \"{}\" and concatenate them.",
        words.join(" ")
    );
    (question, gold)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: &Example) -> &str {
        match &e.gold {
            Gold::Answer(a) => a,
            Gold::Code(_) => "",
        }
    }

    #[test]
    fn deterministic_and_prefix_stable() {
        for name in GENERATORS {
            let g = Generator::from_name(name).unwrap();
            assert_eq!(g.name(), name);
            let a = generate(g, 30, 7);
            assert_eq!(a, generate(g, 30, 7));
            assert_eq!(a.examples[..], generate(g, 60, 7).examples[..30]);
            assert_ne!(a.examples, generate(g, 30, 8).examples, "{name}");
        }
    }

    #[test]
    fn arithmetic_gold_is_right() {
        for e in generate(Generator::Arithmetic, 50, 1).examples {
            let q = e
                .question
                .trim_start_matches("What is ")
                .trim_end_matches('?');
            let parts: Vec<&str> = q.split(' ').collect();
            let (a, b): (i64, i64) = (parts[0].parse().unwrap(), parts[2].parse().unwrap());
            let want = match parts[1] {
                "+" => a + b,
                "-" => a - b,
                _ => a * b,
            };
            assert_eq!(answer(&e), want.to_string());
        }
    }

    #[test]
    fn coin_flip_gold_is_parity() {
        for e in generate(Generator::CoinFlip, 50, 2).examples {
            let flips = e.question.matches(" flips the coin.").count();
            assert_eq!(answer(&e), if flips % 2 == 0 { "yes" } else { "no" });
        }
    }

    #[test]
    fn last_letters_gold() {
        let t = generate(Generator::LastLetters, 20, 3);
        for e in &t.examples {
            let quoted = e.question.split('"').nth(1).unwrap();
            let want: String = quoted
                .split(' ')
                .map(|w| w.chars().last().unwrap())
                .collect();
            assert_eq!(answer(e), want.to_lowercase());
        }
        assert_eq!(t.rule, AnswerRule::Exact);
    }

    #[test]
    fn names_parse() {
        let t = load("gen:coin_flip:12:5").unwrap();
        assert_eq!(
            (t.name.as_str(), t.examples.len()),
            ("gen:coin_flip:12:5", 12)
        );
        assert_eq!(
            load("generated/arithmetic").unwrap().examples.len(),
            DEFAULT_COUNT
        );
        for bad in [
            "gen:dice",
            "gen:arithmetic:x",
            "gen:arithmetic:0",
            "gen:arithmetic:5:-1",
            "gen:arithmetic:5:1:2",
        ] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
