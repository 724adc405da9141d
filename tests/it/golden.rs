//! Agreement with llama.cpp (tests/fixtures/golden, copied from shared/golden): tokenization,
//! chat-template rendering, greedy decodes and teacher-forced logits on the real models.

use crate::common::{engine, fixture, heavy, QWEN, QWEN15, SMOLLM2};
use maspo::engine::chat_template::Message;
use maspo::engine::model::{LogitRows, SeqStep};
use maspo::engine::{Engine, GenRequest, Prompt};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    tokenize: Vec<TokCase>,
    greedy: Vec<GreedyCase>,
}

#[derive(Deserialize)]
struct TokCase {
    text: String,
    ids: Vec<u32>,
    ids_parse_special: Vec<u32>,
}

#[derive(Deserialize)]
struct GreedyCase {
    name: String,
    messages: Vec<Message>,
    rendered: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    top1_margin_per_step: Vec<f32>,
    top5_logits_first_steps: Vec<Vec<(u32, f32)>>,
}

fn golden(id: &str) -> Golden {
    let path = fixture(&format!("golden/{id}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn check_tokenize(id: &str) {
    let e = engine(id);
    let g = golden(id);
    assert_eq!(g.tokenize.len(), 34);
    for case in &g.tokenize {
        let plain = e.tokenizer().encode_plain(&case.text).unwrap();
        assert_eq!(
            plain, case.ids,
            "{id}: plain tokenization of {:?}",
            case.text
        );
        let special = e.tokenizer().encode_with_specials(&case.text).unwrap();
        assert_eq!(
            special, case.ids_parse_special,
            "{id}: special-aware tokenization of {:?}",
            case.text
        );
        if !case.ids.is_empty() {
            assert_eq!(
                e.tokenizer().decode(&case.ids).unwrap(),
                case.text,
                "{id}: round trip"
            );
        }
    }
}

fn check_template(id: &str) {
    let e = engine(id);
    for case in golden(id).greedy {
        let rendered = e.render_chat(&case.messages).unwrap();
        assert_eq!(rendered, case.rendered, "{id}/{}: rendering", case.name);
        let ids = e.prompt_ids(&Prompt::Chat(case.messages.clone())).unwrap();
        assert_eq!(ids, case.prompt_ids, "{id}/{}: prompt ids", case.name);
    }
}

#[test]
fn smollm2_tokenization_matches_llama_cpp() {
    let _g = heavy();
    check_tokenize(SMOLLM2);
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn qwen_tokenization_matches_llama_cpp() {
    let _g = heavy();
    check_tokenize(QWEN);
}

#[test]
fn smollm2_chat_template_matches_llama_cpp() {
    let _g = heavy();
    check_template(SMOLLM2);
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn qwen_chat_template_matches_llama_cpp() {
    let _g = heavy();
    check_template(QWEN);
}

/// Greedy ids must agree up to the first step whose llama.cpp top-1 margin is below 0.2 (beyond
/// it, activation-quantization noise may legitimately flip the choice). One divergence in the
/// whole set is tolerated as noise (golden README); several mean a bug.
fn check_greedy(id: &str) {
    let e = engine(id);
    let g = golden(id);
    let requests: Vec<GenRequest> = g
        .greedy
        .iter()
        .map(|c| GenRequest::chat(c.messages.clone(), 64))
        .collect();
    let results = e.generate(&requests);
    let mut divergences = Vec::new();
    for (case, result) in g.greedy.iter().zip(results) {
        let ours = result.unwrap().token_ids;
        for (step, want) in case.greedy_ids.iter().enumerate() {
            if case
                .top1_margin_per_step
                .get(step)
                .is_some_and(|m| *m < 0.2)
            {
                break;
            }
            if ours.get(step) != Some(want) {
                divergences.push(format!(
                    "{}: step {step}: ours {:?}, llama.cpp {want}",
                    case.name,
                    ours.get(step)
                ));
                break;
            }
        }
    }
    eprintln!(
        "{id}: {} greedy divergence(s) before a low-margin step: {divergences:?}",
        divergences.len()
    );
    assert!(
        divergences.len() <= 1,
        "{id}: greedy divergences: {divergences:#?}"
    );
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    let _g = heavy();
    check_greedy(SMOLLM2);
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn qwen_greedy_matches_llama_cpp() {
    let _g = heavy();
    check_greedy(QWEN);
}

/// Feeds llama.cpp's prompt + greedy tokens one step at a time and compares our logits.
fn teacher_forced(e: &Engine, case: &GreedyCase) -> (usize, usize, f32) {
    let model = e.model();
    let mut cache = model.new_cache();
    let mut disagree = 0;
    let mut confident = 0;
    let mut max_delta = 0f32;
    let mut input: Vec<u32> = case.prompt_ids.clone();
    for (step, want) in case.greedy_ids.iter().enumerate() {
        let mut steps = [SeqStep {
            tokens: &input,
            cache: &mut cache,
            logits: LogitRows::Last,
        }];
        let logits = model.forward(&mut steps).unwrap().pop().unwrap();
        if let Some(top5) = case.top5_logits_first_steps.get(step) {
            for (tok, l) in top5 {
                max_delta = max_delta.max((logits[*tok as usize] - l).abs());
            }
        }
        if case.top1_margin_per_step[step] >= 0.5 {
            confident += 1;
            if maspo::engine::sampling::argmax(&logits, &[]) != *want {
                disagree += 1;
            }
        }
        input = vec![*want];
    }
    (disagree, confident, max_delta)
}

/// Both engines keep K/V in f16, but llama.cpp also rounds queries and (with flash attention)
/// its value accumulators to f16 and sums in a different order, and activation quantization
/// amplifies such differences (docs/design/engine.md §5.3): measured first-step deltas are 0.26–0.79
/// (SmolLM2, per prompt; 0.36–0.59 with an f32 KV cache, 0.33–0.85 with f16-rounded queries —
/// noise, not a trend). A real bug (wrong RoPE, norm, bias, head mapping) moves logits by
/// several units, and the top-1 check above stays at zero disagreements.
const MAX_FIRST_STEP_DELTA: f32 = 1.0;

fn check_teacher_forced(id: &str, max_logit_delta: f32) {
    let e = engine(id);
    let (mut disagree, mut confident, mut worst) = (0, 0, 0f32);
    for case in golden(id).greedy {
        let (d, c, m) = teacher_forced(e, &case);
        eprintln!(
            "  {}: disagree {d}/{c}, max first-step delta {m:.3}",
            case.name
        );
        disagree += d;
        confident += c;
        worst = worst.max(m);
    }
    eprintln!("{id}: teacher-forced top-1 disagreements {disagree}/{confident} confident steps; max |Δlogit| first steps {worst:.3}");
    assert!(confident > 100, "too few confident steps: {confident}");
    assert!(
        disagree <= 1,
        "{id}: top-1 disagrees at {disagree} of {confident} confident steps"
    );
    assert!(
        worst < max_logit_delta,
        "{id}: first-step logits differ from llama.cpp by up to {worst}"
    );
}

#[test]
fn smollm2_teacher_forced_logits_match_llama_cpp() {
    let _g = heavy();
    check_teacher_forced(SMOLLM2, MAX_FIRST_STEP_DELTA);
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn qwen_teacher_forced_logits_match_llama_cpp() {
    let _g = heavy();
    check_teacher_forced(QWEN, MAX_FIRST_STEP_DELTA);
}

/// Qwen2.5-Coder-1.5B (the default mutator and evaluator): its golden file was made with
/// `benches/peer/golden.sh qwen2.5-coder-1.5b-instruct`. All four checks in one test (one
/// model load).
#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn qwen15_matches_llama_cpp() {
    let _g = heavy();
    check_tokenize(QWEN15);
    check_template(QWEN15);
    check_greedy(QWEN15);
    check_teacher_forced(QWEN15, MAX_FIRST_STEP_DELTA);
}
