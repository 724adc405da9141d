//! The batched engine on the real SmolLM2: batch invariance, prefix reuse, eviction, the
//! completion cache (including a writer killed mid-run) and scoring.

use crate::common::{heavy, maspo_bin, model_path, models_dir, SMOLLM2};
use maspo::engine::chat_template::Message;
use maspo::engine::completion_cache::CompletionCache;
use maspo::engine::sampling::{argmax, SamplingParams};
use maspo::engine::{Engine, EngineSettings, GenRequest, Prompt};
use std::process::Command;

const SYSTEM: &str = "You are a meticulous assistant on a team of agents. Read the question, reason step by step in \
                      short sentences, and finish with the final answer on its own line, prefixed by 'Answer:'.";

fn engine(settings: EngineSettings) -> Engine {
    Engine::load(&model_path(SMOLLM2), settings).unwrap()
}

/// 64 mixed requests: several system prompts, ragged questions, greedy and seeded sampling,
/// stop strings, different max lengths.
fn mixed_requests() -> Vec<GenRequest> {
    let topics = [
        "prime numbers",
        "the water cycle",
        "binary search",
        "photosynthesis",
        "the French revolution",
        "sorting",
    ];
    (0..64)
        .map(|i| {
            let system = if i % 3 == 0 {
                SYSTEM.to_string()
            } else {
                format!("You are agent {}. Be brief.", i % 5)
            };
            let q = format!(
                "Question {i}: explain {} in {} words.",
                topics[i % topics.len()],
                5 + (i * 7) % 40
            );
            let mut r = GenRequest::chat(
                vec![Message::system(system), Message::user(q)],
                8 + (i * 5) % 24,
            );
            if i % 4 == 1 {
                r.sampling = SamplingParams {
                    temperature: 0.8,
                    top_k: 40,
                    top_p: 0.95,
                    seed: 1000 + i as u64,
                };
            }
            if i % 7 == 2 {
                r.stop = vec![".".into()];
            }
            r
        })
        .collect()
}

fn tokens(results: Vec<maspo::engine::Result<maspo::engine::Completion>>) -> Vec<Vec<u32>> {
    results.into_iter().map(|r| r.unwrap().token_ids).collect()
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn every_request_gets_the_same_tokens_alone_batched_and_with_prefix_reuse() {
    let _g = heavy();
    let reqs = mixed_requests();
    let cold = engine(EngineSettings {
        prefix_cache_mb: 0,
        ..EngineSettings::default()
    });
    let batched = tokens(cold.generate(&reqs));
    let alone: Vec<Vec<u32>> = reqs
        .iter()
        .map(|r| tokens(cold.generate(std::slice::from_ref(r))).remove(0))
        .collect();
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        assert_eq!(a, b, "request {i}: alone vs in a batch of 64");
    }
    assert_eq!(cold.prefix_stats().hits, 0);
    // With prefix reuse (and a schedule of at most 8 running, in 64-token steps).
    let warm = engine(EngineSettings {
        max_running: 8,
        step_tokens: 64,
        ..EngineSettings::default()
    });
    let results = warm.generate(&reqs);
    let reused: usize = results
        .iter()
        .map(|r| r.as_ref().unwrap().reused_prompt_tokens)
        .sum();
    assert_eq!(tokens(results), batched, "prefix reuse changed tokens");
    let stats = warm.prefix_stats();
    assert!(
        stats.hits >= 40 && reused > 40 * 20,
        "prefix cache barely used: {stats:?}, {reused} tokens"
    );
    // A second pass hits the cache for every prompt and still agrees.
    assert_eq!(tokens(warm.generate(&reqs)), batched);
}

/// A pre-filled assistant turn is the prompt's continuation: the same tokens as the rendered
/// prompt with the prefill's plain-text tokens appended, generated alone or batched beside
/// others; the text returned is the continuation only, and a stop string in the continuation
/// ends it (the prefill's own text never does).
#[test]
fn a_prefilled_reply_continues_the_assistant_turn() {
    let _g = heavy();
    let e = engine(EngineSettings::default());
    let messages = vec![
        Message::system("You rewrite instructions."),
        Message::user("Write one sentence telling a student to check their arithmetic, inside <prompt></prompt> tags."),
    ];
    let prefill = "<prompt>\nAlways";
    let mut req = GenRequest::chat(messages.clone(), 40);
    req.prefill = Some(prefill.to_string());
    req.stop = vec!["</prompt>".into()];
    let mut ids = e.prompt_ids(&Prompt::Chat(messages.clone())).unwrap();
    ids.extend(e.tokenizer().encode_plain(prefill).unwrap());
    assert_eq!(e.request_ids(&req).unwrap(), ids);
    let by_tokens = GenRequest {
        prompt: Prompt::Tokens(ids.clone()),
        stop: req.stop.clone(),
        ..GenRequest::chat(vec![], 40)
    };
    let other = GenRequest::chat(vec![Message::user("Count to five.")], 24);
    let out = e.generate(&[other, req.clone(), by_tokens]);
    let (pre, tok) = (out[1].as_ref().unwrap(), out[2].as_ref().unwrap());
    assert_eq!(pre.token_ids, tok.token_ids);
    assert_eq!(pre.text, tok.text);
    assert_eq!(pre.prompt_tokens, ids.len());
    assert!(!pre.text.starts_with("<prompt>"), "{:?}", pre.text);
    assert!(!pre.text.contains("</prompt>"), "{:?}", pre.text);
    // Without the prefill the prompt stops at the generation prompt.
    let plain = GenRequest {
        prefill: None,
        ..req
    };
    let without = e.request_ids(&plain).unwrap();
    assert!(without.len() < ids.len() && ids.starts_with(&without));
}

#[test]
fn a_tiny_prefix_cache_evicts_and_stays_correct() {
    let _g = heavy();
    let reqs: Vec<GenRequest> = mixed_requests().into_iter().take(12).collect();
    let reference = tokens(
        engine(EngineSettings {
            prefix_cache_mb: 0,
            ..EngineSettings::default()
        })
        .generate(&reqs),
    );
    // 1 MiB holds about 22 positions of SmolLM2's f32 KV: nearly everything is evicted.
    let tiny = engine(EngineSettings {
        prefix_cache_mb: 1,
        ..EngineSettings::default()
    });
    assert_eq!(tokens(tiny.generate(&reqs)), reference);
    assert!(
        tiny.prefix_stats().evictions > 0,
        "{:?}",
        tiny.prefix_stats()
    );
}

#[test]
fn completion_cache_answers_repeats_and_survives_a_killed_writer() {
    let _g = heavy();
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let run = |extra: &[&str]| {
        Command::new(maspo_bin())
            .args([
                "--quiet",
                "generate",
                "--max-tokens",
                "48",
                "--completion-cache",
            ])
            .arg(&cache_dir)
            .args(["--prompt", "List five colors, one per line."])
            .args(extra)
            .env("MASPO_MODELS_DIR", models_dir())
            .output()
            .unwrap()
    };
    // Kill writers at several points of their run; whatever they left must never be served
    // corrupt (writes are temp file + rename, and entries are checksummed).
    for delay_ms in [50u64, 150, 300, 600] {
        let mut child = Command::new(maspo_bin())
            .args([
                "--quiet",
                "generate",
                "--max-tokens",
                "48",
                "--completion-cache",
            ])
            .arg(&cache_dir)
            .args(["--prompt", "List five colors, one per line."])
            .env("MASPO_MODELS_DIR", models_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let first = run(&[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run(&[]);
    let err2 = String::from_utf8_lossy(&second.stderr);
    assert!(err2.contains("from the completion cache"), "{err2}");
    assert_eq!(first.stdout, second.stdout);
    // Every entry on disk verifies.
    let cache = CompletionCache::new(&cache_dir);
    let mut entries = 0;
    for shard in std::fs::read_dir(&cache_dir).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(key) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            {
                assert!(cache.get(key).is_some(), "entry {name} does not verify");
                entries += 1;
            }
        }
    }
    assert_eq!(entries, 1);
    // A different request is a miss.
    let other = run(&["--seed", "3", "--temperature", "0.7"]);
    assert!(!String::from_utf8_lossy(&other.stderr).contains("from the completion cache"));
}

#[test]
fn scoring_agrees_with_generation_and_is_batch_invariant() {
    let _g = heavy();
    let e = engine(EngineSettings::default());
    let prompt = Prompt::Chat(vec![
        Message::system(SYSTEM),
        Message::user("What is the capital of France?"),
    ]);
    let greedy = e
        .generate(&[GenRequest {
            prompt: prompt.clone(),
            ..GenRequest::chat(vec![], 8)
        }])
        .remove(0)
        .unwrap();
    let cont = greedy.token_ids.clone();
    let alt: Vec<u32> = cont.iter().map(|t| (t + 17) % 49000).collect();
    let both = e
        .score_tokens(&prompt, &[cont.clone(), alt.clone()])
        .unwrap();
    // Greedy tokens are each step's argmax, so no single token of them is unlikely.
    assert!(
        both[0].token_logprobs.iter().all(|lp| *lp > -3.0),
        "{:?}",
        both[0].token_logprobs
    );
    assert!(both[0].total() > both[1].total() + 10.0);
    let alone = e
        .score_tokens(&prompt, std::slice::from_ref(&cont))
        .unwrap();
    assert_eq!(
        alone[0].token_logprobs, both[0].token_logprobs,
        "scoring depends on the batch"
    );
    // The first token's log-prob is the log-softmax of the prompt's last logits row.
    let ids = e.prompt_ids(&prompt).unwrap();
    let model = e.model();
    let mut cache = model.new_cache();
    let mut steps = [maspo::engine::model::SeqStep {
        tokens: &ids,
        cache: &mut cache,
        logits: maspo::engine::model::LogitRows::Last,
    }];
    let row = model.forward(&mut steps).unwrap().remove(0);
    assert_eq!(argmax(&row, &[]), cont[0]);
    let text_scores = e
        .score(&prompt, &["Paris".to_string(), "".to_string()])
        .unwrap();
    assert_eq!(text_scores[1].token_logprobs.len(), 0);
    assert!(!text_scores[0].token_logprobs.is_empty());

    // Batched scoring of several prompts (one packed prefill, ragged lengths, one prompt over
    // the context) gives each item exactly what scoring it alone gives.
    let other = Prompt::Chat(vec![Message::user(
        "Pick A or B. Which letter comes first?",
    )]);
    let huge = Prompt::Text("word ".repeat(e.context_len() + 10));
    let ab = vec!["A".to_string(), "B".to_string()];
    let items = vec![
        (
            prompt.clone(),
            vec!["Paris".to_string(), "Lyon is".to_string()],
        ),
        (huge, ab.clone()),
        (other.clone(), ab.clone()),
    ];
    let batched = e.score_batch(&items);
    assert!(
        batched[1].is_err(),
        "a prompt over the context is its own error"
    );
    for i in [0, 2] {
        let alone = e.score(&items[i].0, &items[i].1).unwrap();
        assert_eq!(
            batched[i].as_ref().unwrap(),
            &alone,
            "item {i} depends on the batch"
        );
    }
}

#[test]
fn a_kv_budget_bounds_memory_refuses_what_cannot_fit_and_keeps_tokens() {
    let _g = heavy();
    let reqs: Vec<GenRequest> = mixed_requests().into_iter().take(24).collect();
    let free = engine(EngineSettings {
        prefix_cache_mb: 0,
        kv_mb: 0,
        ..EngineSettings::default()
    });
    let reference = tokens(free.generate(&reqs));
    let unbounded = free.stats();
    assert_eq!(unbounded.peak_running, 24, "{unbounded:?}");
    // 6 MiB: a few worst cases (prompt + max new tokens, ~22.5 KiB per SmolLM2 position) at a
    // time. Admission waits in order; the tokens cannot change.
    let bounded = engine(EngineSettings {
        prefix_cache_mb: 0,
        kv_mb: 6,
        ..EngineSettings::default()
    });
    let per_token = bounded.kv_bytes_per_token();
    assert_eq!(
        per_token,
        30 * 2 * 3 * 64 * 2,
        "SmolLM2's f16 KV per position"
    );
    assert_eq!(tokens(bounded.generate(&reqs)), reference);
    let st = bounded.stats();
    assert!(st.peak_kv_bytes <= 6 << 20, "{st:?}");
    assert!(
        st.peak_running >= 2 && st.peak_running < unbounded.peak_running,
        "{st:?} vs {unbounded:?}"
    );
    assert!(unbounded.peak_kv_bytes > st.peak_kv_bytes, "{unbounded:?}");
    let plan = bounded.memory_plan().to_string();
    assert!(
        plan.contains("KV ≤ 6 MiB") && plan.contains("22.5 KiB/token"),
        "{plan}"
    );
    // A request whose worst case alone exceeds the budget is refused before it runs; the
    // others in the same call are unaffected.
    let tight = engine(EngineSettings {
        kv_mb: 3,
        ..EngineSettings::default()
    });
    let mut long = reqs[0].clone();
    long.max_new_tokens = 200;
    let out = tight.generate(&[long, reqs[1].clone()]);
    let err = out[0].as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            maspo::engine::EngineError::KvBudget { budget_mib: 3, .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--kv-mb"), "{err}");
    assert_eq!(out[1].as_ref().unwrap().token_ids, reference[1]);
    // Scoring holds the KV of a whole batch at once: under a budget it runs in groups that
    // fit, with the same log-probabilities.
    let items: Vec<(Prompt, Vec<String>)> = (0..8)
        .map(|i| {
            let p = Prompt::Chat(vec![
                Message::system("Answer with A or B."),
                Message::user(format!("Question {i}: is {i} even? A: yes, B: no.")),
            ]);
            (p, vec!["A".to_string(), "B".to_string()])
        })
        .collect();
    let scored = |e: &Engine| -> Vec<Vec<f64>> {
        e.score_batch(&items)
            .into_iter()
            .map(|r| r.unwrap().iter().map(|s| s.total()).collect())
            .collect()
    };
    let grouped = engine(EngineSettings {
        prefix_cache_mb: 0,
        kv_mb: 2,
        ..EngineSettings::default()
    });
    assert_eq!(scored(&grouped), scored(&free));
}
