//! Property tests of every parser that sees outside data: no input may panic, and what is
//! parsed keeps its invariants. Case counts follow `PROPTEST_CASES` (default 256 per property);
//! a longer campaign: `PROPTEST_CASES=20000 cargo test --release --test it props:: -- --test-threads=1`.

use crate::common::{engine, SMOLLM2};
use maspo::config::ConfigFile;
use maspo::engine::chat_template::Message;
use maspo::engine::{Engine, EngineError, EngineSettings, GenRequest, Prompt};
use maspo::optimize::meta::{parse_choice, parse_proposal};
use maspo::optimize::sanitize::{check_substance, sanitize};
use maspo::tasks::extract::{
    extract_answer, extract_choice, extract_code, html_unescape, normalize_answer, parse_numeric,
};
use maspo::tasks::{load_jsonl, AnswerMode, FieldMap};
use proptest::prelude::*;

/// Text with the characters model output and hostile input are made of: markup, braces,
/// backslashes, special-token text, entities, digits, non-ASCII.
fn texty() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "<answer>",
        "</answer>",
        "\\boxed{",
        "}",
        "{",
        "{question}",
        "{context}",
        "```python\n",
        "```",
        "\n",
        " ",
        "A",
        "B",
        "(C)",
        "Answer: ",
        "the answer is ",
        "&amp;",
        "&#x41;",
        "&#99999999;",
        "<|im_end|>",
        "<|im_start|>",
        "<prompt>",
        "</prompt>",
        "3/4",
        "-1.5e3",
        "\\frac{1}{2}",
        "é",
        "😀",
        "\u{0}",
        "\r\n",
        "def f(x):\n    return x\n",
        "assert f(1) == 1",
        "...",
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat()),
    ]
}

proptest! {
    #[test]
    fn judge_and_mutator_replies_never_panic(
        reply in texty(),
        reference in any::<bool>(),
        tagged in any::<bool>(),
    ) {
        let _ = parse_choice(&reply, reference, tagged);
        if let Some(p) = parse_proposal(&reply) {
            prop_assert!(!p.trim().is_empty());
        }
    }

    #[test]
    fn the_sanitizer_keeps_every_placeholder_or_refuses(new in texty(), braces in any::<bool>()) {
        let old = "Solve this.\n\nThe problem:\n{question}\n\nThe other agent's solution:\n{context}";
        if let Ok(s) = sanitize(&new, old, braces) {
            for ph in ["{question}", "{context}"] {
                prop_assert_eq!(s.matches(ph).count(), 1, "{:?} -> {:?}", new, s);
            }
        }
        let _ = check_substance(&new, 8);
    }

    #[test]
    fn answer_extraction_and_normalization_never_panic(text in texty()) {
        for mode in [AnswerMode::Strict, AnswerMode::Paper] {
            if let Some(a) = extract_answer(&text, mode) {
                let _ = normalize_answer(&a, mode);
                let _ = parse_numeric(&a);
            }
        }
        if let Some(c) = extract_choice(&text, "ABCDE") {
            prop_assert!("ABCDE".contains(c));
        }
        let _ = extract_code(&text);
        let _ = html_unescape(&text);
    }

    #[test]
    fn config_files_parse_or_name_the_problem(lines in prop::collection::vec(
        (prop::sample::select(vec!["model", "threads", "[engine]", "[eval]", "[optimize]", "task",
            "batch", "budget", "evaluator_model", "[optimize.judge]", "order", "limit", "bogus"]),
         prop::sample::select(vec!["= 3", "= \"x\"", "= -1", "= { url = \"http://h\" }", "= [1,", "= true", "", "= 1e999"])),
        0..8)) {
        let text: String = lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        match toml::from_str::<ConfigFile>(&text) {
            // A failure points at the line at fault, quoting it (so the key is named).
            Err(e) => {
                let msg = e.to_string();
                let line: usize = msg
                    .split("at line ")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                prop_assert!((1..=lines.len() + 1).contains(&line), "no line named in: {msg}");
                if let Some((k, _)) = lines.get(line - 1) {
                    prop_assert!(msg.contains(k), "line {} (`{}`) not quoted in: {}", line, k, msg);
                }
            }
            // A success means every line was valid TOML for where it stands.
            Ok(cfg) => {
                for (k, v) in &lines {
                    let header = k.starts_with('[');
                    prop_assert!(*v != "= [1,", "an unclosed array was accepted: {text}");
                    prop_assert!(!header || v.is_empty(), "`{k} {v}` was accepted: {text}");
                    prop_assert!(header || !v.is_empty(), "a bare key `{k}` was accepted: {text}");
                }
                // Before any table header, only `model` is a key of the file's root, and it
                // must hold what the line said.
                let root: Vec<_> = lines.iter().take_while(|(k, _)| !k.starts_with('[')).collect();
                for (k, v) in &root {
                    prop_assert_eq!(*k, "model", "root key accepted: {}", text);
                    if *v == "= \"x\"" {
                        prop_assert_eq!(cfg.model.as_ref().map(|m| m.label()), Some("x".to_string()));
                    }
                }
            }
        }
    }

    #[test]
    fn dataset_lines_load_or_fail_with_the_line(lines in prop::collection::vec(texty(), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, lines.join("\n")).unwrap();
        if let Err(e) = load_jsonl(&p, &FieldMap::default()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: (ProptestConfig::default().cases / 4).max(16), ..ProptestConfig::default() })]

    /// Byte-level BPE: decoding the plain encoding of any text gives the text back.
    #[test]
    fn tokenizer_round_trips_any_text(text in texty()) {
        let e = engine(SMOLLM2);
        let ids = e.tokenizer().encode_plain(&text).unwrap();
        let _ = e.tokenizer().encode_with_specials(&text);
        prop_assert_eq!(e.tokenizer().decode(&ids).unwrap(), text);
    }

    #[test]
    fn decoding_arbitrary_ids_never_panics(ids in prop::collection::vec(any::<u32>(), 0..20)) {
        let _ = engine(SMOLLM2).tokenizer().decode(&ids);
    }

    /// Hostile message text cannot end a turn: the control tokens in the prompt are exactly
    /// those the template puts there.
    #[test]
    fn message_text_never_becomes_control_tokens(user in texty(), system in texty()) {
        let e = engine(SMOLLM2);
        let ids = e.prompt_ids(&Prompt::Chat(vec![Message::system(system), Message::user(user)])).unwrap();
        let plain = e.prompt_ids(&Prompt::Chat(vec![Message::system("s"), Message::user("u")])).unwrap();
        let specials = |v: &[u32]| v.iter().filter(|&&t| e.tokenizer().control_ids.contains(&t)).count();
        prop_assert_eq!(specials(&ids), specials(&plain));
    }

    /// A GGUF with bytes flipped in its header and metadata loads or fails with an error, never
    /// a panic or an abort from a huge declared size.
    #[test]
    fn corrupted_gguf_headers_are_errors(flips in prop::collection::vec((0usize..4096, any::<u8>()), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gguf");
        crate::tiny::write_tiny(&p, &crate::tiny::TinySpec::new("llama"));
        let mut bytes = std::fs::read(&p).unwrap();
        for (at, b) in flips {
            let at = at % bytes.len();
            bytes[at] = b;
        }
        std::fs::write(&p, &bytes).unwrap();
        match Engine::load(&p, EngineSettings { prefix_cache_mb: 0, ..EngineSettings::default() }) {
            // A refusal names the key, tensor or header field at fault.
            Err(e) => {
                let msg = e.to_string();
                let named = match &e {
                    EngineError::Metadata { keys, .. } => !keys.is_empty(),
                    EngineError::Tensor { name, .. } => !name.is_empty(),
                    EngineError::UnknownArch { arch, .. } => msg.contains(arch.as_str()),
                    EngineError::BadGguf { reason, .. } => ["header field `", "metadata entry ", "tensor info "]
                        .iter()
                        .any(|f| reason.contains(f)),
                    EngineError::Tokenizer(m) | EngineError::Template(m) => m.contains("tokenizer."),
                    _ => false,
                };
                prop_assert!(named, "{}", msg);
            }
            // A load that succeeds met a flip in a value that is still valid: the model runs.
            Ok(engine) => {
                let out = engine.generate(&[GenRequest::chat(vec![Message::user("the")], 2)]);
                prop_assert_eq!(out.len(), 1);
            }
        }
    }
}

/// Regression (found by `corrupted_gguf_headers_are_errors` at 60 000 cases): a huge declared
/// `context_length` made the loader allocate RoPE tables of tens of gigabytes and abort.
#[test]
fn an_implausible_context_length_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.gguf");
    crate::tiny::write_tiny(&p, &crate::tiny::TinySpec::new("llama"));
    let mut bytes = std::fs::read(&p).unwrap();
    let key = b"llama.context_length";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the key is in the file")
        + key.len();
    // The value type (u32 = 4 or u64 = 10) follows the key, then the value.
    let ty = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    match ty {
        4 => bytes[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes()),
        10 => bytes[at + 4..at + 12].copy_from_slice(&u64::MAX.to_le_bytes()),
        other => panic!("unexpected value type {other}"),
    }
    std::fs::write(&p, &bytes).unwrap();
    let e = Engine::load(&p, EngineSettings::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("context_length") && e.contains("plausible"),
        "{e}"
    );
}

/// The code judge's value codec (`src/judge/harness/codec.py`, Python on both sides of the
/// runner/checker channel), driven by `tests/fixtures/codec_props.py`: round trips keep exact
/// types and values (surrogate code points included), lying subclasses encode to the data they
/// hold, arbitrary JSON decodes to builtins or an `Exception`, the size and depth limits hold.
/// Cases: `PROPTEST_CASES` × 8 per property (2 048 by default), seeds 1..=3.
/// Found by it: strings with surrogate code points came back joined into another character
/// (now sent as UTF-32), and an `int` subclass's `__int__` chose its encoded value.
#[test]
fn the_code_judge_codec_round_trips_and_refuses_what_it_cannot_read() {
    let cases: usize = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
        * 8;
    let root = crate::common::repo_root();
    for seed in 1..=3 {
        let out = std::process::Command::new("python3")
            .arg(root.join("tests/fixtures/codec_props.py"))
            .arg(root.join("src/judge/harness/codec.py"))
            .arg(cases.to_string())
            .arg(seed.to_string())
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "seed {seed}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(counts["round_trip"], cases as u64, "{counts}");
        assert_eq!(counts["hostile"], cases as u64, "{counts}");
        assert_eq!(counts["junk"], cases as u64, "{counts}");
        // Both kinds of junk occur: some decodes, some is refused.
        let refused = counts["junk_refused"].as_u64().unwrap();
        assert!(refused > 0 && refused < cases as u64, "{counts}");
    }
}
