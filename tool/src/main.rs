use std::{collections::BTreeMap, process::ExitCode};

use clap::Parser;
use leakscope::{
    cli::{Cli, Command},
    event::{Event, What},
    proc_snapshot::Snapshot,
    session::{self, EventSink, Target, TraceConfig},
};

#[derive(Default)]
struct Counts(BTreeMap<&'static str, u64>);
impl EventSink for Counts {
    fn seed(&mut self, _: u32, _: &Snapshot) {}
    fn apply(&mut self, e: &Event) {
        let name = match &e.what { What::Syscall(c) => c.name, What::Fork{..} => "fork", What::Exec => "exec", What::Exit => "exit", What::Marker{..} => "marker" };
        *self.0.entry(name).or_default() += 1;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (target, common) = match cli.command {
        Command::Run(run) => (Target::Spawn { argv: run.command, run_as: None }, run.common),
        Command::Attach(a) => (Target::Attach { pid: a.pid, duration: a.duration.map(std::time::Duration::from_secs_f64) }, a.common),
    };
    let config = TraceConfig { ring_bytes: common.ring_mib << 20, marker: common.iteration_symbol };
    let mut counts = Counts::default();
    match session::trace(target, &config, &mut counts).await {
        Ok(o) => { println!("{:?} lost={} events={} {:?}", o.end, o.lost_events, o.events, counts.0); ExitCode::SUCCESS }
        Err(e) => { eprintln!("leakscope: {e}"); ExitCode::from(1) }
    }
}
