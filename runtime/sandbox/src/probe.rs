//! What this host offers a sandbox: where a program is, and which bubblewrap is
//! installed with which features.
//!
//! Owns: [`BwrapInfo`], [`find_program`] and reading bubblewrap's version and features.
//! Does not own: the trial run that proves bubblewrap works here (`bwrap`, which owns
//! the command line it tries) or cgroups (`cgroup`). A leaf: it imports nothing of this
//! crate, so every backend can use it.

use std::path::PathBuf;

/// What was found about the host's bubblewrap.
#[derive(Clone, Debug)]
pub struct BwrapInfo {
    pub path: PathBuf,
    pub version: String,
    /// `--size` for tmpfs (bubblewrap 0.5+).
    pub tmpfs_size: bool,
    /// `--disable-userns` (bubblewrap 0.8+).
    pub disable_userns: bool,
}

/// The first executable file called `name` on `PATH`, then in `/usr/bin` and
/// `/usr/local/bin` (a caller with an empty `PATH` still finds system programs).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Finds `bwrap` and reads its version and features from `--version` and `--help`
/// (both run with a cleared environment).
pub(crate) fn read_bwrap() -> Result<BwrapInfo, String> {
    let path =
        find_program("bwrap").ok_or("`bwrap` not found on PATH (Debian package `bubblewrap`)")?;
    let run = |flag: &str| {
        std::process::Command::new(&path)
            .arg(flag)
            .env_clear()
            .output()
            .map_err(|e| format!("running {} {flag}: {e}", path.display()))
    };
    let version = String::from_utf8_lossy(&run("--version")?.stdout)
        .trim()
        .trim_start_matches("bubblewrap")
        .trim()
        .to_string();
    let help = run("--help")?;
    let help = String::from_utf8_lossy(&help.stdout);
    Ok(BwrapInfo {
        tmpfs_size: help.contains("--size"),
        disable_userns: help.contains("--disable-userns"),
        path,
        version,
    })
}
