//! Which model a role uses: a catalog id or model file (run in-process), or a remote
//! OpenAI-compatible endpoint.
//!
//! In a config file a role's model is a string or a table:
//!
//! ```toml
//! model = "qwen2.5-coder-0.5b-instruct"                   # in-process
//! [optimize]
//! evaluator_model = { url = "http://127.0.0.1:8000/v1", model = "Qwen/Qwen3-8B", api_key_env = "OPENAI_API_KEY" }
//! ```
//!
//! On the command line a remote role is its URL, optionally with `#model-id`:
//! `--evaluator-model http://127.0.0.1:8000/v1#Qwen/Qwen3-8B`. The API key is only ever named
//! (by its environment variable), never written to run directories or reports.

use serde::{Deserialize, Serialize};

/// A role's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelSpec {
    /// A catalog id, a model file, or an endpoint URL (`http(s)://...[#model-id]`).
    Name(String),
    /// A remote endpoint with its options.
    Remote(RemoteSpec),
}

/// A remote OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSpec {
    /// Base URL of the API (`http://host:port/v1`; a bare `http://host:port` gets `/v1`).
    pub url: String,
    /// Model id to request [default: the first one `GET /models` lists].
    #[serde(default)]
    pub model: Option<String>,
    /// Environment variable holding the API key (sent as a bearer token) [default: none].
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Seconds one HTTP request may take before it is retried.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Retries of one call on 429, 5xx, connection errors, timeouts and unreadable replies.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry delay in milliseconds; doubles per retry (capped at 30 s), full jitter.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Alternatives asked for when scoring by log-probabilities (OpenAI allows up to 20).
    #[serde(default = "default_top")]
    pub top_logprobs: usize,
}

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    600.0
}
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> u64 {
    500
}
fn default_top() -> usize {
    20
}

impl RemoteSpec {
    /// An endpoint with default options.
    pub fn new(url: impl Into<String>, model: Option<String>) -> Self {
        Self {
            url: url.into(),
            model,
            api_key_env: None,
            concurrency: default_concurrency(),
            timeout_s: default_timeout(),
            max_retries: default_retries(),
            backoff_ms: default_backoff(),
            top_logprobs: default_top(),
        }
    }

    /// The base URL without a trailing slash, with `/v1` added to a bare host.
    pub fn base_url(&self) -> String {
        let u = self.url.trim_end_matches('/');
        let after_scheme = u.split_once("://").map_or(u, |(_, rest)| rest);
        if after_scheme.contains('/') {
            u.to_string()
        } else {
            format!("{u}/v1")
        }
    }
}

impl ModelSpec {
    /// Reads a command-line value: a URL is a remote endpoint, anything else a local model.
    pub fn parse(s: &str) -> Self {
        Self::Name(s.to_string())
    }

    /// The endpoint, when this is a remote model.
    pub fn remote(&self) -> Option<RemoteSpec> {
        match self {
            ModelSpec::Remote(r) => Some(r.clone()),
            ModelSpec::Name(s) if is_url(s) => {
                let (url, model) = match s.split_once('#') {
                    Some((u, m)) if !m.is_empty() => (u, Some(m.to_string())),
                    Some((u, _)) => (u, None),
                    None => (s.as_str(), None),
                };
                Some(RemoteSpec::new(url, model))
            }
            ModelSpec::Name(_) => None,
        }
    }

    /// The catalog id or path, when this is a local model.
    pub fn local(&self) -> Option<&str> {
        match self {
            ModelSpec::Name(s) if !is_url(s) => Some(s),
            _ => None,
        }
    }

    /// A short label for titles and reports (no secrets).
    pub fn label(&self) -> String {
        match (self.local(), self.remote()) {
            (Some(l), _) => l.to_string(),
            (None, Some(r)) => match &r.model {
                Some(m) => format!("{m} @ {}", r.base_url()),
                None => r.base_url(),
            },
            (None, None) => String::new(),
        }
    }
}

impl From<&str> for ModelSpec {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_tables_read_as_expected() {
        let local = ModelSpec::parse("smollm2-135m-instruct");
        assert_eq!(local.local(), Some("smollm2-135m-instruct"));
        assert!(local.remote().is_none());
        let r = ModelSpec::parse("http://127.0.0.1:8080#qwen")
            .remote()
            .unwrap();
        assert_eq!(r.base_url(), "http://127.0.0.1:8080/v1");
        assert_eq!(r.model.as_deref(), Some("qwen"));
        let r = ModelSpec::parse("https://h.example/api/v1/")
            .remote()
            .unwrap();
        assert_eq!(r.base_url(), "https://h.example/api/v1");
        #[derive(Deserialize)]
        struct F {
            m: ModelSpec,
        }
        let f: F = toml::from_str(
            "m = { url = \"http://h:1/v1\", model = \"x\", api_key_env = \"K\", concurrency = 4 }",
        )
        .unwrap();
        let r = f.m.remote().unwrap();
        assert_eq!((r.concurrency, r.api_key_env.as_deref()), (4, Some("K")));
        assert_eq!(f.m.label(), "x @ http://h:1/v1");
        let bad = toml::from_str::<F>("m = { url = \"http://h\", modle = \"x\" }");
        assert!(bad.is_err());
    }
}
