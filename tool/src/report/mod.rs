//! The report: the diagnosis as data ([`model`]), with its answer ([`answer`]) and, for
//! `extract`, its growth projection ([`projection`]); rendered by the two [`export`]ers, as
//! JSON ([`json`]) and as a one-screen text summary ([`text`]).

pub mod answer;
pub mod export;
pub mod held;
pub mod json;
pub mod model;
pub mod projection;
pub mod sites;
pub mod text;

pub use export::{Exporter, JsonExporter, TextExporter};
pub use model::Report;

use crate::analysis::trend::Verdict;

impl Report {
    /// Whether any class (fd, mmap, brk, rss) was judged a leak (`--fail-on-leak`).
    pub fn has_leak(&self) -> bool {
        let classes = &self.classes;
        [
            classes.fd.verdict,
            classes.mmap.verdict,
            classes.brk.verdict,
            classes.rss.verdict,
        ]
        .contains(&Verdict::Leak)
    }
}

#[cfg(test)]
mod iteration_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod failure_tests;
