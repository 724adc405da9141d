//! The OpenAI-compatible HTTP API, both ways: [`RemoteModel`] uses a server (vLLM, SGLang,
//! llama.cpp's server, a hosted API) as a [`crate::mas::LanguageModel`] for any role, and
//! [`serve`] puts maspo's own engine behind the same API.

pub mod client;
mod http;
pub mod load;
pub mod serve;
pub mod spec;
pub mod wire;

pub use client::{RemoteModel, RemoteStats};
pub use spec::{ModelSpec, RemoteSpec};
