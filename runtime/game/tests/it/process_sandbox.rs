//! A test double of the `Sandbox` trait: a plain process in its own process group,
//! with the workspace as its working directory, the environment cleared to the
//! spec's variables, stdin closed, bounded output and a wall-clock timeout that
//! kills the whole group. No isolation at all: it exists so the game's logic can be
//! tested where the bubblewrap backend is not wanted (it is not a substitute for it).
//! Mounts must be identity mounts (guest path = host path), which is how the game
//! mounts its run directories.

use ssr_sandbox::{Command, ExecOutcome, ExecSpec, LimitHit, Sandbox, SandboxError};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct ProcessSandbox;

fn drain(
    mut r: impl Read + Send + 'static,
    cap: usize,
) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut truncated = false;
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    truncated |= n > room;
                }
            }
        }
        (kept, truncated)
    })
}

impl Sandbox for ProcessSandbox {
    fn name(&self) -> &'static str {
        "process-test-double"
    }

    fn exec(&self, spec: &ExecSpec) -> Result<ExecOutcome, SandboxError> {
        for m in &spec.mounts {
            if m.host != m.guest {
                return Err(SandboxError::InvalidSpec(format!(
                    "the test double supports identity mounts only: {}",
                    m.host.display()
                )));
            }
        }
        let mut cmd = match &spec.command {
            Command::Argv(a) if !a.is_empty() => {
                let mut c = std::process::Command::new(&a[0]);
                c.args(&a[1..]);
                c
            }
            Command::Argv(_) => return Err(SandboxError::InvalidSpec("empty argv".into())),
            Command::Script(s) => {
                let mut c = std::process::Command::new("bash");
                c.arg("-c").arg(s);
                c
            }
        };
        let cwd = match &spec.cwd {
            Some(c) => spec.workspace.join(c),
            None => spec.workspace.clone(),
        };
        cmd.current_dir(cwd)
            .env_clear()
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
        let pid = child.id() as i32;
        let out = drain(
            child.stdout.take().expect("piped"),
            spec.limits.output_bytes,
        );
        let err = drain(
            child.stderr.take().expect("piped"),
            spec.limits.output_bytes,
        );
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if start.elapsed() >= spec.limits.timeout {
                timed_out = true;
                // SAFETY: kill(2) with a negative pid signals the child's own process
                // group (created by process_group(0) above); no memory is involved.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // Also end anything the command left running in its group (a background
        // child holding the pipes open would otherwise block the drains).
        // SAFETY: as above, signals only the command's own process group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let (stdout, t1) = out.join().unwrap_or_default();
        let (stderr, t2) = err.join().unwrap_or_default();
        let truncated = t1 || t2;
        Ok(ExecOutcome {
            exit_code: status.code(),
            signal: status.signal(),
            timed_out,
            truncated,
            limit_hit: if timed_out {
                Some(LimitHit::Timeout)
            } else if truncated {
                Some(LimitHit::Output)
            } else {
                None
            },
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            wall_ms: start.elapsed().as_millis() as u64,
            start: ssr_sandbox::StartPath::Cold,
        })
    }
}
