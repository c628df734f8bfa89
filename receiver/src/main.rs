//! `bucket-relay`: the receiver's binary. See `cli/` for the commands.

use clap::Parser;
use std::process::ExitCode;

/// `serve`'s allocator; see receiver/Cargo.toml.
#[cfg(feature = "server")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = bucket_relay::cli::Cli::parse();
    bucket_relay::cli::run(cli)
}
