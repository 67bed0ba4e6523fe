//! Progress bars on stderr for the command line's long operations, drawn
//! only when stderr is a terminal.

use crate::ops::{Progress, Unit};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::{Arc, Mutex};

/// One bar at a time: the operation's current task.
#[derive(Default)]
pub(super) struct Bars(Mutex<Option<ProgressBar>>);

impl Bars {
    /// Bars to hand to an operation.
    pub(super) fn shared() -> Arc<dyn Progress> {
        Arc::new(Bars::default())
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Progress for Bars {
    /// Only a terminal shows the bars: elsewhere (a pipe, a log file, a
    /// scheduled job) nothing is drawn, and an operation need not size its
    /// task (a backup then counts no rows first).
    fn shown(&self) -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    }

    fn start(&self, label: &str, unit: Unit, total: u64) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let template = match unit {
            Unit::Bytes => "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            Unit::Rows => "{msg:24} [{bar:30}] {human_pos}/{human_len} rows {per_sec} eta {eta}",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(label.to_owned());
        *self.bar() = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = &*self.bar() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar().take() {
            bar.finish_and_clear();
        }
    }
}
