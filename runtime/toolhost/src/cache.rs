//! The on-disk cache of compiled components, keyed by the component's content hash and
//! the engine's compatibility key.
//!
//! Loading a serialized component is `unsafe` (wasmtime trusts the bytes as machine
//! code), so an entry is never trusted as found: next to each `<key>.cwasm` lies
//! `<key>.sha256`, the SHA-256 of the serialized bytes written by this host, checked
//! before `deserialize`. A missing, changed or corrupt entry (or one wasmtime refuses)
//! is recompiled and rewritten. Writes go to a temporary file renamed into place, so a
//! concurrent reader sees the old entry or the new one, never half of one.

use crate::error::ToolHostError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained, for reports and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a verified cache entry.
    Hit,
    /// Compiled (no entry) and stored.
    Compiled,
    /// An entry existed but failed verification or loading; recompiled and replaced.
    Replaced,
    /// No cache directory: compiled in memory only.
    Uncached,
}

#[derive(Clone, Debug)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    /// A cache in `dir` (created when missing), or none.
    pub fn new(dir: Option<PathBuf>, engine_key: String) -> Result<Self, ToolHostError> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(|source| ToolHostError::Cache {
                path: d.clone(),
                source,
            })?;
        }
        Ok(ComponentCache { dir, engine_key })
    }

    /// The default location: `$SSR_CACHE_DIR/components`, else
    /// `$XDG_CACHE_HOME/ssr/components`, else `~/.cache/ssr/components`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("SSR_CACHE_DIR") {
            return Some(PathBuf::from(d).join("components"));
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(d).join("ssr/components"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ssr/components"))
    }

    /// Paths of the entry for `wasm` (artifact, checksum).
    pub fn entry_paths(&self, wasm: &[u8]) -> Option<(PathBuf, PathBuf)> {
        let dir = self.dir.as_ref()?;
        let key = format!("{}-{}", hex::encode(Sha256::digest(wasm)), self.engine_key);
        Some((
            dir.join(format!("{key}.cwasm")),
            dir.join(format!("{key}.sha256")),
        ))
    }

    /// Loads `wasm` (the component's bytes; `origin` names it in errors) compiled for
    /// `engine`, from the cache when a verified entry exists.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        origin: &Path,
    ) -> Result<(Component, CacheOutcome), ToolHostError> {
        let Some((artifact, checksum)) = self.entry_paths(wasm) else {
            return Ok((compile(engine, wasm, origin)?, CacheOutcome::Uncached));
        };
        let existed = artifact.exists() || checksum.exists();
        if existed && let Some(component) = load_verified(engine, &artifact, &checksum) {
            return Ok((component, CacheOutcome::Hit));
        }
        let component = compile(engine, wasm, origin)?;
        let serialized = component
            .serialize()
            .map_err(|e| ToolHostError::Engine(format!("serialize {}: {e:#}", origin.display())))?;
        let sum = hex::encode(Sha256::digest(&serialized));
        // Storing is best effort: a failed write (full disk, a concurrent writer of the
        // same entry) costs a recompile next time, never this load.
        if write_atomic(&artifact, &serialized).is_ok() {
            let _ = write_atomic(&checksum, sum.as_bytes());
        }
        let outcome = if existed {
            CacheOutcome::Replaced
        } else {
            CacheOutcome::Compiled
        };
        Ok((component, outcome))
    }
}

fn compile(engine: &Engine, wasm: &[u8], origin: &Path) -> Result<Component, ToolHostError> {
    Component::new(engine, wasm).map_err(|e| ToolHostError::InvalidComponent {
        path: origin.to_path_buf(),
        reason: format!("{e:#}"),
    })
}

/// The cached component when its checksum matches and wasmtime accepts it.
fn load_verified(engine: &Engine, artifact: &Path, checksum: &Path) -> Option<Component> {
    let expected = std::fs::read_to_string(checksum).ok()?;
    let bytes = std::fs::read(artifact).ok()?;
    if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
        return None;
    }
    // SAFETY: `bytes` are exactly what `Component::serialize` produced in this host
    // (the SHA-256 written next to them at the time matches), for an engine with the
    // same compatibility key (part of the file name); wasmtime additionally checks its
    // own header and version before using them.
    unsafe { Component::deserialize(engine, &bytes) }.ok()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ToolHostError> {
    // Unique per process and per write: concurrent loads in one process must not share
    // a temporary file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&temp);
            ToolHostError::Cache {
                path: path.to_path_buf(),
                source,
            }
        })
}
