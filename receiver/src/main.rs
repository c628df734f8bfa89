//! `bucket-relay`: the receiver's binary. See `cli/` for the commands.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = bucket_relay::cli::Cli::parse();
    bucket_relay::cli::run(cli)
}
