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
                        let path: PathBuf = catalog.resolve(id, observer)?;
                        let s = settings.clone();
                        (
                            format!("file:{}", path.display()),
                            Box::new(move || {
                                Engine::load(&path, s).map(|e| Backend::Local(Box::new(e)))
                            }),
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
