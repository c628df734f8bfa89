//! The `bucket-relay` command line: `serve`, `integrations …`, `jobs list`, `poll`,
//! `backfill`, `events why` and `replay …`.
//!
//! - [`args`]: the commands and flags (clap);
//! - [`commands`]: what each command does against the backends;
//! - [`listing`]: the commands that list buckets (`set-source`, `test`, `poll`, `backfill`);
//! - [`connection`]: `integrations test --receiver-url`, the test event over HTTP;
//! - [`replay`]: `replay eventbridge` and `replay ingest`, the dead-letter queues;
//! - [`print`]: what it prints, as text or, with `--json`, one JSON document.
//!
//! Every command takes `--data-dir` (env `RELAY_DATA_DIR`) and `--json`. Results go to stdout,
//! errors to stderr with exit code 1. `create` and `rotate-secret` are the only commands that
//! ever show a secret.

pub mod args;
pub mod commands;
pub mod connection;
pub mod listing;
pub mod print;
pub mod replay;

pub use args::Cli;

use crate::wiring::wire;
use crate::{env, telemetry};
use args::{
    BackfillArgs, Command, EventsCommand, IntegrationsCommand, JobsCommand, PollArgs,
    ReplayCommand, ServeArgs,
};
use std::process::ExitCode;

/// What this process was started to do.
enum Invocation {
    /// Run the handler: `serve`, or no command at all on Lambda.
    Serve {
        args: ServeArgs,
        on_lambda: bool,
    },
    Integrations(IntegrationsCommand),
    Jobs(JobsCommand),
    Poll(PollArgs),
    Backfill(BackfillArgs),
    Events(EventsCommand),
    Replay(ReplayCommand),
}

impl Invocation {
    fn of(command: Option<Command>, on_lambda: bool) -> Result<Invocation, String> {
        match command {
            Some(Command::Serve(args)) => Ok(Invocation::Serve { args, on_lambda }),
            Some(Command::Integrations(command)) => Ok(Invocation::Integrations(command)),
            Some(Command::Jobs(command)) => Ok(Invocation::Jobs(command)),
            Some(Command::Poll(args)) => Ok(Invocation::Poll(args)),
            Some(Command::Backfill(args)) => Ok(Invocation::Backfill(args)),
            Some(Command::Events(command)) => Ok(Invocation::Events(command)),
            Some(Command::Replay(command)) => Ok(Invocation::Replay(command)),
            None if on_lambda => Ok(Invocation::Serve {
                args: ServeArgs::parse_from_env(),
                on_lambda,
            }),
            None => Err("no command given; see `bucket-relay --help`".into()),
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let on_lambda = std::env::var_os(env::LAMBDA_RUNTIME_API).is_some();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let invocation = Invocation::of(cli.command, on_lambda)?;
        match &invocation {
            Invocation::Serve { args, on_lambda } => telemetry::init_logging(&args.log, *on_lambda),
            Invocation::Poll(_) | Invocation::Backfill(_) | Invocation::Replay(_) => {
                telemetry::init_cli_logging()
            }
            Invocation::Integrations(_) | Invocation::Jobs(_) | Invocation::Events(_) => {}
        }
        let wired = wire(&cli.data_dir, &cli.backend).await?;
        match invocation {
            Invocation::Serve { args, on_lambda } => {
                commands::serve(wired, &cli.data_dir, args, on_lambda).await
            }
            Invocation::Integrations(command) => {
                commands::integrations(wired, cli.json, command).await
            }
            Invocation::Jobs(JobsCommand::List) => commands::jobs_list(wired, cli.json).await,
            Invocation::Poll(args) => listing::poll(wired, args, cli.json).await,
            Invocation::Backfill(args) => listing::backfill(wired, args, cli.json).await,
            Invocation::Events(EventsCommand::Why { integration, key }) => {
                commands::events_why(wired, &integration, &key, cli.json).await
            }
            Invocation::Replay(command) => {
                replay::replay(wired, &cli.backend, command, cli.json).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
