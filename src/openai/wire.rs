//! The OpenAI-compatible HTTP API's JSON shapes, as far as maspo speaks them: chat and text
//! completions (streamed or not), log-probabilities, `/v1/models`, errors.
//!
//! One definition for both sides: the remote backend sends these requests and reads these
//! responses; `maspo serve` reads the requests and writes the responses. Requests ignore fields
//! maspo does not use (clients send many); responses carry what common clients require.

use serde::{Deserialize, Serialize};

/// Message content: a string, or the array-of-parts form (text parts are joined).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": "..."}, ...]`.
    Parts(Vec<ContentPart>),
}

/// One part of array-form content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// Part type (`text`; others are refused by the server).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    /// The text, or the kind of the first non-text part.
    pub fn text(&self) -> Result<String, String> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    match (&*p.kind, &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (k, _) => return Err(format!("content part of type `{k}` (only text)")),
                    }
                }
                Ok(out)
            }
        }
    }
}

/// A chat message on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The content (`null` is read as empty).
    #[serde(default)]
    pub content: Option<Content>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// As a list.
    pub fn list(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model id.
    #[serde(default)]
    pub model: String,
    /// The conversation.
    pub messages: Vec<WireMessage>,
    /// Most new tokens (older name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Most new tokens (newer name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<usize>,
    /// Softmax temperature (0 = greedy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k (an extension that vLLM, SGLang and llama.cpp's server accept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Return per-token log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Alternatives per token (with `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<usize>,
    /// Choices per request (maspo serves 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Generate through end-of-turn tokens (extension of vLLM and llama.cpp's server;
    /// benchmarks use it so every server generates the same number of tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// Variables for the chat template (vLLM / SGLang extension); maspo reads
    /// `enable_thinking` (Qwen3's switch) and refuses other keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// The last message is an assistant message to continue rather than a finished turn (vLLM
    /// extension; llama.cpp's server continues a final assistant message by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_final_message: Option<bool>,
    /// Whether the template adds the assistant's generation prompt (vLLM extension; `false`
    /// with `continue_final_message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
}

/// A text-completion prompt: a string, strings (one only), or token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// A batch of texts (maspo serves a batch of one).
    Texts(Vec<String>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Model id.
    #[serde(default)]
    pub model: String,
    /// The prompt.
    pub prompt: PromptField,
    /// Most new tokens (default 16, as OpenAI's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Softmax temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Stream as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Alternatives per token to return (the legacy integer form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<usize>,
    /// Choices per prompt (maspo serves 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Generate through end-of-turn tokens (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: usize,
    /// Generated tokens.
    #[serde(default)]
    pub completion_tokens: usize,
    /// Both.
    #[serde(default)]
    pub total_tokens: usize,
}

/// An alternative token with its log-probability (chat form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token (may be part of a character).
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

/// One generated token's log-probability (chat form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTokenLogprob {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    /// The most likely tokens at this position.
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[].logprobs` of a chat response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatLogprobs {
    /// Per generated token.
    #[serde(default)]
    pub content: Option<Vec<ChatTokenLogprob>>,
}

/// A chat message in a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: String,
    /// The text (`null` from some servers when empty).
    #[serde(default)]
    pub content: Option<String>,
}

/// One choice of a chat response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Choice index.
    #[serde(default)]
    pub index: usize,
    /// The answer.
    pub message: ResponseMessage,
    /// `stop` or `length`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Per-token log-probabilities, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChatLogprobs>,
}

/// The response of a non-streamed chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Request id.
    #[serde(default)]
    pub id: String,
    /// `chat.completion`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Model id.
    #[serde(default)]
    pub model: String,
    /// The choices.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// The legacy log-probability block of a text completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextLogprobs {
    /// Token texts.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Their log-probabilities.
    #[serde(default)]
    pub token_logprobs: Vec<Option<f32>>,
    /// Per position, token text → log-probability of the most likely tokens.
    #[serde(default)]
    pub top_logprobs: Vec<Option<serde_json::Map<String, serde_json::Value>>>,
    /// Character offsets of the tokens in the text.
    #[serde(default)]
    pub text_offset: Vec<usize>,
}

/// One choice of a text completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextChoice {
    /// Choice index.
    #[serde(default)]
    pub index: usize,
    /// The generated text.
    pub text: String,
    /// `stop` or `length`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Log-probabilities, when asked for.
    #[serde(default)]
    pub logprobs: Option<TextLogprobs>,
}

/// The response of a non-streamed text completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextResponse {
    /// Request id.
    #[serde(default)]
    pub id: String,
    /// `text_completion`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Model id.
    #[serde(default)]
    pub model: String,
    /// The choices.
    pub choices: Vec<TextChoice>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// A model in `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Model id to put in requests.
    pub id: String,
    /// `model`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Who serves it.
    #[serde(default)]
    pub owned_by: String,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// `list`.
    #[serde(default)]
    pub object: String,
    /// The models.
    pub data: Vec<ModelEntry>,
}

/// An error body: `{"error": {"message", "type", "code"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong.
    pub message: String,
    /// `invalid_request_error`, `server_error`, `overloaded` ...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The HTTP status, as text.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

/// Maps an engine stop reason to OpenAI's `finish_reason`.
pub fn finish_reason(r: &crate::engine::StopReason) -> &'static str {
    use crate::engine::StopReason::*;
    match r {
        EndOfTurn | StopString(_) => "stop",
        MaxTokens | ContextFull => "length",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_common_clients_parse() {
        let r: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"system","content":"s"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
            "temperature":0,"stop":"x","stream":true,"frequency_penalty":0,"logprobs":true,"top_logprobs":3}"#,
        )
        .unwrap();
        assert_eq!(
            r.messages[1].content.as_ref().unwrap().text().unwrap(),
            "ab"
        );
        assert_eq!(r.stop.unwrap().list(), vec!["x"]);
        assert_eq!(r.top_logprobs, Some(3));
        let c: CompletionRequest =
            serde_json::from_str(r#"{"prompt":[1,2,3],"max_tokens":4,"logprobs":2}"#).unwrap();
        assert_eq!(c.prompt, PromptField::Tokens(vec![1, 2, 3]));
        let bad = Content::Parts(vec![ContentPart {
            kind: "image_url".into(),
            text: None,
        }]);
        assert!(bad.text().unwrap_err().contains("image_url"));
    }

    #[test]
    fn responses_from_other_servers_parse() {
        // Shapes vLLM and llama.cpp's server send (content null, extra fields).
        let r: ChatResponse = serde_json::from_str(
            r#"{"id":"x","object":"chat.completion","created":1,"model":"m","system_fingerprint":"b",
            "choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"length"}],
            "usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(r.choices[0].message.content, None);
    }
}
