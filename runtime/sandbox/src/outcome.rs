//! Turning what the supervisor saw (and the cgroup's counters) into an [`ExecOutcome`]:
//! exit code or signal, timeout, truncation, and which limit was hit first.
//!
//! Owns: the decoding rules every backend shares. Does not own: supervision or cgroups.

use crate::cgroup::CgroupEvents;
use crate::spec::{ExecOutcome, LimitHit, StartPath};
use crate::supervise::Supervised;
use std::os::unix::process::ExitStatusExt;

/// Turns what the supervisor saw into the caller's outcome; `start` is the path that
/// started the process.
pub(crate) fn outcome(seen: Supervised, events: CgroupEvents, start: StartPath) -> ExecOutcome {
    let (exit_code, signal) = decode_status(seen.status);
    let truncated = seen.stdout.truncated() || seen.stderr.truncated();
    let limit_hit = first_limit(&seen, events, signal);
    ExecOutcome {
        exit_code: if seen.killed_for.is_some() {
            None
        } else {
            exit_code
        },
        signal: if seen.killed_for.is_some() {
            Some(libc::SIGKILL)
        } else {
            signal
        },
        timed_out: matches!(
            seen.killed_for,
            Some(LimitHit::Timeout | LimitHit::IdleTimeout)
        ),
        truncated,
        limit_hit,
        stdout: seen.stdout.text(),
        stderr: seen.stderr.text(),
        wall_ms: seen.wall.as_millis() as u64,
        start,
    }
}

/// Exit code or signal. bwrap (and `docker run`) fold "killed by signal N" into exit
/// status 128+N, as shells do; the two cannot be told apart from outside, so 129..=159
/// (signals 1..=31) is reported as the signal. A command that deliberately exits with
/// such a status is reported as killed by the corresponding signal.
pub(crate) fn decode_status(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    if let Some(sig) = status.signal() {
        return (None, Some(sig));
    }
    match status.code() {
        Some(c) if (129..=159).contains(&c) => (None, Some(c - 128)),
        c => (c, None),
    }
}

/// The first limit hit. Cgroup limits are only known from counters read at the end, so
/// they come first (they are also the cause when a bomb later times out); then a file
/// too large (`SIGXFSZ`); then, by time, output truncation and the timeouts.
fn first_limit(seen: &Supervised, events: CgroupEvents, signal: Option<i32>) -> Option<LimitHit> {
    if events.oom_kills > 0 {
        return Some(LimitHit::Memory);
    }
    if events.pids_max_hits > 0 {
        return Some(LimitHit::Pids);
    }
    if signal == Some(libc::SIGXFSZ) {
        return Some(LimitHit::FileSize);
    }
    let truncated_at = [seen.stdout.truncated_at, seen.stderr.truncated_at]
        .into_iter()
        .flatten()
        .min();
    match (truncated_at, seen.killed_at, seen.killed_for) {
        (Some(t), Some(k), Some(why)) => Some(if t <= k { LimitHit::Output } else { why }),
        (Some(_), _, _) => Some(LimitHit::Output),
        (None, _, why) => why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_128_plus_n_is_a_signal() {
        use std::os::unix::process::ExitStatusExt;
        let st = |raw| std::process::ExitStatus::from_raw(raw);
        assert_eq!(decode_status(st(137 << 8)), (None, Some(9)));
        assert_eq!(decode_status(st(3 << 8)), (Some(3), None));
        assert_eq!(decode_status(st(9)), (None, Some(9)));
        assert_eq!(decode_status(st(255 << 8)), (Some(255), None));
    }
}
