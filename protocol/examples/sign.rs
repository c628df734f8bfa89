//! Signs stdin as a Standard Webhooks message with this crate, for interop tests against the
//! reference libraries: `sign <whsec_secret> <msg_id> <unix_timestamp> < body`.
//! Prints the `webhook-signature` value.

use relay_protocol::webhook::SigningKey;
use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [secret, msg_id, timestamp] = args.as_slice() else {
        eprintln!("usage: sign <whsec_secret> <msg_id> <unix_timestamp> < body");
        return ExitCode::from(2);
    };
    let Ok(key) = SigningKey::from_secret(secret) else {
        eprintln!("error: the secret is not whsec_<base64>");
        return ExitCode::FAILURE;
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        eprintln!("error: the timestamp is not unix seconds");
        return ExitCode::FAILURE;
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("error: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    println!("{}", key.sign(msg_id, timestamp, &body));
    ExitCode::SUCCESS
}
