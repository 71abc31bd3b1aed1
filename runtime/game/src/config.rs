//! Settings of the game's checks and runs: every **[decision]** default of
//! `SSR_SPEC.md` sections 3 to 6 is a field here.
//!
//! Does not own: sandbox backends (`ssr-sandbox`) or reward settings (`reward`).

use serde::{Deserialize, Serialize};
use ssr_sandbox::{Limits, Mount};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a test run is executed: extra mounts (toolchains), environment, limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEnv {
    /// Extra read-only mounts, for example a Python prefix or a Rust sysroot that
    /// the minimal rootfs does not show.
    pub mounts: Vec<Mount>,
    /// Variables set for every run (`PATH`, `HOME`, ...).
    pub env: BTreeMap<String, String>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Bytes of test log kept per stream; the rest is dropped (and the run noted
    /// as truncated).
    pub output_bytes: usize,
    /// A cargo project's prebuilt build caches (`build_cache`): every test run of that
    /// repository builds on a private layer over the full one, solver episodes over
    /// the dependency one. `None`: every run builds from nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_cache: Option<crate::build_cache::BuildCaches>,
}

impl Default for RunEnv {
    fn default() -> Self {
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        env.insert("HOME".into(), "/tmp".into());
        env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
        env.insert("CARGO_TERM_COLOR".into(), "never".into());
        env.insert("CARGO_HOME".into(), "/tmp/.cargo-home".into());
        RunEnv {
            mounts: Vec::new(),
            env,
            memory_bytes: Some(4 << 30),
            pids: Some(1024),
            output_bytes: 4 << 20,
            build_cache: None,
        }
    }
}

impl RunEnv {
    /// A run environment that shows the host's `python3` prefix and Rust sysroot
    /// (read-only, at their host paths) and puts them first on `PATH`. Toolchains
    /// that are not installed are left out.
    pub fn host_toolchains() -> RunEnv {
        let mut env = RunEnv::default();
        let mut path = Vec::new();
        let probe = |prog: &str, args: &[&str]| -> Option<PathBuf> {
            let out = std::process::Command::new(prog).args(args).output().ok()?;
            if !out.status.success() {
                return None;
            }
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            p.is_dir().then_some(p)
        };
        let roots = [
            probe("rustc", &["--print", "sysroot"]),
            probe("python3", &["-c", "import sys; print(sys.prefix)"]),
        ];
        for root in roots.into_iter().flatten() {
            path.push(root.join("bin").display().to_string());
            if !is_system_dir(&root) {
                env.mounts.push(Mount {
                    host: root.clone(),
                    guest: root,
                    read_only: true,
                });
            }
        }
        path.push("/usr/local/bin:/usr/bin:/bin".into());
        env.env.insert("PATH".into(), path.join(":"));
        env
    }
}

impl RunEnv {
    /// This environment plus, for a cargo project at `repo`, its crates.io dependencies
    /// vendored into the host cache and mounted read-only with the configuration that
    /// makes cargo use them offline (`vendor`), and its build caches, prebuilt once in
    /// the bubblewrap sandbox (`build_cache`); unchanged for any other project.
    pub fn with_cargo_deps(mut self, repo: &Path) -> Result<RunEnv, crate::vendor::VendorError> {
        if let Some(v) = crate::vendor::vendor_repo(repo, &crate::vendor::vendor_cache_dir())? {
            self.mounts.extend(v.mounts());
        }
        self.build_cache = self.prebuilt_caches(repo);
        Ok(self)
    }

    /// The build caches of `repo` for runs in this environment. A cache only saves
    /// time (every run builds what it lacks), so a cache that cannot be made is
    /// reported and done without.
    fn prebuilt_caches(&self, repo: &Path) -> Option<crate::build_cache::BuildCaches> {
        if !repo.join("Cargo.toml").is_file() {
            return None;
        }
        let made = ssr_sandbox::default_sandbox(ssr_sandbox::Environment::default())
            .map_err(|e| e.to_string())
            .and_then(|sandbox| {
                crate::build_cache::prepare(
                    sandbox.as_ref(),
                    repo,
                    self,
                    &crate::build_cache::build_cache_dir(),
                    true,
                )
                .map_err(|e| e.to_string())
            });
        made.unwrap_or_else(|e| {
            eprintln!("ssr: no build cache for {}: {e}", repo.display());
            None
        })
    }
}

fn is_system_dir(p: &Path) -> bool {
    ["/usr", "/bin", "/lib"].iter().any(|s| p.starts_with(s))
}

/// Settings of the verifier (`SSR_SPEC.md` section 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyConfig {
    /// Check 3: at least this many tests pass on the original code.
    pub min_passing_tests: usize,
    /// Check 3: every parsed test must pass on the original code (else only the
    /// passing ones form `P`).
    pub require_all_original_pass: bool,
    /// Check 3: how many times the original is run; any status change is flaky.
    pub original_runs: usize,
    /// Check 4: the bug changes at least this many code files.
    pub min_changed_files: usize,
    /// Check 5: at least this many tests of `P` fail or vanish with the bug.
    pub min_failing_tests: usize,
    /// Check 5: at least one test of `P` must still pass with the bug (rejects bugs
    /// that break the import or the build).
    pub require_some_still_passing: bool,
    /// The test script must finish within this on the original code (seconds).
    pub soft_timeout_secs: f64,
    /// Any test-script run is killed after this (seconds).
    pub hard_timeout_secs: f64,
    /// The parser is killed after this (seconds).
    pub parser_timeout_secs: f64,
    /// Cross-check the injector's parser with the built-in parsers.
    pub trusted_parsers: bool,
    /// Run independent runs (the original runs; checks 5 to 7) concurrently.
    pub parallel: bool,
    /// A finding of the patch scan (`scan`: runner internals, exits, builtins...)
    /// rejects: the attempt is tampered in `evaluate`, the artifact rejected in
    /// `verify`. Off: findings are notes only.
    #[serde(default)]
    pub reject_tampering_findings: bool,
    /// Load the trusted reporter and its canaries into every pytest run
    /// (`reporter`). Off only to measure what they cost (`ssr bench verify`).
    #[serde(default = "yes")]
    pub trusted_reporter: bool,
    pub run_env: RunEnv,
    /// Where temporary workspaces and run directories are made (`None`: the
    /// system's temporary directory). Everything made there is removed when done.
    pub scratch_dir: Option<PathBuf>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            min_passing_tests: 5,
            require_all_original_pass: true,
            original_runs: 2,
            min_changed_files: 1,
            min_failing_tests: 1,
            require_some_still_passing: true,
            soft_timeout_secs: 90.0,
            hard_timeout_secs: 180.0,
            parser_timeout_secs: 30.0,
            trusted_parsers: true,
            parallel: true,
            reject_tampering_findings: false,
            trusted_reporter: true,
            run_env: RunEnv::default(),
            scratch_dir: None,
        }
    }
}

fn yes() -> bool {
    true
}

impl VerifyConfig {
    /// Sandbox limits of one test-script run.
    pub fn script_limits(&self) -> Limits {
        self.limits(self.hard_timeout_secs)
    }

    /// Sandbox limits of one parser run.
    pub fn parser_limits(&self) -> Limits {
        self.limits(self.parser_timeout_secs)
    }

    /// A new temporary directory under [`VerifyConfig::scratch_dir`].
    pub fn temp_dir(&self, prefix: &str) -> std::io::Result<tempfile::TempDir> {
        let mut b = tempfile::Builder::new();
        b.prefix(prefix);
        match &self.scratch_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                b.tempdir_in(d)
            }
            None => b.tempdir(),
        }
    }

    fn limits(&self, secs: f64) -> Limits {
        Limits {
            timeout: Duration::from_secs_f64(secs.max(0.001)),
            idle_timeout: None,
            memory_bytes: self.run_env.memory_bytes,
            pids: self.run_env.pids,
            output_bytes: self.run_env.output_bytes,
            file_size_bytes: Some(1 << 30),
            cancel: Default::default(),
        }
    }
}

/// Settings of the solver episode (`SSR_SPEC.md` section 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeConfig {
    /// Globs (relative to the repository root, gitignore-like `**`) of test
    /// infrastructure made read-only for the solver, besides the oracle files
    /// (default: [`crate::protected::DEFAULT_PROTECTED_GLOBS`]). The evaluator drops
    /// solver-patch sections touching the same set.
    pub protected_globs: Vec<String>,
    /// Build leftovers removed from the buggy workspace (directory or file names).
    pub leftover_globs: Vec<String>,
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        EpisodeConfig {
            protected_globs: crate::protected::default_globs(),
            leftover_globs: [
                "**/__pycache__",
                "**/*.pyc",
                "**/target",
                "**/build",
                "**/*.egg-info",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}
