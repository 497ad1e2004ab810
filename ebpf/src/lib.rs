//! Lets `tool/` name this crate as a build-dependency, so cargo rebuilds the eBPF object when it changes.
#![no_std]
