//! A progress display for long traced runs: iterations done and what the target holds now.
//! Drawn on stderr only when stderr is a terminal; otherwise nothing is drawn at all.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{
    event::{Event, What},
    proc_snapshot::Snapshot,
    session::{EventSink, LineSink},
};

#[derive(Clone)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    rounds: u64,
    per_round: u64,
}

impl Progress {
    /// A bar over `rounds` x `per_round` iterations, or no display when stderr is not a
    /// terminal.
    pub(crate) fn rounds(rounds: u64, per_round: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::without_bar(rounds, per_round);
        }
        let (rounds, per_round) = (rounds.max(1), per_round.max(1));
        let bar =
            ProgressBar::with_draw_target(Some(rounds * per_round), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {human_pos}/{human_len} iterations  {msg}  [{elapsed}]",
            )
            .expect("static template"),
        );
        Progress {
            bar: Some(bar),
            rounds,
            per_round,
        }
    }

    /// No display: the lines of the target still go through [`Progress::line_sink`].
    pub(crate) fn without_bar(rounds: u64, per_round: u64) -> Self {
        Progress {
            bar: None,
            rounds: rounds.max(1),
            per_round: per_round.max(1),
        }
    }

    /// Prints the target's own output lines above the bar, so the two never mangle each other.
    pub(crate) fn line_sink(&self) -> LineSink {
        let bar = self.bar.clone();
        Box::new(move |line| match &bar {
            Some(bar) => bar.println(line),
            None => {
                use std::io::Write as _;
                // A closed stdout (e.g. piped into `head`) must not panic the tracer.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        })
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Passes events through to `inner` and moves the bar on every iteration marker.
pub(crate) struct ProgressSink<'a, S: EventSink> {
    pub(crate) inner: &'a mut S,
    pub(crate) progress: Progress,
    /// What the target holds now, for the bar's message: `(fds, mappings)`.
    pub(crate) live: fn(&S) -> (usize, usize),
}

impl<S: EventSink> EventSink for ProgressSink<'_, S> {
    fn begin(&mut self, target: u32, since_ns: u64, held: &Snapshot) {
        self.inner.begin(target, since_ns, held);
    }

    fn polled(&mut self, lost: &dyn Fn() -> (u64, u64)) {
        self.inner.polled(lost);
    }

    fn heap_sampled(&mut self, time_ns: u64, totals: &[(u32, crate::event::MarkerHeap)]) {
        self.inner.heap_sampled(time_ns, totals);
    }

    fn path_of_fd(&self, tgid: u32, fd: i32) -> Option<std::sync::Arc<str>> {
        self.inner.path_of_fd(tgid, fd)
    }

    fn cwd_of(&self, tgid: u32) -> Option<std::sync::Arc<str>> {
        self.inner.cwd_of(tgid)
    }

    fn apply(&mut self, event: &Event) {
        self.inner.apply(event);
        if let (What::Marker { .. }, Some(bar)) = (&event.what, &self.progress.bar) {
            bar.inc(1);
            // Formatting the message on every marker would cost more than the event itself.
            if bar.position() % 256 == 0 {
                let (fds, mappings) = (self.live)(self.inner);
                let round =
                    (bar.position() / self.progress.per_round + 1).min(self.progress.rounds);
                bar.set_message(format!(
                    "round {round}/{}  fds {fds}  mappings {mappings}",
                    self.progress.rounds
                ));
            }
        }
    }
}
