//! Operator events are types: every log line the receiver writes comes from one in
//! `receiver/src/events.rs`, and docs/operators.md's table of log lines is the one the code
//! declares.

use bucket_relay::events::{log_table, metric_table, CATALOGUE};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("receiver/src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_log_line_is_written_outside_the_events_module() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut files = Vec::new();
    sources(root, &mut files);
    assert!(files.len() > 20, "read the receiver's sources");
    let macros = ["info!", "warn!", "error!", "debug!", "trace!", "event!"];
    for path in files {
        if path.ends_with("events.rs") && path.parent() == Some(root) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            let writes = macros
                .iter()
                .any(|m| code.contains(&format!("tracing::{m}")))
                || code.contains("use tracing::");
            assert!(
                !writes,
                "{}: a log line outside receiver/src/events.rs: {line}",
                path.display()
            );
        }
    }
}

/// The generated table docs/operators.md holds between `<!-- {marker}:` and `<!-- end of
/// {marker} -->`.
fn operators_table(marker: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operators.md");
    let page = std::fs::read_to_string(path).expect("docs/operators.md");
    let begin = page
        .find(&format!("<!-- {marker}:"))
        .unwrap_or_else(|| panic!("docs/operators.md marks its {marker}"));
    let table = &page[begin..];
    let table = &table[table.find('\n').expect("a line") + 1..];
    let end = table
        .find(&format!("<!-- end of {marker} -->"))
        .unwrap_or_else(|| panic!("docs/operators.md marks the end of its {marker}"));
    table[..end].to_owned()
}

#[test]
fn the_operators_page_lists_every_metric_the_code_declares() {
    assert_eq!(
        operators_table("metrics"),
        metric_table(),
        "regenerate it: cargo run -p bucket-relay --example contract -- --metric-table"
    );
}

#[test]
fn the_operators_page_lists_every_log_line_the_code_declares() {
    assert_eq!(
        operators_table("log lines"),
        log_table(),
        "regenerate it: cargo run -p bucket-relay --example contract -- --log-table"
    );
    // Every message a query or alarm relies on is declared.
    for message in [
        "request",
        "auth_failed",
        "object_lookup_failed",
        "missed_by_events",
        "poll_tick",
    ] {
        assert!(
            CATALOGUE.iter().any(|spec| spec.message == message),
            "{message}"
        );
    }
}
