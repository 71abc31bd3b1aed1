//! Where a call runs: on the caller's thread, or handed to a worker thread.
//!
//! Owns: the rule below. Does not own: running the call in either place (`call`,
//! `workers`) or the watchdog's signal (`watchdog`).

use crate::call::Placement;

/// What the rule looks at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlacementFacts {
    /// The host allows inline calls at all (see [`crate::ToolHost::set_inline_calls`]).
    pub inline_allowed: bool,
    /// The tool is one of this binary's standard tools.
    pub standard_tool: bool,
    /// The call may run commands (an `exec` grant).
    pub runs_commands: bool,
    /// The caller said its thread may block and drives no async tasks.
    pub blocking_thread: bool,
}

/// Where a call runs. On the caller's thread only when all of these hold:
/// - the caller is not inside a tokio runtime, or said it is on a thread that may
///   block ([`crate::CallOptions::blocking_thread`]): wasmtime-wasi's synchronous host
///   calls `block_on` the current runtime, which panics on a thread that drives async
///   tasks, and tokio's public API cannot tell such a thread from a `spawn_blocking`
///   one;
/// - the tool is one of this binary's standard ones: their guests read files with
///   direct descriptor reads and never wait on a clock or a stream, so all they can
///   block in is a system call the watchdog's signal interrupts; a custom guest could
///   wait in a WASI `poll` (a sleep, a stream read done on tokio's blocking pool) that
///   no signal ends, which only a worker the caller walks away from bounds;
/// - the call may not run commands: a command waits on another process, bounded by the
///   sandbox's own timeout, which the host does not verify (and a command costs
///   milliseconds, so the hand-off does not matter there);
/// - the watchdog's signal is installed and not blocked on this thread.
pub(crate) fn placement(f: PlacementFacts) -> Placement {
    let inline = f.inline_allowed
        && f.standard_tool
        && !f.runs_commands
        && (f.blocking_thread || tokio::runtime::Handle::try_current().is_err())
        && crate::watchdog::signal_available()
        && crate::watchdog::signal_unblocked_here();
    if inline {
        Placement::Inline
    } else {
        Placement::Worker
    }
}
