//! What callers send to the engine and what they get back.

use super::chat_template::Message;
use super::sampling::SamplingParams;
use serde::{Deserialize, Serialize};

/// The prompt of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Chat messages, rendered with the model's chat template plus the generation prompt.
    /// Message contents are tokenized as plain text: a `<|im_end|>` typed by a user or written
    /// by another agent cannot end a turn.
    Chat(Vec<Message>),
    /// Raw text, tokenized with special-token text recognized.
    Text(String),
    /// Token ids, used verbatim.
    Tokens(Vec<u32>),
}

/// One generation request; every field is its own (nothing is shared with other requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Most new tokens to generate.
    pub max_new_tokens: usize,
    /// Sampling parameters, including this request's seed.
    pub sampling: SamplingParams,
    /// Strings that end generation; the text is cut before the first one.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Keep generating through end-of-turn tokens until `max_new_tokens` (benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Record each generated token's log-probability and this many most likely alternatives
    /// (`Some(0)`: the chosen token's only). Log-probabilities are the model's, before
    /// temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<usize>,
    /// Renders a chat prompt with the template's `enable_thinking` set to this (`None`: the
    /// engine's `thinking` setting); the OpenAI server's `chat_template_kwargs.enable_thinking`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<bool>,
    /// The start of the reply, written for the model: appended after the prompt (for a chat
    /// prompt, after the generation prompt, as the beginning of the assistant turn) and
    /// tokenized as plain text; generation continues it. The completion's text is the
    /// continuation only, without the pre-filled part. An OpenAI-compatible server gets it as
    /// a final assistant message with `continue_final_message` (see docs/serve.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<String>,
}

impl GenRequest {
    /// A greedy chat request.
    pub fn chat(messages: Vec<Message>, max_new_tokens: usize) -> Self {
        Self {
            prompt: Prompt::Chat(messages),
            max_new_tokens,
            sampling: SamplingParams::greedy(),
            stop: Vec::new(),
            ignore_eos: false,
            logprobs: None,
            thinking: None,
            prefill: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model emitted an end-of-turn / end-of-text token.
    EndOfTurn,
    /// A stop string appeared (the string is given).
    StopString(String),
    /// `max_new_tokens` was reached.
    MaxTokens,
    /// The context window is full.
    ContextFull,
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Generated text (without the end-of-turn token, cut before a stop string).
    pub text: String,
    /// Generated token ids (including the end-of-turn token when that is why it stopped).
    pub token_ids: Vec<u32>,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Prompt tokens whose KV came from the prefix cache (not recomputed).
    #[serde(default)]
    pub reused_prompt_tokens: usize,
    /// Answered from the persistent completion cache (nothing computed).
    #[serde(default)]
    pub from_cache: bool,
    /// Per generated token, when the request asked for log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Generated tokens as a remote server counted them (it sends no token ids back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_tokens: Option<usize>,
}

impl Completion {
    /// Tokens generated: the ids' count, or a remote server's count.
    pub fn generated_tokens(&self) -> usize {
        self.remote_tokens.unwrap_or(self.token_ids.len())
    }
}

/// The log-probability of one generated token and its most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token chosen.
    pub id: u32,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The most likely tokens at this position, most likely first: `(id, logprob)`.
    #[serde(default)]
    pub top: Vec<(u32, f32)>,
}
