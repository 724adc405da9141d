//! `maspo serve`: maspo's engine behind the OpenAI-compatible HTTP API — chat and text
//! completions (streamed as server-sent events or not), `/v1/models`, log-probabilities, seeds.
//!
//! Threads: one acceptor reads HTTP requests and answers cheap ones (`/v1/models`, `/health`,
//! 503 when the queue is full) itself; each generation request gets a handler thread that parses
//! it, submits it to the **scheduler** and writes the answer; the scheduler is the engine's
//! continuous-batching loop ([`Engine::serve_loop`]) with an open intake, so requests arriving
//! at any time join the running batch at the next step — no lock around the engine, no waiting
//! for a batch to drain. A client that goes away mid-stream has its request withdrawn.
//! Shutdown (the `stop` flag): stop accepting, finish what is in flight, return.

use super::http;
use super::wire::*;
use crate::engine::chat_template::{Message, Role};
use crate::engine::sampling::SamplingParams;
use crate::engine::{Completion, Engine, EngineError, GenRequest, Intake, Prompt};
use std::collections::HashMap;
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

/// Server options.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServeSettings {
    /// The model id `/v1/models` reports (requests may name any model: there is one).
    pub model_id: String,
    /// Most generation requests admitted at once (queued + running); more get 503.
    pub max_queue: usize,
    /// Largest request body in bytes; more gets 413.
    pub max_body_bytes: usize,
    /// Largest `max_tokens` a request may ask for; more gets 400.
    pub max_tokens_limit: usize,
    /// `max_tokens` of a request that gives none.
    pub default_max_tokens: usize,
}

impl ServeSettings {
    /// Defaults for a model id.
    pub fn new(model_id: impl Into<String>) -> Self {
        Self {
            model_id: model_id.into(),
            max_queue: 256,
            max_body_bytes: 8 << 20,
            max_tokens_limit: 4096,
            default_max_tokens: 1024,
        }
    }
}

/// Counters of one server run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServeStats {
    /// Generation requests admitted.
    pub admitted: u64,
    /// Requests refused because the queue was full (503).
    pub rejected_full: u64,
    /// Requests refused as malformed (4xx).
    pub bad_requests: u64,
    /// Requests withdrawn because their client went away.
    pub cancelled: u64,
}

/// Errors of the server itself (per-request errors are HTTP answers).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {reason} (is another server on that port? try --port 0 for any free port)")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// A bound, not yet running server.
pub struct Listener {
    tcp: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` (`host:port`; port 0 picks a free one).
    pub fn bind(addr: &str) -> Result<Self, ServeError> {
        let err = |e: std::io::Error| ServeError::Bind {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
        let tcp = TcpListener::bind(addr).map_err(err)?;
        let addr = tcp.local_addr().map_err(err)?;
        Ok(Self { tcp, addr })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

enum Event {
    Delta(String),
    Done(Result<Completion, EngineError>),
}

struct Job {
    req: GenRequest,
    tx: mpsc::Sender<Event>,
}

struct Shared<'a> {
    engine: &'a Engine,
    settings: &'a ServeSettings,
    stop: &'a AtomicBool,
    jobs: Mutex<mpsc::Sender<Job>>,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    next_id: AtomicU64,
    admitted: AtomicU64,
    rejected_full: AtomicU64,
    bad_requests: AtomicU64,
    cancelled: AtomicU64,
}

/// Serves until `stop` is set, then finishes every admitted request and returns.
pub fn run(
    engine: &Engine,
    listener: Listener,
    settings: &ServeSettings,
    stop: &AtomicBool,
) -> ServeStats {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let shared = Shared {
        engine,
        settings,
        stop,
        jobs: Mutex::new(job_tx),
        connections: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
        admitted: AtomicU64::new(0),
        rejected_full: AtomicU64::new(0),
        bad_requests: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
    };
    let closing = AtomicBool::new(false);
    if let Err(e) = listener.tcp.set_nonblocking(true) {
        tracing::warn!("cannot poll the listener: {e}");
    }
    std::thread::scope(|scope| {
        let sh = &shared;
        let closing = &closing;
        scope.spawn(move || schedule(sh.engine, job_rx, closing, sh));
        // The acceptor: one thread per connection, at most max_queue + 64 connections.
        while !stop.load(Ordering::Relaxed) {
            let mut stream = match listener.tcp.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_nodelay(true);
            if sh.connections.load(Ordering::SeqCst) >= settings.max_queue + 64 {
                sh.rejected_full.fetch_add(1, Ordering::Relaxed);
                let body = error_body(503, "overloaded", "too many connections; retry later");
                let _ = http::write_response(&mut stream, 503, JSON, &body, false);
                continue;
            }
            sh.connections.fetch_add(1, Ordering::SeqCst);
            scope.spawn(move || {
                connection(sh, stream);
                sh.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
        // Stop accepting; connections finish their request and close, then the scheduler
        // drains and returns.
        drop(listener);
        while shared.connections.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        closing.store(true, Ordering::SeqCst);
    });
    ServeStats {
        admitted: shared.admitted.load(Ordering::Relaxed),
        rejected_full: shared.rejected_full.load(Ordering::Relaxed),
        bad_requests: shared.bad_requests.load(Ordering::Relaxed),
        cancelled: shared.cancelled.load(Ordering::Relaxed),
    }
}

const JSON: &str = "application/json";

/// Waits until the client sends something (true) or the connection ends or the server stops
/// (false), so idle keep-alive connections never hold up shutdown.
fn wait_readable(stream: &TcpStream, stop: &AtomicBool) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut idle = Duration::ZERO;
    let mut b = [0u8; 1];
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        match stream.peek(&mut b) {
            Ok(0) => return false,
            Ok(_) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                return true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                idle += Duration::from_millis(200);
                if idle > Duration::from_secs(300) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

/// One connection: requests in order until the client closes or the server stops.
fn connection(sh: &Shared<'_>, stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut w = stream;
    let mut r = BufReader::new(read_half);
    loop {
        if r.buffer().is_empty() && !wait_readable(&w, sh.stop) {
            return;
        }
        let req = match http::read_request(&mut r, sh.settings.max_body_bytes) {
            Ok(q) => q,
            Err(http::ReadError::Closed) => return,
            Err(http::ReadError::Bad(msg)) => {
                sh.bad_requests.fetch_add(1, Ordering::Relaxed);
                let _ = http::write_response(
                    &mut w,
                    400,
                    JSON,
                    &error_body(400, "invalid_request_error", &msg),
                    false,
                );
                return;
            }
            Err(http::ReadError::TooLarge(n)) => {
                sh.bad_requests.fetch_add(1, Ordering::Relaxed);
                let msg = format!(
                    "the body has {n} bytes; this server takes at most {} (--max-body-mb)",
                    sh.settings.max_body_bytes
                );
                let _ = http::write_response(
                    &mut w,
                    413,
                    JSON,
                    &error_body(413, "invalid_request_error", &msg),
                    false,
                );
                return;
            }
        };
        let answered = route(sh, &req, &mut w);
        if !(answered && req.keep_alive) {
            return;
        }
    }
}

/// Answers one request; false when the connection should close.
fn route(sh: &Shared<'_>, req: &http::HttpRequest, w: &mut TcpStream) -> bool {
    let path = req.path.strip_prefix("/v1").unwrap_or(&req.path);
    let keep = req.keep_alive;
    let reply = |w: &mut TcpStream, code: u16, body: &[u8]| {
        http::write_response(w, code, JSON, body, keep).is_ok()
    };
    match (req.method.as_str(), path) {
        ("GET", "/models") => {
            let list = ModelList {
                object: "list".into(),
                data: vec![ModelEntry {
                    id: sh.settings.model_id.clone(),
                    object: "model".into(),
                    created: now(),
                    owned_by: "maspo".into(),
                }],
            };
            reply(w, 200, &serde_json::to_vec(&list).unwrap_or_default())
        }
        ("GET", "/health" | "/") => reply(w, 200, br#"{"status":"ok"}"#),
        ("POST", "/chat/completions" | "/completions") => {
            let admitted = sh
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < sh.settings.max_queue).then_some(n + 1)
                })
                .is_ok();
            if !admitted {
                sh.rejected_full.fetch_add(1, Ordering::Relaxed);
                return reply(
                    w,
                    503,
                    &error_body(503, "overloaded", "the server's queue is full; retry later"),
                );
            }
            let ok = handle(sh, &req.body, path == "/chat/completions", w, keep);
            sh.in_flight.fetch_sub(1, Ordering::SeqCst);
            ok
        }
        (method, _) => {
            let msg = format!("no route {method} {} (maspo serves /v1/chat/completions, /v1/completions, /v1/models)", req.path);
            reply(w, 404, &error_body(404, "invalid_request_error", &msg))
        }
    }
}

/// The scheduler: the engine's loop, fed from the job channel.
fn schedule(engine: &Engine, rx: mpsc::Receiver<Job>, closing: &AtomicBool, sh: &Shared<'_>) {
    let senders: Mutex<HashMap<usize, mpsc::Sender<Event>>> = Mutex::new(HashMap::new());
    let cancel: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    let mut next = 0usize;
    engine.serve_loop(
        &mut |idle| {
            let mut intake = Intake::default();
            let mut take = |job: Job, intake: &mut Intake| {
                lock(&senders).insert(next, job.tx);
                next += 1;
                intake.requests.push(job.req);
            };
            if idle {
                // Block for work, waking to notice shutdown.
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(job) => take(job, &mut intake),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => intake.closed = true,
                }
            }
            while let Ok(job) = rx.try_recv() {
                take(job, &mut intake);
            }
            intake.cancel = std::mem::take(&mut *lock(&cancel));
            if idle && intake.requests.is_empty() && closing.load(Ordering::SeqCst) {
                intake.closed = true;
            }
            intake
        },
        &mut |d| {
            let gone = lock(&senders)
                .get(&d.request)
                .is_none_or(|tx| tx.send(Event::Delta(d.text.to_string())).is_err());
            if gone {
                lock(&cancel).push(d.request);
            }
        },
        &mut |i, r| {
            if matches!(r, Err(EngineError::Cancelled)) {
                sh.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(tx) = lock(&senders).remove(&i) {
                let _ = tx.send(Event::Done(r));
            }
        },
    );
}

/// A parsed generation request: what to run and how to answer.
#[derive(Debug)]
struct Parsed {
    req: GenRequest,
    stream: bool,
    chat: bool,
    top_logprobs: Option<usize>,
}

fn parse(s: &ServeSettings, body: &[u8], chat: bool) -> Result<Parsed, String> {
    let sampling =
        |temperature: Option<f32>, top_p: Option<f32>, top_k: Option<usize>, seed: Option<u64>| {
            SamplingParams {
                temperature: temperature.unwrap_or(1.0),
                top_k: top_k.unwrap_or(0),
                top_p: top_p.unwrap_or(1.0),
                seed: seed.unwrap_or(0),
            }
        };
    let check_n = |n: Option<usize>| match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(format!(
            "n = {n}: maspo serves one choice per request (send {n} requests with different seeds)"
        )),
    };
    let limit = |m: Option<usize>| {
        let m = m.unwrap_or(s.default_max_tokens);
        if m > s.max_tokens_limit {
            Err(format!(
                "max_tokens = {m} exceeds this server's limit of {} (start it with a higher --max-tokens-limit)",
                s.max_tokens_limit
            ))
        } else {
            Ok(m)
        }
    };
    if chat {
        let r: ChatRequest =
            serde_json::from_slice(body).map_err(|e| format!("malformed chat request: {e}"))?;
        check_n(r.n)?;
        if r.messages.is_empty() {
            return Err("messages is empty".into());
        }
        let mut messages = Vec::with_capacity(r.messages.len());
        for (i, m) in r.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => return Err(format!("messages[{i}].role `{other}` is not supported (system, developer, user, assistant)")),
            };
            let content = match &m.content {
                Some(c) => c.text().map_err(|e| format!("messages[{i}]: {e}"))?,
                None => String::new(),
            };
            messages.push(Message { role, content });
        }
        // A final assistant message is the start of the reply (llama.cpp's server does the same;
        // vLLM asks for `continue_final_message`): it becomes the request's prefill.
        let prefill = match messages.last() {
            Some(m) if m.role == Role::Assistant && r.continue_final_message != Some(false) => {
                if messages.len() == 1 {
                    return Err(
                        "messages holds only an assistant message: nothing to answer".into(),
                    );
                }
                messages.pop().map(|m| m.content)
            }
            _ => None,
        };
        let top = r
            .logprobs
            .unwrap_or(false)
            .then(|| r.top_logprobs.unwrap_or(0));
        if top.is_some_and(|t| t > 20) {
            return Err("top_logprobs must be at most 20".into());
        }
        let mut thinking = None;
        for (k, v) in r.chat_template_kwargs.iter().flatten() {
            match (k.as_str(), v) {
                ("enable_thinking", serde_json::Value::Bool(b)) => thinking = Some(*b),
                ("enable_thinking", other) => {
                    return Err(format!(
                        "chat_template_kwargs.enable_thinking must be true or false, not {other}"
                    ))
                }
                (other, _) => {
                    return Err(format!(
                    "chat_template_kwargs.{other} is not supported (maspo reads enable_thinking)"
                ))
                }
            }
        }
        Ok(Parsed {
            req: GenRequest {
                prompt: Prompt::Chat(messages),
                thinking,
                max_new_tokens: limit(r.max_completion_tokens.or(r.max_tokens))?,
                sampling: sampling(r.temperature, r.top_p, r.top_k, r.seed),
                stop: r.stop.map(|s| s.list()).unwrap_or_default(),
                ignore_eos: r.ignore_eos.unwrap_or(false),
                logprobs: top,
                prefill,
            },
            stream: r.stream.unwrap_or(false),
            chat: true,
            top_logprobs: top,
        })
    } else {
        let r: CompletionRequest = serde_json::from_slice(body)
            .map_err(|e| format!("malformed completion request: {e}"))?;
        check_n(r.n)?;
        let prompt = match r.prompt {
            PromptField::Text(t) => Prompt::Text(t),
            PromptField::Tokens(t) => Prompt::Tokens(t),
            PromptField::Texts(mut v) if v.len() == 1 => Prompt::Text(v.remove(0)),
            PromptField::Texts(v) => {
                return Err(format!("a batch of {} prompts: maspo serves one prompt per request (send them concurrently: they are batched anyway)", v.len()))
            }
        };
        if r.logprobs.is_some_and(|t| t > 20) {
            return Err("logprobs must be at most 20".into());
        }
        Ok(Parsed {
            req: GenRequest {
                prompt,
                max_new_tokens: limit(r.max_tokens.or(Some(16)))?,
                sampling: sampling(r.temperature, r.top_p, r.top_k, r.seed),
                stop: r.stop.map(|s| s.list()).unwrap_or_default(),
                ignore_eos: r.ignore_eos.unwrap_or(false),
                logprobs: r.logprobs,
                thinking: None,
                prefill: None,
            },
            stream: r.stream.unwrap_or(false),
            chat: false,
            top_logprobs: r.logprobs,
        })
    }
}

/// Runs one generation request and writes its answer; false when the connection is broken.
fn handle(sh: &Shared<'_>, body: &[u8], chat: bool, w: &mut TcpStream, keep: bool) -> bool {
    let reply = |w: &mut TcpStream, code: u16, body: &[u8]| {
        http::write_response(w, code, JSON, body, keep).is_ok()
    };
    let p = match parse(sh.settings, body, chat) {
        Ok(p) => p,
        Err(msg) => {
            sh.bad_requests.fetch_add(1, Ordering::Relaxed);
            return reply(w, 400, &error_body(400, "invalid_request_error", &msg));
        }
    };
    let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
    let id = if p.chat {
        format!("chatcmpl-{id}")
    } else {
        format!("cmpl-{id}")
    };
    let (tx, rx) = mpsc::channel();
    let sent = lock(&sh.jobs).send(Job {
        req: p.req.clone(),
        tx,
    });
    if sent.is_err() {
        return reply(
            w,
            503,
            &error_body(503, "overloaded", "the server is shutting down"),
        );
    }
    sh.admitted.fetch_add(1, Ordering::Relaxed);
    if p.stream {
        return stream(sh, w, keep, &p, &id, rx);
    }
    let done = loop {
        match rx.recv() {
            Ok(Event::Delta(_)) => continue,
            Ok(Event::Done(r)) => break r,
            Err(_) => break Err(EngineError::Cancelled),
        }
    };
    match done {
        Ok(c) => {
            let body = if p.chat {
                serde_json::to_vec(&chat_response(sh, &id, &c, p.top_logprobs))
            } else {
                serde_json::to_vec(&text_response(sh, &id, &c, p.top_logprobs))
            };
            match body {
                Ok(b) => reply(w, 200, &b),
                Err(e) => reply(w, 500, &error_body(500, "server_error", &e.to_string())),
            }
        }
        Err(e) => {
            let (code, kind) = status_of(&e);
            reply(w, code, &error_body(code, kind, &e.to_string()))
        }
    }
}

fn status_of(e: &EngineError) -> (u16, &'static str) {
    match e {
        EngineError::ContextOverflow { .. }
        | EngineError::KvBudget { .. }
        | EngineError::Request(_)
        | EngineError::Template(_)
        | EngineError::Tokenizer(_) => (400, "invalid_request_error"),
        EngineError::Cancelled => (503, "overloaded"),
        _ => (500, "server_error"),
    }
}

fn usage(c: &Completion) -> Usage {
    Usage {
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.generated_tokens(),
        total_tokens: c.prompt_tokens + c.generated_tokens(),
    }
}

fn token_text(engine: &Engine, id: u32) -> String {
    engine.tokenizer().decode(&[id]).unwrap_or_default()
}

fn chat_logprobs(engine: &Engine, c: &Completion) -> Option<ChatLogprobs> {
    let lps = c.logprobs.as_ref()?;
    let visible = visible_tokens(engine, c);
    Some(ChatLogprobs {
        content: Some(
            lps.iter()
                .take(visible)
                .map(|t| {
                    let token = token_text(engine, t.id);
                    ChatTokenLogprob {
                        bytes: Some(token.as_bytes().to_vec()),
                        token,
                        logprob: t.logprob,
                        top_logprobs: t
                            .top
                            .iter()
                            .map(|&(id, logprob)| {
                                let token = token_text(engine, id);
                                TopLogprob {
                                    bytes: Some(token.as_bytes().to_vec()),
                                    token,
                                    logprob,
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        ),
    })
}

/// Generated tokens that are part of the answer (not the end-of-turn token).
fn visible_tokens(engine: &Engine, c: &Completion) -> usize {
    let n = c.token_ids.len();
    match c.token_ids.last() {
        Some(t) if engine.stop_ids().contains(t) => n - 1,
        _ => n,
    }
}

fn chat_response(sh: &Shared<'_>, id: &str, c: &Completion, top: Option<usize>) -> ChatResponse {
    ChatResponse {
        id: id.to_string(),
        object: "chat.completion".into(),
        created: now(),
        model: sh.settings.model_id.clone(),
        choices: vec![ChatChoice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content: Some(c.text.clone()),
            },
            finish_reason: Some(finish_reason(&c.stop_reason).into()),
            logprobs: top.and_then(|_| chat_logprobs(sh.engine, c)),
        }],
        usage: Some(usage(c)),
    }
}

fn text_response(sh: &Shared<'_>, id: &str, c: &Completion, top: Option<usize>) -> TextResponse {
    let logprobs = top.and(c.logprobs.as_ref()).map(|lps| {
        let mut out = TextLogprobs::default();
        let mut offset = 0;
        for t in lps.iter().take(visible_tokens(sh.engine, c)) {
            let token = token_text(sh.engine, t.id);
            out.text_offset.push(offset);
            offset += token.len();
            out.tokens.push(token);
            out.token_logprobs.push(Some(t.logprob));
            out.top_logprobs.push(Some(
                t.top
                    .iter()
                    .map(|&(id, lp)| (token_text(sh.engine, id), serde_json::Value::from(lp)))
                    .collect(),
            ));
        }
        out
    });
    TextResponse {
        id: id.to_string(),
        object: "text_completion".into(),
        created: now(),
        model: sh.settings.model_id.clone(),
        choices: vec![TextChoice {
            index: 0,
            text: c.text.clone(),
            finish_reason: Some(finish_reason(&c.stop_reason).into()),
            logprobs,
        }],
        usage: Some(usage(c)),
    }
}

/// Writes the answer as server-sent events, one chunk per piece of final text; false when
/// the connection is broken.
fn stream(
    sh: &Shared<'_>,
    w: &mut TcpStream,
    keep: bool,
    p: &Parsed,
    id: &str,
    rx: mpsc::Receiver<Event>,
) -> bool {
    let created = now();
    let model = sh.settings.model_id.clone();
    let chunk = |delta: serde_json::Value,
                 finish: Option<&str>,
                 extra: Option<(&str, serde_json::Value)>| {
        let mut v = if p.chat {
            serde_json::json!({"id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        } else {
            serde_json::json!({"id": id, "object": "text_completion", "created": created,
                "model": model, "choices": [{"index": 0, "text": delta, "finish_reason": finish}]})
        };
        if let Some((k, x)) = extra {
            v[k] = x;
        }
        format!("data: {v}\n\n")
    };
    let Ok(mut w) = http::Chunked::start(w, keep) else {
        return false; // The client is gone; dropping `rx` withdraws the request.
    };
    let text_delta = |t: &str| {
        if p.chat {
            serde_json::json!({"content": t})
        } else {
            serde_json::Value::from(t)
        }
    };
    if p.chat
        && w.send(
            chunk(
                serde_json::json!({"role": "assistant", "content": ""}),
                None,
                None,
            )
            .as_bytes(),
        )
        .is_err()
    {
        return false;
    }
    loop {
        let ev = match rx.recv() {
            Ok(e) => e,
            Err(_) => return false,
        };
        let out = match ev {
            Event::Delta(t) => chunk(text_delta(&t), None, None),
            Event::Done(Ok(c)) => {
                let u = serde_json::to_value(usage(&c)).unwrap_or_default();
                let empty = if p.chat {
                    serde_json::json!({})
                } else {
                    "".into()
                };
                let last = chunk(
                    empty,
                    Some(finish_reason(&c.stop_reason)),
                    Some(("usage", u)),
                );
                return w.send(last.as_bytes()).is_ok()
                    && w.send(b"data: [DONE]\n\n").is_ok()
                    && w.finish().is_ok();
            }
            Event::Done(Err(e)) => {
                let (code, kind) = status_of(&e);
                let err = serde_json::json!({"error": {"message": e.to_string(), "type": kind, "code": code}});
                return w.send(format!("data: {err}\n\n").as_bytes()).is_ok()
                    && w.send(b"data: [DONE]\n\n").is_ok()
                    && w.finish().is_ok();
            }
        };
        if w.send(out.as_bytes()).is_err() {
            return false; // Dropping `rx` makes the scheduler withdraw the request.
        }
    }
}

/// Locks ignoring poison: a panicking handler must not stop the scheduler.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn error_body(code: u16, kind: &str, message: &str) -> Vec<u8> {
    let body = ErrorBody {
        error: ErrorDetail {
            message: message.to_string(),
            kind: kind.to_string(),
            code: Some(code.into()),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body() -> impl Strategy<Value = String> {
        let v = prop::sample::select(vec![
            "null",
            "0",
            "-1",
            "1e300",
            "\"x\"",
            "[]",
            "{}",
            "true",
            "[1,2]",
            "99999999999999999999",
            "[{\"role\":\"user\",\"content\":\"hi\"}]",
            "[{\"role\":\"x\"}]",
            "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}]",
        ]);
        let k = prop::sample::select(vec![
            "messages",
            "prompt",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "top_k",
            "seed",
            "stop",
            "stream",
            "logprobs",
            "top_logprobs",
            "n",
            "ignore_eos",
            "chat_template_kwargs",
            "continue_final_message",
        ]);
        prop::collection::vec((k, v), 0..8).prop_map(|kv| {
            let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", fields.join(","))
        })
    }

    #[test]
    fn chat_template_kwargs_switch_thinking_and_unknown_keys_are_refused() {
        let s = ServeSettings::new("m");
        let body = |kw: &str| {
            format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"a\"}}],\"chat_template_kwargs\":{kw}}}")
        };
        let p = parse(&s, body("{\"enable_thinking\":true}").as_bytes(), true).unwrap();
        assert_eq!(p.req.thinking, Some(true));
        let p = parse(&s, body("{\"enable_thinking\":false}").as_bytes(), true).unwrap();
        assert_eq!(p.req.thinking, Some(false));
        let p = parse(&s, body("{}").as_bytes(), true).unwrap();
        assert_eq!(p.req.thinking, None);
        let e = parse(&s, body("{\"enable_thinking\":1}").as_bytes(), true).unwrap_err();
        assert!(e.contains("true or false"), "{e}");
        let e = parse(&s, body("{\"tools\":[]}").as_bytes(), true).unwrap_err();
        assert!(
            e.contains("chat_template_kwargs.tools") && e.contains("enable_thinking"),
            "{e}"
        );
    }

    #[test]
    fn a_final_assistant_message_is_the_prefill() {
        let s = ServeSettings::new("m");
        let msgs = r#"[{"role":"user","content":"a"},{"role":"assistant","content":"<prompt>\n"}]"#;
        let p = parse(&s, format!("{{\"messages\":{msgs}}}").as_bytes(), true).unwrap();
        assert_eq!(p.req.prefill.as_deref(), Some("<prompt>\n"));
        assert!(matches!(&p.req.prompt, Prompt::Chat(m) if m.len() == 1));
        let p = parse(
            &s,
            format!("{{\"messages\":{msgs},\"continue_final_message\":false}}").as_bytes(),
            true,
        )
        .unwrap();
        assert_eq!(p.req.prefill, None);
        assert!(matches!(&p.req.prompt, Prompt::Chat(m) if m.len() == 2));
        let e = parse(
            &s,
            br#"{"messages":[{"role":"assistant","content":"x"}]}"#,
            true,
        )
        .unwrap_err();
        assert!(e.contains("only an assistant message"), "{e}");
    }

    proptest! {
        /// Any body is a request or a 400 message, never a panic; admitted requests respect
        /// the limits.
        #[test]
        fn request_bodies_parse_or_are_refused(b in body(), chat in any::<bool>(), junk in any::<Vec<u8>>()) {
            let s = ServeSettings::new("m");
            for bytes in [b.as_bytes(), &junk[..]] {
                if let Ok(p) = parse(&s, bytes, chat) {
                    prop_assert!(p.req.max_new_tokens <= s.max_tokens_limit);
                    prop_assert!(p.top_logprobs.is_none_or(|t| t <= 20));
                }
            }
        }
    }
}
