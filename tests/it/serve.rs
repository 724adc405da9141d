//! `maspo serve` on the real SmolLM2, used through the remote backend and raw HTTP: answers
//! equal the in-process engine's (greedy and seeded sampling, concurrent clients batched),
//! streaming, log-probabilities, scoring, refusals (full queue, malformed, too large, over the
//! context), a client that leaves mid-stream, and graceful shutdown.

use crate::common::{engine, heavy, SMOLLM2};
use maspo::engine::chat_template::Message;
use maspo::engine::sampling::SamplingParams;
use maspo::engine::{GenRequest, Prompt, StopReason};
use maspo::mas::LanguageModel;
use maspo::openai::serve::{run, Listener, ServeSettings, ServeStats};
use maspo::openai::{RemoteModel, RemoteSpec};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

struct Running {
    url: String,
    addr: std::net::SocketAddr,
    stop: &'static AtomicBool,
    handle: JoinHandle<ServeStats>,
}

fn start(settings: ServeSettings) -> Running {
    let e = engine(SMOLLM2);
    let l = Listener::bind("127.0.0.1:0").unwrap();
    let addr = l.addr();
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let handle = std::thread::spawn(move || run(e, l, &settings, stop));
    Running {
        url: format!("http://{addr}/v1"),
        addr,
        stop,
        handle,
    }
}

impl Running {
    fn stop(self) -> ServeStats {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// One raw HTTP exchange; returns (status, body).
fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}

fn chat(q: &str, max: usize) -> GenRequest {
    GenRequest::chat(vec![Message::user(q)], max)
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn served_answers_equal_the_engine_and_concurrent_clients_are_batched() {
    let _g = heavy();
    let e = engine(SMOLLM2);
    let srv = start(ServeSettings::new("smol"));
    let m = RemoteModel::connect(RemoteSpec::new(&srv.url, None), None).unwrap();
    assert_eq!(m.model_id(), "smol");
    let mut reqs: Vec<GenRequest> = (0..12)
        .map(|i| {
            chat(
                &format!(
                    "Name a fruit that starts with the letter {}.",
                    (b'a' + i) as char
                ),
                20,
            )
        })
        .collect();
    for (i, r) in reqs.iter_mut().enumerate().skip(8) {
        r.sampling = SamplingParams {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            seed: i as u64,
        };
    }
    reqs[3].stop = vec!["\n".into()];
    let local = e.generate(&reqs);
    let remote = m.generate(&reqs, &mut |_| {});
    for (i, (l, r)) in local.iter().zip(&remote).enumerate() {
        let (l, r) = (l.as_ref().unwrap(), r.as_ref().unwrap());
        assert_eq!(l.text, r.text, "request {i}");
        assert_eq!(l.prompt_tokens, r.prompt_tokens, "request {i}");
        assert_eq!(Some(l.token_ids.len()), r.remote_tokens, "request {i}");
        assert_eq!(
            l.stop_reason == StopReason::MaxTokens,
            r.stop_reason == StopReason::MaxTokens,
            "request {i}"
        );
    }
    // Log-prob scoring through the server agrees with the engine's own scoring.
    let p = Prompt::Chat(vec![Message::user(
        "Which answer is right, A or B? 2+2 = A) 4 B) 5. Reply with the letter only.",
    )]);
    let conts = vec!["A".to_string(), "B".to_string()];
    let here = e.score(&p, &conts).unwrap();
    let there = LanguageModel::score(&m, &p, &conts).unwrap();
    for (a, b) in here.iter().map(|s| s.total()).zip(&there) {
        assert!((a - b).abs() < 1e-3, "{here:?} vs {there:?}");
    }
    // Streaming: the deltas add up to the same text, then [DONE].
    let body = r#"{"messages":[{"role":"user","content":"Name a fruit that starts with the letter a."}],"max_tokens":20,"temperature":0,"stream":true}"#;
    let mut s = TcpStream::connect(srv.addr).unwrap();
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut text = String::new();
    let mut done = false;
    for line in BufReader::new(s).lines().map_while(Result::ok) {
        if let Some(d) = line.strip_prefix("data: ") {
            if d == "[DONE]" {
                done = true;
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    assert!(done);
    assert_eq!(text, local[0].as_ref().unwrap().text);
    // Text completion with log-probabilities, most likely first.
    let (code, body) = post(
        srv.addr,
        "/v1/completions",
        r#"{"prompt":"The capital of France is","max_tokens":3,"temperature":0,"logprobs":3}"#,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 3);
    let first = lp["token_logprobs"][0].as_f64().unwrap();
    assert!(first < 0.0 && first > -20.0);
    let st = srv.stop();
    assert!(st.admitted >= 15, "{st:?}");
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn the_server_refuses_clearly_and_withdraws_abandoned_requests() {
    let _g = heavy();
    let mut settings = ServeSettings::new("smol");
    settings.max_queue = 1;
    settings.max_body_bytes = 64 << 10;
    settings.max_tokens_limit = 512;
    let srv = start(settings);
    let cases = [
        ("/v1/chat/completions", "{not json", 400, "malformed"),
        ("/v1/chat/completions", r#"{"messages":[]}"#, 400, "empty"),
        (
            "/v1/chat/completions",
            r#"{"messages":[{"role":"tool","content":"x"}]}"#,
            400,
            "tool",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
            400,
            "one choice",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":9999}"#,
            400,
            "limit of 512",
        ),
        ("/v1/nothing", "{}", 404, "no route"),
    ];
    for (path, body, code, needle) in cases {
        let (c, b) = post(srv.addr, path, body);
        assert_eq!(c, code, "{path} {body}: {b}");
        assert!(b.contains(needle), "{b}");
    }
    let big = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(70 << 10));
    let (c, b) = post(srv.addr, "/v1/completions", &big);
    assert_eq!(c, 413, "{b}");
    let ctx = engine(SMOLLM2).context_len();
    let ids = vec!["1"; ctx + 10].join(",");
    let long = format!(r#"{{"prompt":[{ids}],"max_tokens":4}}"#);
    let (c, b) = post(srv.addr, "/v1/completions", &long);
    assert!(c == 400 && b.contains("context"), "{c} {b}");
    // A streamed request holds the only queue place: another is refused with 503.
    let body = r#"{"messages":[{"role":"user","content":"Count to one thousand."}],"max_tokens":400,"ignore_eos":true,"stream":true}"#;
    let mut s = TcpStream::connect(srv.addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while !line.contains("delta") {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    let (c, b) = post(
        srv.addr,
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":2}"#,
    );
    assert_eq!(c, 503, "{b}");
    // The streaming client leaves: its request is withdrawn, the place frees up.
    drop(r);
    s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    let mut ok = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let (c, _) = post(
            srv.addr,
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":2}"#,
        );
        if c == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the abandoned request never freed its place");
    let st = srv.stop();
    assert_eq!(st.cancelled, 1, "{st:?}");
    assert!(st.rejected_full >= 1 && st.bad_requests >= 6, "{st:?}");
}

#[test]
#[ignore = "slow tier: cargo test -- --ignored --test-threads=1"]
fn shutdown_finishes_the_requests_in_flight() {
    let _g = heavy();
    let srv = start(ServeSettings::new("smol"));
    let addr = srv.addr;
    let client = std::thread::spawn(move || {
        post(
            addr,
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"Tell a story."}],"max_tokens":60,"ignore_eos":true}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let st = srv.stop();
    let (code, body) = client.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 60);
    assert_eq!(st.admitted, 1);
    // Nothing listens any more.
    assert!(TcpStream::connect(addr).is_err());
}
