//! `MasError`: invalid agent graphs, prompt files and MAS configs.

use std::path::PathBuf;

/// Errors building or configuring a multi-agent system. Per-example failures while running
/// (a prompt over the context, an empty output) are recorded in the trace instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasError {
    /// The graph is not a valid DAG of known agents.
    #[error("invalid agent graph: {0}")]
    Graph(String),
    /// An agent's template is unusable.
    #[error("agent `{agent}`: {reason}")]
    Template {
        /// The agent id.
        agent: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file's content is malformed.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A prompts file names agents the graph does not have.
    #[error("prompts file {path}: unknown agent `{key}` (agents: {known})")]
    UnknownAgent {
        /// The prompts file.
        path: PathBuf,
        /// The unknown key.
        key: String,
        /// The graph's agents, by id and by reference index.
        known: String,
    },
}
