//! Validating an [`ExecSpec`] against its [`Environment`] into a [`Plan`] every backend
//! can turn into a command line: canonical host paths, read-only paths proven to be
//! inside the workspace, the guest working directory, the final environment, argv.
//!
//! Owns: every check on caller-supplied paths and names (no `..`, no escape through a
//! symlink, no NUL). Does not own: how a backend mounts or runs the plan.

use crate::spec::{Command, Environment, ExecSpec, Mount, SandboxError};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// `HOME` inside the sandbox unless the environment sets it: the caller's home is never
/// mounted, and many tools fail without a writable home.
pub(crate) const DEFAULT_HOME: &str = "/tmp";
/// `PATH` inside the sandbox when neither the host (through the allowlist) nor the
/// environment sets one.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// A validated exec, ready for a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Canonical host path of the workspace.
    pub workspace: PathBuf,
    /// Where the workspace appears inside.
    pub guest: PathBuf,
    /// Canonical paths relative to the workspace, each existing, to mount read-only.
    pub read_only: Vec<PathBuf>,
    /// Extra mounts with canonical host paths.
    pub mounts: Vec<Mount>,
    /// Absolute working directory inside.
    pub cwd: PathBuf,
    /// The complete environment of the command.
    pub env: BTreeMap<String, String>,
    pub argv: Vec<String>,
}

pub(crate) fn plan(env: &Environment, spec: &ExecSpec) -> Result<Plan, SandboxError> {
    plan_with_host_env(env, spec, |k| std::env::var(k).ok())
}

/// [`plan`] with the host environment passed in, so tests need not mutate the process
/// environment.
pub(crate) fn plan_with_host_env(
    env: &Environment,
    spec: &ExecSpec,
    host_var: impl Fn(&str) -> Option<String>,
) -> Result<Plan, SandboxError> {
    let (workspace, guest) = workspace(spec)?;
    Ok(Plan {
        cwd: cwd(spec, &workspace, &guest)?,
        read_only: read_only(spec, &workspace, &guest)?,
        mounts: mounts(spec)?,
        argv: argv(&spec.command)?,
        env: environment(env, spec, host_var)?,
        workspace,
        guest,
    })
}

fn invalid(message: String) -> SandboxError {
    SandboxError::InvalidSpec(message)
}

/// The workspace's canonical host path and its guest path.
fn workspace(spec: &ExecSpec) -> Result<(PathBuf, PathBuf), SandboxError> {
    let workspace = spec
        .workspace
        .canonicalize()
        .map_err(|e| invalid(format!("workspace {}: {e}", spec.workspace.display())))?;
    if !workspace.is_dir() {
        return Err(invalid(format!(
            "workspace {} is not a directory",
            workspace.display()
        )));
    }
    let guest = spec.workspace_guest.clone();
    check_guest_path(&guest, "workspace_guest")?;
    if guest == Path::new("/") {
        return Err(invalid("workspace_guest must not be `/`".into()));
    }
    Ok((workspace, guest))
}

/// The absolute working directory inside: the workspace, or a directory in it.
fn cwd(spec: &ExecSpec, workspace: &Path, guest: &Path) -> Result<PathBuf, SandboxError> {
    let Some(rel) = &spec.cwd else {
        return Ok(guest.to_path_buf());
    };
    let rel = relative_to_workspace(rel, &spec.workspace, workspace, guest)
        .ok_or_else(|| invalid(format!("cwd {} is outside the workspace", rel.display())))?;
    if !workspace.join(&rel).is_dir() {
        return Err(invalid(format!(
            "cwd {} is not a directory in the workspace",
            rel.display()
        )));
    }
    Ok(guest.join(rel))
}

/// The protected paths, resolved and proven inside the workspace, without duplicates.
fn read_only(
    spec: &ExecSpec,
    workspace: &Path,
    guest: &Path,
) -> Result<Vec<PathBuf>, SandboxError> {
    let mut read_only = Vec::new();
    for p in &spec.read_only_paths {
        let rel = relative_to_workspace(p, &spec.workspace, workspace, guest).ok_or_else(|| {
            invalid(format!(
                "read-only path {} is outside the workspace",
                p.display()
            ))
        })?;
        let host = workspace.join(&rel);
        // A protected path that does not exist has no content to protect. Binding
        // something in its place would create a file in the caller's workspace.
        let Ok(real) = host.canonicalize() else {
            continue;
        };
        // Resolving symlinks: `tests -> /etc` must not mount the host's /etc.
        let Ok(real_rel) = real.strip_prefix(workspace) else {
            return Err(invalid(format!(
                "read-only path {} resolves to {}, outside the workspace",
                p.display(),
                real.display()
            )));
        };
        if !read_only.iter().any(|r: &PathBuf| r == real_rel) {
            read_only.push(real_rel.to_path_buf());
        }
    }
    Ok(read_only)
}

/// The extra mounts with canonical host paths and checked guest paths.
fn mounts(spec: &ExecSpec) -> Result<Vec<Mount>, SandboxError> {
    spec.mounts
        .iter()
        .map(|m| {
            let host = m
                .host
                .canonicalize()
                .map_err(|e| invalid(format!("mount source {}: {e}", m.host.display())))?;
            check_guest_path(&m.guest, "mount guest path")?;
            Ok(Mount {
                host,
                guest: m.guest.clone(),
                read_only: m.read_only,
            })
        })
        .collect()
}

/// The command as argv: as given, or a script under `bash -c`.
fn argv(command: &Command) -> Result<Vec<String>, SandboxError> {
    let argv = match command {
        Command::Argv(a) => {
            if a.is_empty() || a[0].is_empty() {
                return Err(invalid("empty argv".into()));
            }
            a.clone()
        }
        Command::Script(s) => vec!["bash".into(), "-c".into(), s.clone()],
    };
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid("argv contains a NUL byte".into()));
    }
    Ok(argv)
}

/// The command's whole environment: `HOME`, the allowlisted host variables, the
/// environment's, the exec's, and a default `PATH`, in rising precedence.
fn environment(
    env: &Environment,
    spec: &ExecSpec,
    host_var: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, SandboxError> {
    let mut vars = BTreeMap::new();
    vars.insert("HOME".to_string(), DEFAULT_HOME.to_string());
    for name in &env.env_allowlist {
        if let Some(v) = host_var(name) {
            vars.insert(name.clone(), v);
        }
    }
    vars.extend(env.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars.entry("PATH".to_string())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    for (k, v) in &vars {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!("invalid environment variable {k:?}")));
        }
    }
    Ok(vars)
}

/// A path the caller names relative to the workspace: relative paths as they are,
/// absolute ones when under the workspace's host or guest path. Only plain components
/// (no `..`, no `.` tricks) are accepted.
fn relative_to_workspace(
    p: &Path,
    given: &Path,
    canonical: &Path,
    guest: &Path,
) -> Option<PathBuf> {
    let rel = if p.is_absolute() {
        p.strip_prefix(guest)
            .or_else(|_| p.strip_prefix(canonical))
            .or_else(|_| p.strip_prefix(given))
            .ok()?
    } else {
        p
    };
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn check_guest_path(p: &Path, what: &str) -> Result<(), SandboxError> {
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} {} must be absolute without `..`",
            p.display()
        )));
    }
    if p.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} contains a NUL byte"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_in(dir: &Path) -> ExecSpec {
        ExecSpec::new(Command::Argv(vec!["true".into()]), dir)
    }

    #[test]
    fn environment_is_allowlist_then_explicit_then_per_exec() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Environment {
            env_allowlist: vec!["PATH".into(), "KEEP".into(), "ABSENT".into()],
            ..Environment::default()
        };
        env.env.insert("A".into(), "env".into());
        env.env.insert("KEEP".into(), "explicit".into());
        let mut spec = spec_in(dir.path());
        spec.env.insert("A".into(), "spec".into());
        let host = |k: &str| match k {
            "PATH" => Some("/usr/bin".to_string()),
            "KEEP" => Some("host".to_string()),
            "SECRET" => Some("leak".to_string()),
            _ => None,
        };
        let p = plan_with_host_env(&env, &spec, host).unwrap();
        assert_eq!(p.env.get("PATH").map(String::as_str), Some("/usr/bin"));
        assert_eq!(p.env.get("KEEP").map(String::as_str), Some("explicit"));
        assert_eq!(p.env.get("A").map(String::as_str), Some("spec"));
        assert_eq!(p.env.get("HOME").map(String::as_str), Some(DEFAULT_HOME));
        assert!(!p.env.contains_key("SECRET"));
        assert!(!p.env.contains_key("ABSENT"));
    }

    #[test]
    fn cwd_with_parent_components_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec_in(dir.path());
        spec.cwd = Some("../x".into());
        let e = plan_with_host_env(&Environment::default(), &spec, |_| None).unwrap_err();
        assert!(matches!(e, SandboxError::InvalidSpec(_)), "{e}");
        spec.cwd = Some("missing".into());
        let e = plan_with_host_env(&Environment::default(), &spec, |_| None).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn read_only_symlink_out_of_the_workspace_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("tests")).unwrap();
        let mut spec = spec_in(dir.path());
        spec.read_only_paths = vec!["tests".into()];
        let e = plan_with_host_env(&Environment::default(), &spec, |_| None).unwrap_err();
        assert!(e.to_string().contains("outside the workspace"), "{e}");
    }

    #[test]
    fn read_only_paths_are_canonical_and_missing_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        let mut spec = spec_in(dir.path());
        spec.read_only_paths = vec!["./tests".into(), "missing.py".into(), "/repo/tests".into()];
        let p = plan_with_host_env(&Environment::default(), &spec, |_| None).unwrap();
        assert_eq!(p.read_only, vec![PathBuf::from("tests")]);
    }

    #[test]
    fn empty_argv_and_missing_workspace_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ExecSpec::new(Command::Argv(vec![]), dir.path());
        assert!(plan_with_host_env(&Environment::default(), &spec, |_| None).is_err());
        let spec = spec_in(&dir.path().join("nope"));
        assert!(plan_with_host_env(&Environment::default(), &spec, |_| None).is_err());
    }

    #[test]
    fn script_runs_under_bash() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ExecSpec::new(Command::Script("echo hi".into()), dir.path());
        let p = plan_with_host_env(&Environment::default(), &spec, |_| None).unwrap();
        assert_eq!(p.argv, vec!["bash", "-c", "echo hi"]);
        assert_eq!(p.env.get("PATH").map(String::as_str), Some(DEFAULT_PATH));
    }
}
