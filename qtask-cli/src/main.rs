//! The `qtask` command. See `qtask --help` for the commands and exit codes.

mod args;
mod commands;
mod dashboard;
mod output;
mod schedules;

use std::process::ExitCode;

use clap::Parser;
use qtask_core::{Client, Config, Error};

use args::{Cli, Command};

/// Exit codes, as `qtask --help` lists them.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_STATE: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("qtask: cannot start the runtime: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("qtask: {err}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The exit code a failed command ends with.
pub fn exit_code(err: &Error) -> u8 {
    match err {
        Error::InvalidArgument(_) => EXIT_USAGE,
        Error::NotFound(_) => EXIT_NOT_FOUND,
        Error::InvalidState(_) => EXIT_STATE,
        _ => EXIT_FAILED,
    }
}

async fn run(cli: Cli) -> qtask_core::Result<u8> {
    let config = Config {
        db: cli.db.clone(),
        queue: cli.queue_url.clone(),
        namespace: cli.namespace.clone(),
        table_prefix: cli.table_prefix.clone(),
        redis_prefix: cli.redis_prefix.clone(),
        // An operator's command never sweeps: the workers' processes do.
        sweeper: false,
        max_connections: 4,
        ..Config::default()
    };
    let client = Client::open(config).await?;
    let result = match cli.command {
        Command::Install => client.install().await.map(|()| {
            output::line(format!(
                "installed {} in {}",
                client.store().table(),
                qtask_core::store::redact(&cli.db)
            ));
            0
        }),
        Command::Stats(json) => commands::stats(&client, json.json).await,
        Command::Queues(command) => commands::queues(&client, command).await,
        Command::Tasks(command) => commands::tasks(&client, command).await,
        Command::Schedules(command) => schedules::run(&client, command).await,
        Command::Dashboard(args) => dashboard::serve(client.clone(), args).await,
    };
    client.close().await;
    result
}
