//! Shared test setup: temporary repositories, hosts with a persistent component cache,
//! the test guests, and a plain-process `Sandbox` test double (the real bubblewrap
//! backend is tested in `bash.rs` where available).

use ssr_sandbox::{ExecOutcome, ExecSpec, LimitHit, Sandbox, SandboxError};
use ssr_toolhost::policy::{RepoAccess, ToolGrantSpec};
use ssr_toolhost::{Episode, HostConfig, Policy, Role, ToolHost, ToolOrigin, ToolReply};
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A cache shared by the tests of this binary, so each component compiles once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("toolhost-cache")
}

pub fn host_with(policy: Policy) -> ToolHost {
    ToolHost::new(HostConfig {
        policy,
        tool_dirs: Vec::new(),
        cache_dir: Some(cache_dir()),
        standard_tools: true,
    })
    .expect("host starts")
}

pub fn host() -> ToolHost {
    host_with(Policy::default())
}

/// A compiled test guest or custom tool from the tools-wasm build.
pub fn guest_path(crate_file: &str) -> PathBuf {
    ssr_toolhost::tools_wasm_dir().join(format!("{crate_file}.wasm"))
}

/// Loads a test guest under `name` asking for `asked`.
pub fn load_guest(host: &mut ToolHost, crate_file: &str, asked: ToolGrantSpec) {
    let path = guest_path(crate_file);
    let bytes = std::fs::read(&path).expect("test guest built by build.rs");
    host.load(
        &bytes,
        &path,
        asked,
        None,
        ToolOrigin::Custom {
            manifest: path.clone(),
        },
        None,
    )
    .expect("test guest loads");
}

pub fn rw() -> ToolGrantSpec {
    ToolGrantSpec {
        repo: RepoAccess::Rw,
        state: true,
        ..Default::default()
    }
}

/// A repository in a temporary directory, plus a state directory beside it.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
}

impl Repo {
    pub fn new(files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Repo {
            dir,
            state: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    pub fn episode(&self, role: Role) -> Episode {
        let mut e = Episode::new(role, self.path());
        e.state_dir = Some(self.state.path().to_path_buf());
        e
    }
}

pub fn ok(reply: &ToolReply) -> &str {
    match &reply.result {
        Ok(t) => t,
        Err(e) => panic!("expected success, got {e}"),
    }
}

pub fn err_kind(reply: &ToolReply) -> &'static str {
    match &reply.result {
        Ok(t) => panic!("expected an error, got: {t}"),
        Err(e) => e.kind(),
    }
}

/// Runs commands as plain child processes (`bash -c`) in the workspace: a test double
/// of the real sandbox with the same timeout and output contract, no isolation.
pub struct ProcessSandbox;

impl Sandbox for ProcessSandbox {
    fn name(&self) -> &'static str {
        "process-test-double"
    }

    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError> {
        let script = match &spec.command {
            ssr_sandbox::Command::Script(s) => s.clone(),
            ssr_sandbox::Command::Argv(a) => a.join(" "),
        };
        let started = Instant::now();
        let mut child = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&spec.workspace)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(SandboxError::Spawn)?;
        let cap = spec.limits.output_bytes;
        let reader = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 65536];
                let mut dropped = false;
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    dropped |= n > room;
                }
                (kept, dropped)
            })
        };
        let out_t = reader(Box::new(child.stdout.take().unwrap()));
        let err_t = reader(Box::new(child.stderr.take().unwrap()));
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if started.elapsed() >= spec.limits.timeout {
                // The whole process group, or a `sleep` child keeps the pipes open.
                // SAFETY: plain kill(2) on the group this double created.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                timed_out = true;
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let (o, od) = out_t.join().unwrap();
        let (e, ed) = err_t.join().unwrap();
        Ok(ExecOutcome {
            exit_code: if timed_out {
                None
            } else {
                status.and_then(|s| s.code())
            },
            signal: None,
            timed_out,
            truncated: od || ed,
            limit_hit: if timed_out {
                Some(LimitHit::Timeout)
            } else if od || ed {
                Some(LimitHit::Output)
            } else {
                None
            },
            stdout: String::from_utf8_lossy(&o).into_owned(),
            stderr: String::from_utf8_lossy(&e).into_owned(),
            wall_ms: started.elapsed().as_millis() as u64,
            start: ssr_sandbox::StartPath::Cold,
        })
    }
}
