//! The remote backend against scripted servers on loopback: 429 bursts, 5xx, malformed JSON,
//! dropped connections and slow replies are retried; 4xx and a server that is down fail with a
//! clear error naming the endpoint; the API key is sent and never shown; the completion cache
//! answers repeats without a request. No model needed.

use maspo::engine::{EngineError, GenRequest};
use maspo::mas::LanguageModel;
use maspo::openai::{RemoteModel, RemoteSpec};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
enum Reply {
    Ok(&'static str),
    Status(u16, &'static str),
    Garbage,
    Close,
    Slow(u64),
}

const OK: &str = r#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"four"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#;

struct Fake {
    url: String,
    script: Arc<Mutex<Vec<Reply>>>,
    posts: Arc<Mutex<Vec<String>>>,
}

/// A server that answers `GET /models` and pops one scripted reply per POST.
fn fake(script: Vec<Reply>) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    let script = Arc::new(Mutex::new(script.into_iter().rev().collect::<Vec<_>>()));
    let posts = Arc::new(Mutex::new(Vec::new()));
    let (s, p) = (script.clone(), posts.clone());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let (s, p) = (s.clone(), p.clone());
            std::thread::spawn(move || serve_conn(conn, &s, &p));
        }
    });
    Fake { url, script, posts }
}

fn serve_conn(conn: TcpStream, script: &Mutex<Vec<Reply>>, posts: &Mutex<Vec<String>>) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut head = String::new();
        let mut line = String::new();
        let mut len = 0usize;
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push_str(&line);
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let send = |w: &mut TcpStream, code: u16, body: &str, extra: &str| {
            let _ = write!(
                w,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
                body.len()
            );
        };
        if head.starts_with("GET") {
            send(
                &mut w,
                200,
                r#"{"object":"list","data":[{"id":"fake-model"}]}"#,
                "",
            );
            continue;
        }
        posts
            .lock()
            .unwrap()
            .push(format!("{head}\n{}", String::from_utf8_lossy(&body)));
        let reply = script.lock().unwrap().pop().unwrap_or(Reply::Ok(OK));
        match reply {
            Reply::Ok(b) => send(&mut w, 200, b, ""),
            Reply::Status(429, b) => send(&mut w, 429, b, "Retry-After: 0\r\n"),
            Reply::Status(c, b) => send(&mut w, c, b, ""),
            Reply::Garbage => send(&mut w, 200, "{\"choices\": [", ""),
            Reply::Close => return,
            Reply::Slow(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                send(&mut w, 200, OK, "");
            }
        }
    }
}

fn spec(url: &str) -> RemoteSpec {
    RemoteSpec {
        backoff_ms: 1,
        timeout_s: 0.5,
        max_retries: 5,
        ..RemoteSpec::new(url, None)
    }
}

fn ask(m: &RemoteModel) -> Result<String, EngineError> {
    let req = GenRequest::chat(vec![maspo::engine::chat_template::Message::user("2+2?")], 8);
    m.generate(&[req], &mut |_| {}).remove(0).map(|c| c.text)
}

#[test]
fn transient_failures_are_retried_until_an_answer() {
    let f = fake(vec![
        Reply::Status(429, r#"{"error":{"message":"slow down"}}"#),
        Reply::Status(503, "busy"),
        Reply::Garbage,
        Reply::Close,
        Reply::Slow(1500),
    ]);
    let m = RemoteModel::connect(spec(&f.url), None).unwrap();
    assert_eq!(m.model_id(), "fake-model");
    assert_eq!(ask(&m).unwrap(), "four");
    let st = m.stats();
    assert_eq!((st.retries, st.failed), (5, 0), "{st:?}");
    assert!(f.script.lock().unwrap().is_empty());
    // The request carried the model, greedy sampling and the seed.
    let post = f.posts.lock().unwrap().last().cloned().unwrap();
    assert!(post.contains("\"model\":\"fake-model\"") && post.contains("\"temperature\":0"));
}

#[test]
fn a_prefill_travels_as_a_final_assistant_message_to_continue() {
    let f = fake(vec![Reply::Ok(OK)]);
    let m = RemoteModel::connect(spec(&f.url), None).unwrap();
    let mut req = GenRequest::chat(vec![maspo::engine::chat_template::Message::user("2+2?")], 8);
    req.prefill = Some("<advice>\n".into());
    let out = m.generate(&[req], &mut |_| {}).remove(0).unwrap();
    assert_eq!(out.text, "four", "the reply is the continuation");
    // A recorded post is the request head, a newline, then the JSON body.
    let raw = f.posts.lock().unwrap().last().cloned().unwrap();
    let body = &raw[raw.find("\n{").expect(&raw) + 1..];
    let post: serde_json::Value = serde_json::from_str(body).unwrap();
    let msgs = post["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"], "<advice>\n");
    assert_eq!(post["continue_final_message"], true);
    assert_eq!(post["add_generation_prompt"], false);
    // A token-id prompt cannot carry it.
    let req = GenRequest {
        prompt: maspo::engine::Prompt::Tokens(vec![1, 2]),
        prefill: Some("x".into()),
        ..GenRequest::chat(vec![], 4)
    };
    let e = m.generate(&[req], &mut |_| {}).remove(0).unwrap_err();
    assert!(e.to_string().contains("prefill"), "{e}");
}

#[test]
fn client_errors_fail_at_once_and_exhausted_retries_say_so() {
    let f = fake(vec![Reply::Status(
        400,
        r#"{"error":{"message":"max_tokens too large","type":"invalid_request_error"}}"#,
    )]);
    let m = RemoteModel::connect(spec(&f.url), None).unwrap();
    let e = ask(&m).unwrap_err().to_string();
    assert!(
        e.contains("HTTP 400: max_tokens too large") && e.contains(&f.url),
        "{e}"
    );
    assert_eq!(m.stats().retries, 0);

    let f = fake(vec![Reply::Status(500, "oops"); 3]);
    let m = RemoteModel::connect(
        RemoteSpec {
            max_retries: 2,
            ..spec(&f.url)
        },
        None,
    )
    .unwrap();
    let e = ask(&m).unwrap_err().to_string();
    assert!(e.contains("gave up after 3 attempts"), "{e}");
}

#[test]
fn a_server_that_is_down_is_named_with_a_hint() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let e = RemoteModel::connect(
        RemoteSpec {
            max_retries: 1,
            ..spec(&url)
        },
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&url) && e.contains("is the server running?"),
        "{e}"
    );
}

#[test]
fn the_api_key_is_sent_but_never_shown() {
    let f = fake(vec![]);
    let var = "MASPO_TEST_REMOTE_KEY";
    let s = RemoteSpec {
        api_key_env: Some(var.into()),
        ..spec(&f.url)
    };
    std::env::remove_var(var);
    let e = RemoteModel::connect(s.clone(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains(var) && e.contains("not set"), "{e}");
    std::env::set_var(var, "sk-secret-123");
    let m = RemoteModel::connect(s, None).unwrap();
    ask(&m).unwrap();
    assert!(f.posts.lock().unwrap()[0].contains("Bearer sk-secret-123"));
    assert!(!format!("{m:?} {}", m.describe()).contains("sk-secret"));
}

#[test]
fn the_completion_cache_answers_repeats_without_a_request() {
    let f = fake(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let m = RemoteModel::connect(spec(&f.url), Some(dir.path().to_path_buf())).unwrap();
    assert_eq!(ask(&m).unwrap(), "four");
    assert_eq!(ask(&m).unwrap(), "four");
    assert_eq!(f.posts.lock().unwrap().len(), 1);
    assert_eq!(m.stats().cache_hits, 1);
}
