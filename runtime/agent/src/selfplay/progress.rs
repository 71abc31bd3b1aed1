//! Progress bars on stderr for a self-play run (indicatif): one bar per phase.
//!
//! Owns: drawing. Does not own: what is counted (the orchestrator calls [`Progress`]).

use super::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;

/// A bar per phase, replaced when the next phase starts.
pub struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl BarProgress {
    /// Draws to stderr (hidden when stderr is not a terminal, as indicatif decides).
    pub fn stderr() -> Self {
        BarProgress {
            bar: Mutex::new(None),
        }
    }
}

impl Progress for BarProgress {
    fn phase(&self, round: u32, phase: &str, total: u64) {
        let Ok(mut slot) = self.bar.lock() else {
            return;
        };
        if let Some(old) = slot.take() {
            old.finish();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "round {prefix} {msg:<22} [{bar:30}] {pos}/{len} {elapsed_precise}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(round.to_string());
        bar.set_message(phase.to_string());
        *slot = Some(bar);
    }

    fn tick(&self, message: &str) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(1);
            bar.println(format!("  done: {message}"));
        }
    }
}

impl Drop for BarProgress {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish();
        }
    }
}
