//! [`TaskError`]: everything that can go wrong turning a task name into examples.
//!
//! Every variant that concerns a file names the path; messages are lowercase and say how to fix
//! the problem. Judging failures are never errors (they are [`crate::judge::Verdict`]s).

use std::path::PathBuf;

/// An error loading or generating a task.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// A dataset file does not exist.
    #[error("dataset file {path} not found; {help}")]
    MissingFile {
        /// The path that was tried.
        path: PathBuf,
        /// How to fix it: the places searched for the data directory, or where to get a file
        /// that maspo does not ship.
        help: String,
    },
    /// A named benchmark file is not the file maspo knows (truncated, edited or another
    /// version): its results would not be comparable.
    #[error("dataset file {path} is not the expected file: sha256 {actual}, expected {expected} (restore it from the repository's data/ folder, or see data/README.md for its source)")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The sha256 maspo knows for it.
        expected: String,
        /// The sha256 of the file on disk.
        actual: String,
    },
    /// A dataset file exists but could not be read or decompressed.
    #[error("cannot read dataset file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O or gzip error.
        #[source]
        source: std::io::Error,
    },
    /// A line (JSONL) or position (JSON) of a dataset file is not what the loader expects.
    #[error("{path}:{line}: {reason}")]
    MalformedLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// One record of a JSON-array dataset is not what the loader expects.
    #[error("{path}: record {index}: {reason}")]
    MalformedRecord {
        /// The file.
        path: PathBuf,
        /// 0-based index of the record in the file.
        index: usize,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// A dataset file holds no examples.
    #[error("dataset file {path} holds no examples")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The task name is not known.
    #[error("unknown task `{name}` (known: {known}; or `jsonl:<path>` for a generic JSONL file, `gen:<name>[:count[:seed]]` for a generated one)")]
    UnknownTask {
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A task name is known but its parameters are not valid (`gen:arithmetic:abc`).
    #[error("task `{name}`: {reason}")]
    BadTaskSpec {
        /// The name given.
        name: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A generic dataset's field mapping cannot work for its kind.
    #[error("field mapping for {path}: {reason}")]
    BadFieldMap {
        /// The dataset file.
        path: PathBuf,
        /// What is missing, e.g. a `tests` field for a code task.
        reason: String,
    },
}
