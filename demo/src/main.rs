//! qtask's main job on the embedded default, in one command:
//!
//! ```text
//! cargo run --release -p qtask-demo
//! ```
//!
//! A fresh SQLite file, thousands of real-time and delayed tasks, several worker
//! processes (this binary re-run as `qtask-demo worker`), one of them killed with
//! SIGKILL while it holds tasks, a progress bar, and a summary whose `lost` must be 0.

mod args;
mod demo;
mod worker;

use std::process::ExitCode;

use args::Command;

/// The queue every demo task goes to.
pub const QUEUE: &str = "DEMO:WORK";

fn main() -> ExitCode {
    let command = match args::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("qtask-demo: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("qtask-demo: cannot start the tokio runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        Command::Help => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Worker(args) => runtime.block_on(worker::run(args)).map(|()| true),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("qtask-demo: {err}");
            ExitCode::from(2)
        }
    }
}
