//! Multi-agent systems: agent graphs, built-in topologies, seed prompts, batched execution with
//! traces and partial re-run.
//!
//! Owns everything about agents; nothing here knows datasets' files or how answers are judged
//! (answer extraction is injected through [`run::AnswerExtractor`]).

pub mod error;
pub mod graph;
pub mod lm;
pub mod prompts;
pub mod run;
pub mod seeds;
pub mod topology;
pub mod trace;
pub mod vote;

pub use error::MasError;
pub use graph::{AgentGraph, AgentKind, AgentSpec};
pub use lm::LanguageModel;
pub use prompts::PromptSet;
pub use run::{AnswerExtractor, Protocol, Rollout, RunEvent, RunSettings, Runner};
pub use topology::{build, Topology, TopologyOptions};
pub use trace::{NodeTrace, Trace};
