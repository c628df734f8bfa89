//! Prints the contract the receiver implements as JSON (see `bucket_relay::contract`), or with
//! `--reason-table` docs/contract.md's table of reasons, or with `--log-table` /
//! `--metric-table` docs/operators.md's tables of log lines and metrics.

fn main() {
    if std::env::args().any(|arg| arg == "--reason-table") {
        print!("{}", bucket_relay::contract::reason_table());
    } else if std::env::args().any(|arg| arg == "--log-table") {
        print!("{}", bucket_relay::events::log_table());
    } else if std::env::args().any(|arg| arg == "--metric-table") {
        print!("{}", bucket_relay::events::metric_table());
    } else {
        let document = bucket_relay::contract::document();
        println!("{}", serde_json::to_string_pretty(&document).expect("JSON"));
    }
}
