//! The report: the diagnosis as data ([`model`]), with its answer ([`answer`]) and, for
//! `extract`, its growth projection ([`projection`]); rendered by the two [`export`]ers, as
//! JSON ([`json`]) and as a one-screen text summary ([`text`]).

pub(crate) mod answer;
pub(crate) mod class_charts;
pub(crate) mod export;
pub(crate) mod folded;
pub(crate) mod held;
pub(crate) mod html;
pub(crate) mod json;
pub(crate) mod model;
pub(crate) mod projection;
pub(crate) mod sites;
pub(crate) mod suspects;
pub(crate) mod text;
pub(crate) mod timeline;
pub(crate) mod top_sites;
pub(crate) mod trace;

pub(crate) use export::{Exporter, JsonExporter, TextExporter};
pub(crate) use model::{Report, SelfStats};

use crate::analysis::trend::Verdict;

impl Report {
    /// Whether any class (fd, mmap, brk, rss, files, watches) was judged a leak (`--fail-on-leak`).
    pub(crate) fn has_leak(&self) -> bool {
        let classes = &self.classes;
        [
            classes.fd.verdict,
            classes.mmap.verdict,
            classes.brk.verdict,
            classes.rss.verdict,
            classes.files.verdict,
            classes.watches.verdict,
            classes.heap.as_ref().map_or(Verdict::NoLeak, |h| h.verdict),
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
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod synthetic;
