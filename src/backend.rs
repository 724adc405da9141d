//! Loading the models of a run's roles (agents, mutator, evaluator, judge): each is run
//! in-process by the [`Engine`] or served by a remote OpenAI-compatible endpoint
//! ([`RemoteModel`]); roles naming the same model share one instance.
//!
//! The one place `maspo eval` and `maspo optimize` turn [`ModelSpec`]s into
//! [`LanguageModel`]s.

use crate::catalog::{Catalog, CatalogError, FetchObserver};
use crate::engine::{Engine, EngineError, EngineSettings};
use crate::mas::LanguageModel;
use crate::openai::{ModelSpec, RemoteModel};
use std::path::{Path, PathBuf};

/// Where an in-process model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalSource {
    /// `synthetic:SHAPE[:SEED]`: seeded random weights of a real shape, built in memory.
    Synthetic {
        /// Shape name (see `maspo models list` / [`crate::engine::model::synthetic::SHAPES`]).
        shape: String,
        /// Weight seed (default 0).
        seed: u64,
    },
    /// A model file (a catalog id resolved, fetched if needed).
    File(PathBuf),
}

impl LocalSource {
    /// Resolves an in-process model id: `synthetic:SHAPE[:SEED]`, a catalog id or a path.
    pub fn resolve(
        id: &str,
        catalog: &Catalog,
        observer: &mut dyn FetchObserver,
    ) -> Result<Self, BackendError> {
        if let Some(rest) = id.strip_prefix("synthetic:") {
            let (shape, seed) = match rest.split_once(':') {
                Some((shape, seed)) => (
                    shape,
                    seed.parse().map_err(|_| BackendError::Synthetic {
                        id: id.to_string(),
                        reason: format!("seed `{seed}` is not a non-negative integer"),
                    })?,
                ),
                None => (rest, 0),
            };
            crate::engine::model::synthetic::Shape::named(shape).map_err(|e| {
                BackendError::Synthetic {
                    id: id.to_string(),
                    reason: e.to_string(),
                }
            })?;
            return Ok(Self::Synthetic {
                shape: shape.to_string(),
                seed,
            });
        }
        Ok(Self::File(catalog.resolve(id, observer)?))
    }

    /// What identifies the model (roles naming the same one share an instance).
    pub fn key(&self) -> String {
        match self {
            Self::Synthetic { shape, seed } => format!("synthetic:{shape}:{seed}"),
            Self::File(p) => format!("file:{}", p.display()),
        }
    }

    /// Loads it.
    pub fn load(&self, settings: EngineSettings) -> Result<Engine, EngineError> {
        match self {
            Self::Synthetic { shape, seed } => Engine::synthetic(shape, *seed, settings),
            Self::File(p) => Engine::load(p, settings),
        }
    }
}

/// One loaded model.
pub enum Backend {
    /// Run in-process.
    Local(Box<Engine>),
    /// Served remotely.
    Remote(Box<RemoteModel>),
}

impl Backend {
    /// As the MAS runtime and optimizer see it.
    pub fn lm(&self) -> &dyn LanguageModel {
        match self {
            Backend::Local(e) => e.as_ref(),
            Backend::Remote(r) => r.as_ref(),
        }
    }

    /// The engine, when in-process.
    pub fn engine(&self) -> Option<&Engine> {
        match self {
            Backend::Local(e) => Some(e),
            Backend::Remote(_) => None,
        }
    }

    /// The remote model, when remote.
    pub fn remote(&self) -> Option<&RemoteModel> {
        match self {
            Backend::Remote(r) => Some(r),
            Backend::Local(_) => None,
        }
    }
}

/// Why a role's model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Resolving or fetching a catalog model failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A `synthetic:` model id names no known shape or has a bad seed.
    #[error("model `{id}`: {reason} (a synthetic model is `synthetic:SHAPE[:SEED]`)")]
    Synthetic {
        /// The id as given.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Loading a model file or reaching an endpoint failed.
    #[error("{role} model: {source}")]
    Load {
        /// The role.
        role: String,
        /// The error.
        #[source]
        source: EngineError,
    },
}

/// The loaded models of named roles.
pub struct Backends {
    loaded: Vec<(String, Backend)>,
    roles: Vec<(String, usize)>,
}

impl Backends {
    /// Loads each role's model once: local models by resolved file, remote ones by endpoint
    /// and model. `cache_dir` is the completion cache of remote calls (in-process engines take
    /// theirs from `settings`).
    pub fn load(
        roles: &[(&str, &ModelSpec)],
        catalog: &Catalog,
        observer: &mut dyn FetchObserver,
        settings: &EngineSettings,
        cache_dir: Option<&Path>,
    ) -> Result<Self, BackendError> {
        let mut loaded: Vec<(String, Backend)> = Vec::new();
        let mut out = Vec::new();
        for (role, spec) in roles {
            let (key, make): (String, Box<dyn FnOnce() -> Result<Backend, EngineError>>) =
                match (spec.local(), spec.remote()) {
                    (Some(id), _) => {
                        let source = LocalSource::resolve(id, catalog, observer)?;
                        let s = settings.clone();
                        (
                            source.key(),
                            Box::new(move || source.load(s).map(|e| Backend::Local(Box::new(e)))),
                        )
                    }
                    (None, Some(r)) => {
                        let cache = cache_dir.map(Path::to_path_buf);
                        (
                            format!(
                                "remote:{}#{}",
                                r.base_url(),
                                r.model.clone().unwrap_or_default()
                            ),
                            Box::new(move || {
                                RemoteModel::connect(r, cache).map(|m| Backend::Remote(Box::new(m)))
                            }),
                        )
                    }
                    (None, None) => unreachable!("a model spec is local or remote"),
                };
            let idx = match loaded.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let b = make().map_err(|source| BackendError::Load {
                        role: role.to_string(),
                        source,
                    })?;
                    loaded.push((key, b));
                    loaded.len() - 1
                }
            };
            out.push((role.to_string(), idx));
        }
        Ok(Self { loaded, roles: out })
    }

    /// The model of role number `i` (in the order given to [`Backends::load`]).
    pub fn role(&self, i: usize) -> &Backend {
        &self.loaded[self.roles[i].1].1
    }

    /// Every distinct in-process engine.
    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.loaded.iter().filter_map(|(_, b)| b.engine())
    }

    /// Every distinct remote model.
    pub fn remotes(&self) -> impl Iterator<Item = &RemoteModel> {
        self.loaded.iter().filter_map(|(_, b)| b.remote())
    }
}
