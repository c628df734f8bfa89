//! The `bucket-relay` command line: `serve`, `integrations …`, `jobs list`, `poll`,
//! `backfill`, `events why` and `replay …`.
//!
//! Each command returns a typed report ([`common::Report`]); [`common::Printer`] prints it as
//! text, or as one JSON document with `--json`. Results go to stdout, errors to stderr with exit
//! code 1. `create` and `rotate-secret` are the only commands that ever show a secret.
//!
//! - [`args`]: the commands and flags (clap); [`common`]: what every command shares;
//! - [`serve`]: `serve`, and which runtime the process is (HTTP, Lambda, the Lambda poller);
//! - [`integrations`], [`secret`] (`create`, `rotate-secret`, with [`setup`]: the customer's
//!   side) and [`source`] (`set-source`, `test`): the integration commands;
//! - [`connection`] with [`test_event`]: `integrations test --receiver-url`, a test event over
//!   HTTP;
//! - [`listing`]: `poll` and `backfill`; [`reconcile`]: `reconcile`, whether every object
//!   became a job; [`events`]: `events why` and `jobs list`;
//! - [`replay`]: `replay eventbridge` and `replay ingest`, the dead-letter queues;
//! - [`package`]: `worker package`; [`connect`] with [`cloudflare`]: `integrations connect-r2`
//!   and `disconnect-r2`, the R2 setup through Cloudflare's API.

mod args;
mod change;
#[cfg(feature = "operator")]
mod cloudflare;
mod common;
#[cfg(feature = "operator")]
mod connect;
#[cfg(feature = "operator")]
mod connection;
mod events;
mod integrations;
mod keys;
mod limits;
mod listing;
mod package;
mod reconcile;
mod replay;
mod routes;
mod secret;
mod serve;
mod setup;
mod source;
mod status;
#[cfg(feature = "operator")]
mod test_event;
#[cfg(feature = "operator")]
mod verdict;

pub use args::Cli;

use crate::telemetry;
use crate::wiring::wire;
use args::{Command, EventsCommand, JobsCommand, ServeArgs, WorkerCommand};
use common::{CliResult, Failed, Printer};
use serve::Runtime;
use std::process::ExitCode;

/// Runs the command the process was started with; on Lambda, with no command, `serve`.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = Runtime::from_env();
    let mut tokio = tokio::runtime::Builder::new_multi_thread();
    tokio.enable_all();
    // The embedded backend's group commits run on a runtime thread that has nothing else to do.
    #[cfg(feature = "embedded")]
    tokio.on_thread_park(crate::backend::sqlite::commit_before_park);
    let result = tokio
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
        .and_then(|tokio| tokio.block_on(dispatch(cli, runtime)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(
                error
                    .downcast_ref::<Failed>()
                    .map_or(1, |failed| failed.code),
            )
        }
    }
}

async fn dispatch(cli: Cli, runtime: Runtime) -> CliResult {
    cli.check_durations().map_err(anyhow::Error::msg)?;
    let command = match cli.command {
        Some(command) => command,
        None if runtime.on_lambda() => {
            let args = ServeArgs::parse_from_env();
            args.check_durations().map_err(anyhow::Error::msg)?;
            Command::Serve(args)
        }
        None => anyhow::bail!("no command given; see `bucket-relay --help`"),
    };
    match &command {
        Command::Serve(args) => telemetry::init_logging(&args.log, runtime.on_lambda()),
        Command::Poll(_)
        | Command::Backfill(_)
        | Command::Reconcile(_)
        | Command::Replay(_)
        | Command::Keys(_) => {
            telemetry::init_cli_logging();
        }
        Command::Integrations(_)
        | Command::Jobs(_)
        | Command::Events(_)
        | Command::Status(_)
        | Command::Worker(_) => {}
    }
    let wired = wire(&cli.data_dir, &cli.backend).await?;
    let usage_buffer = wired.usage_buffer.clone();
    let printer = Printer { json: cli.json };
    let result = match command {
        Command::Serve(args) => serve::serve(wired, &cli.data_dir, args, runtime).await,
        Command::Integrations(command) => integrations::run(wired, printer, command).await,
        Command::Jobs(JobsCommand::List) => printer.emit(&events::jobs(&wired).await?),
        Command::Poll(args) => listing::poll(wired, printer, args).await,
        Command::Backfill(args) => listing::backfill(wired, printer, args).await,
        Command::Reconcile(args) => reconcile::reconcile(wired, printer, args).await,
        Command::Status(args) => status::status(wired, printer, args).await,
        Command::Worker(WorkerCommand::Package(args)) => {
            printer.emit(&package::package(&wired, args, chrono::Utc::now()).await?)
        }
        Command::Events(EventsCommand::Why { integration, key }) => {
            printer.emit(&events::why(&wired, &integration, &key).await?)
        }
        Command::Replay(command) => replay::replay(wired, printer, &cli.backend, command).await,
        Command::Keys(command) => keys::run(wired, printer, command).await,
    };
    // The counts of what this process did, before it ends (a Lambda's are flushed on its
    // SIGTERM, as it never gets here).
    if let Some(buffer) = usage_buffer {
        buffer.flush_or_log().await;
    }
    result
}
