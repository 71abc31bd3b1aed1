//! Calling a loaded tool: the one public entry [`ToolHost::call`], its
//! [`CallOptions`], and turning what the store answered into a [`ToolReply`] or a
//! typed error.
//!
//! Owns: the order of a call (permit, grant look-up, setup, placement, run, reply) and
//! the profile's caller-side fields. Does not own: loading (`registry`), the grant
//! (`tool_grant`), the WASI context (`call_setup`), where the call runs (`placement`) or
//! how the store runs it (`call`).

use crate::call::{self, Answer, CallProfile, Failure, Invocation};
use crate::call_setup::call_setup;
use crate::episode::{Episode, ToolReply};
use crate::error::ToolHostError;
use crate::placement::{PlacementFacts, placement};
use crate::registry::ToolHost;
use std::time::{Duration, Instant};

/// How a call is made. `CallOptions::default()` suits a plain thread.
#[derive(Debug, Default)]
pub struct CallOptions<'a> {
    /// The calling thread may block and drives no async tasks: a plain thread, or a
    /// `tokio::task::spawn_blocking` closure (which the host cannot tell from an async
    /// worker, and would otherwise hand the call to a worker thread). A standard tool
    /// then runs on this thread even inside a tokio runtime. Set on a thread that
    /// drives async tasks, the call fails with a trap error (no panic).
    pub blocking_thread: bool,
    /// Where the call's time went, filled as far as the call got (zero phases when it
    /// failed before running), CPU times of the threads involved included (two system
    /// calls per thread more). `None`: not measured.
    pub profile: Option<&'a mut CallProfile>,
}

impl CallOptions<'_> {
    /// Options for a thread that may block (see [`CallOptions::blocking_thread`]).
    pub fn blocking_thread() -> CallOptions<'static> {
        CallOptions {
            blocking_thread: true,
            profile: None,
        }
    }
}

impl<'a> CallOptions<'a> {
    /// These options, also filling `profile`.
    pub fn profiled(self, profile: &'a mut CallProfile) -> CallOptions<'a> {
        CallOptions {
            profile: Some(profile),
            ..self
        }
    }
}

/// What `call` passes its one private step.
#[derive(Clone, Copy)]
struct CallHow {
    blocking_thread: bool,
    measure_cpu: bool,
}

impl ToolHost {
    /// Calls `name` with JSON `arguments` for `episode`. Waits for a permit first when
    /// the host already runs its bound of calls at once.
    pub fn call(
        &self,
        episode: &Episode,
        name: &str,
        arguments: &str,
        options: CallOptions<'_>,
    ) -> Result<ToolReply, ToolHostError> {
        let started = Instant::now();
        let _permit = self.in_flight.acquire();
        let measure_cpu = options.profile.is_some();
        let cpu_started = measure_cpu.then(crate::watchdog::thread_cpu_time);
        let mut profile = CallProfile::default();
        let how = CallHow {
            blocking_thread: options.blocking_thread,
            measure_cpu,
        };
        let reply = self.run_call(episode, name, arguments, started, how, &mut profile);
        if let Some(out) = options.profile {
            if profile.total.is_zero() {
                profile.total = started.elapsed();
            }
            profile.caller_cpu = crate::watchdog::thread_cpu_time()
                .saturating_sub(cpu_started.unwrap_or(Duration::ZERO));
            *out = profile;
        }
        reply
    }

    fn run_call(
        &self,
        episode: &Episode,
        name: &str,
        arguments: &str,
        started: Instant,
        how: CallHow,
        profile: &mut CallProfile,
    ) -> Result<ToolReply, ToolHostError> {
        let tool = self
            .tools
            .get(name)
            .ok_or_else(|| ToolHostError::UnknownTool(name.to_string()))?;
        let grant = tool
            .grants
            .get(episode.role)
            .ok_or_else(|| ToolHostError::NotGranted {
                tool: name.to_string(),
                role: episode.role,
            })?;
        let setup = call_setup(
            episode,
            tool.name(),
            grant,
            self.protected.get(&episode.role),
            Duration::from_millis(self.policy.exec_timeout_ms),
        )?;
        let placement = placement(PlacementFacts {
            inline_allowed: self.inline_calls,
            standard_tool: tool.inline_safe,
            runs_commands: setup.exec.is_some(),
            blocking_thread: how.blocking_thread,
        });
        let finished = call::run(
            self.runner(),
            &tool.pre,
            setup,
            Invocation::Call(arguments.to_string()),
            started,
            placement,
            how.measure_cpu,
        );
        *profile = finished.profile;
        let (stdout, _) = finished.stdout.contents();
        let (stderr, _) = finished.stderr.contents();
        let output_bytes = grant.effective.limits.output_bytes;
        match finished.answer {
            Ok(Answer::Called(result)) => {
                let mut truncated = false;
                let result = result.map(|text| {
                    let max = usize::try_from(output_bytes).unwrap_or(usize::MAX);
                    if text.len() > max {
                        truncated = true;
                        crate::output::cut_to(&text, max)
                    } else {
                        text
                    }
                });
                Ok(ToolReply {
                    result,
                    truncated,
                    stdout,
                    stderr,
                    elapsed: finished.elapsed,
                })
            }
            Ok(Answer::Described(_)) => Err(ToolHostError::wrong_answer(&tool.component_path)),
            Err(Failure::Limit(stop)) => Err(ToolHostError::Limit {
                tool: name.to_string(),
                limit: stop.kind,
                detail: stop.detail,
            }),
            Err(Failure::Trap(message)) => Err(ToolHostError::Trap {
                tool: name.to_string(),
                message: if stderr.is_empty() {
                    message
                } else {
                    format!("{message}; guest stderr: {}", stderr.trim_end())
                },
            }),
        }
    }
}
