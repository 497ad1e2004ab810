//! leakscope: which resource leaks when a program repeats an operation.
//!
//! The flow is kernel probes -> ring buffer -> [`event`] decoding -> ledger -> analysis ->
//! report. Each stage is a module with one job; the ledger, analysis and report are pure and
//! unit-tested from synthetic event streams.

pub mod event;
pub mod kernel_offsets;
pub mod probes;
pub mod proc_snapshot;
pub mod target;
pub mod privilege;
pub mod symbolize;
pub mod session;
pub mod cli;
pub mod extract;
pub mod ledger;
pub mod units;
pub mod iterations;
pub mod analysis;
pub mod diagnosis;
pub mod report;
