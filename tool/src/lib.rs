//! leakscope: which resource leaks when a program repeats an operation.
//!
//! The flow is kernel probes -> ring buffer -> [`event`] decoding -> ledger -> analysis ->
//! report. Each stage is a module with one job; the ledger, analysis and report are pure and
//! unit-tested from synthetic event streams.

pub mod analysis;
pub mod cli;
pub mod commands;
pub mod delivered;
pub mod diagnosis;
pub mod ending;
pub mod event;
pub mod exit_code;
pub mod extract;
pub mod followed;
pub mod iterations;
pub mod kernel_offsets;
pub mod ledger;
pub mod privilege;
pub mod probes;
pub mod proc_snapshot;
pub mod progress;
pub mod report;
pub mod run_as;
pub mod session;
pub mod stop;
pub mod symbolize;
pub mod symbols;
pub mod target;
pub mod units;
