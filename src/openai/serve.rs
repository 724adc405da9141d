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

use super::wire::*;
use crate::engine::chat_template::{Message, Role};
use crate::engine::sampling::SamplingParams;
use crate::engine::{Completion, Engine, EngineError, GenRequest, Intake, Prompt};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
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
    http: tiny_http::Server,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` (`host:port`; port 0 picks a free one).
    pub fn bind(addr: &str) -> Result<Self, ServeError> {
        let http = tiny_http::Server::http(addr).map_err(|e| ServeError::Bind {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        let addr = http.server_addr().to_ip().ok_or_else(|| ServeError::Bind {
            addr: addr.to_string(),
            reason: "not an IP address".into(),
        })?;
        Ok(Self { http, addr })
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
    jobs: Mutex<mpsc::Sender<Job>>,
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
        jobs: Mutex::new(job_tx),
        in_flight: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
        admitted: AtomicU64::new(0),
        rejected_full: AtomicU64::new(0),
        bad_requests: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
    };
    let accepting_done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sh = &shared;
        let done_flag = &accepting_done;
        scope.spawn(move || schedule(sh.engine, job_rx, done_flag, sh));
        // The acceptor.
        while !stop.load(Ordering::Relaxed) {
            let req = match listener.http.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("accepting a request failed: {e}");
                    continue;
                }
            };
            let path = req.url().split('?').next().unwrap_or("").to_string();
            let path = path.strip_prefix("/v1").unwrap_or(&path).to_string();
            match (req.method(), path.as_str()) {
                (tiny_http::Method::Get, "/models") => {
                    let list = ModelList {
                        object: "list".into(),
                        data: vec![ModelEntry {
                            id: settings.model_id.clone(),
                            object: "model".into(),
                            created: now(),
                            owned_by: "maspo".into(),
                        }],
                    };
                    respond_json(req, 200, &list);
                }
                (tiny_http::Method::Get, "/health" | "/") => {
                    respond_json(req, 200, &serde_json::json!({"status": "ok"}));
                }
                (tiny_http::Method::Post, "/chat/completions" | "/completions") => {
                    if sh.in_flight.load(Ordering::SeqCst) >= settings.max_queue {
                        sh.rejected_full.fetch_add(1, Ordering::Relaxed);
                        respond_error(
                            req,
                            503,
                            "overloaded",
                            "the server's queue is full; retry later",
                        );
                        continue;
                    }
                    sh.in_flight.fetch_add(1, Ordering::SeqCst);
                    let chat = path == "/chat/completions";
                    scope.spawn(move || {
                        handle(sh, req, chat);
                        sh.in_flight.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                (method, _) => {
                    let method = method.to_string();
                    respond_error(req, 404, "invalid_request_error", &format!("no route {} {path} (maspo serves /v1/chat/completions, /v1/completions, /v1/models)", method));
                }
            }
        }
        // Stop accepting; in-flight handlers finish, then the scheduler drains and returns.
        drop(listener);
        while shared.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        accepting_done.store(true, Ordering::SeqCst);
    });
    ServeStats {
        admitted: shared.admitted.load(Ordering::Relaxed),
        rejected_full: shared.rejected_full.load(Ordering::Relaxed),
        bad_requests: shared.bad_requests.load(Ordering::Relaxed),
        cancelled: shared.cancelled.load(Ordering::Relaxed),
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
struct Parsed {
    req: GenRequest,
    stream: bool,
    chat: bool,
    top_logprobs: Option<usize>,
}

fn parse(sh: &Shared<'_>, body: &[u8], chat: bool) -> Result<Parsed, String> {
    let s = sh.settings;
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
        let top = r
            .logprobs
            .unwrap_or(false)
            .then(|| r.top_logprobs.unwrap_or(0));
        if top.is_some_and(|t| t > 20) {
            return Err("top_logprobs must be at most 20".into());
        }
        Ok(Parsed {
            req: GenRequest {
                prompt: Prompt::Chat(messages),
                max_new_tokens: limit(r.max_completion_tokens.or(r.max_tokens))?,
                sampling: sampling(r.temperature, r.top_p, r.top_k, r.seed),
                stop: r.stop.map(|s| s.list()).unwrap_or_default(),
                ignore_eos: false,
                logprobs: top,
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
                ignore_eos: false,
                logprobs: r.logprobs,
            },
            stream: r.stream.unwrap_or(false),
            chat: false,
            top_logprobs: r.logprobs,
        })
    }
}

fn handle(sh: &Shared<'_>, mut req: tiny_http::Request, chat: bool) {
    let mut body = Vec::new();
    let read = req
        .as_reader()
        .take(sh.settings.max_body_bytes as u64 + 1)
        .read_to_end(&mut body);
    if let Err(e) = read {
        sh.bad_requests.fetch_add(1, Ordering::Relaxed);
        respond_error(
            req,
            400,
            "invalid_request_error",
            &format!("reading the body: {e}"),
        );
        return;
    }
    if body.len() > sh.settings.max_body_bytes {
        sh.bad_requests.fetch_add(1, Ordering::Relaxed);
        let msg = format!("the body exceeds {} bytes", sh.settings.max_body_bytes);
        respond_error(req, 413, "invalid_request_error", &msg);
        return;
    }
    let p = match parse(sh, &body, chat) {
        Ok(p) => p,
        Err(msg) => {
            sh.bad_requests.fetch_add(1, Ordering::Relaxed);
            respond_error(req, 400, "invalid_request_error", &msg);
            return;
        }
    };
    let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
    let id = if p.chat {
        format!("chatcmpl-{id}")
    } else {
        format!("cmpl-{id}")
    };
    let (tx, rx) = mpsc::channel();
    let sent = sh.jobs.lock().unwrap_or_else(|e| e.into_inner()).send(Job {
        req: p.req.clone(),
        tx,
    });
    if sent.is_err() {
        respond_error(req, 503, "overloaded", "the server is shutting down");
        return;
    }
    sh.admitted.fetch_add(1, Ordering::Relaxed);
    if p.stream {
        stream(sh, req, &p, &id, rx);
        return;
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
                serde_json::to_value(chat_response(sh, &id, &c, p.top_logprobs))
            } else {
                serde_json::to_value(text_response(sh, &id, &c, p.top_logprobs))
            };
            match body {
                Ok(v) => respond_json(req, 200, &v),
                Err(e) => respond_error(req, 500, "server_error", &e.to_string()),
            }
        }
        Err(e) => {
            let (code, kind) = status_of(&e);
            respond_error(req, code, kind, &e.to_string());
        }
    }
}

fn status_of(e: &EngineError) -> (u16, &'static str) {
    match e {
        EngineError::ContextOverflow { .. }
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
    let logprobs = top.and_then(|_| c.logprobs.as_ref()).map(|lps| {
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

/// Writes the answer as server-sent events, one chunk per piece of final text.
fn stream(
    sh: &Shared<'_>,
    req: tiny_http::Request,
    p: &Parsed,
    id: &str,
    rx: mpsc::Receiver<Event>,
) {
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
    let mut raw = req.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    if raw
        .write_all(head.as_bytes())
        .and_then(|_| raw.flush())
        .is_err()
    {
        return; // The client is gone; dropping `rx` withdraws the request.
    }
    let mut w = Chunked(raw);
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
        return;
    }
    loop {
        let ev = match rx.recv() {
            Ok(e) => e,
            Err(_) => return,
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
                let _ = w.send(last.as_bytes());
                let _ = w.send(b"data: [DONE]\n\n");
                w.finish();
                return;
            }
            Event::Done(Err(e)) => {
                let (code, kind) = status_of(&e);
                let err = serde_json::json!({"error": {"message": e.to_string(), "type": kind, "code": code}});
                let _ = w.send(format!("data: {err}\n\n").as_bytes());
                let _ = w.send(b"data: [DONE]\n\n");
                w.finish();
                return;
            }
        };
        if w.send(out.as_bytes()).is_err() {
            return; // Dropping `rx` makes the scheduler withdraw the request.
        }
    }
}

/// An HTTP/1.1 chunked body written and flushed one event at a time.
struct Chunked(Box<dyn Write + Send>);

impl Chunked {
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        write!(self.0, "{:x}\r\n", data.len())?;
        self.0.write_all(data)?;
        self.0.write_all(b"\r\n")?;
        self.0.flush()
    }

    fn finish(mut self) {
        let _ = self.0.write_all(b"0\r\n\r\n").and_then(|_| self.0.flush());
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

fn respond_json<T: serde::Serialize>(req: tiny_http::Request, code: u16, body: &T) {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    let header = tiny_http::Header::from_bytes("Content-Type", "application/json")
        .expect("static header is valid");
    let resp = tiny_http::Response::from_string(text)
        .with_status_code(code)
        .with_header(header);
    if let Err(e) = req.respond(resp) {
        tracing::debug!("writing a response failed: {e}");
    }
}

fn respond_error(req: tiny_http::Request, code: u16, kind: &str, message: &str) {
    let body = ErrorBody {
        error: ErrorDetail {
            message: message.to_string(),
            kind: kind.to_string(),
            code: Some(code.into()),
        },
    };
    respond_json(req, code, &body);
}
