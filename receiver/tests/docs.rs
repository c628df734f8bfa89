//! The README is the operator's reference and docs/contract.md the contract: both must name every
//! reason the receiver can answer with, and the README every environment variable it reads, with
//! the exact words the code uses.

use bucket_relay::env;
use relay_protocol::{Outcome, Reason};

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    std::fs::read_to_string(path).expect("README.md at the repository root")
}

fn contract() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/contract.md");
    std::fs::read_to_string(path).expect("docs/contract.md")
}

/// The reason and outcome words `doc` does not name in backticks.
fn unnamed_words(doc: &str) -> Vec<&'static str> {
    Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .chain(Outcome::ALL.iter().map(|o| o.as_str()))
        .filter(|word| !doc.contains(&format!("`{word}`")))
        .collect()
}

#[test]
fn the_contract_names_every_reason_and_outcome() {
    let missing = unnamed_words(&contract());
    assert!(
        missing.is_empty(),
        "docs/contract.md does not name: {missing:?}"
    );
}

#[test]
fn no_doc_points_outside_the_repository() {
    for doc in [readme(), contract()] {
        assert!(!doc.contains("../shared"), "a clone has no ../shared");
        assert!(!doc.contains("DESIGN.md") && !doc.contains("TOOLCHAIN.md"));
    }
}

#[test]
fn the_readme_reason_table_is_the_one_the_code_writes() {
    let readme = readme();
    let begin = readme
        .find("<!-- reasons:")
        .expect("README.md marks its reason table");
    let table = &readme[begin..];
    let table = &table[table.find('\n').unwrap() + 1..];
    let end = table
        .find("<!-- end of reasons -->")
        .expect("README.md marks the end of its reason table");
    assert_eq!(
        &table[..end],
        bucket_relay::contract::reason_table(),
        "regenerate it: cargo run -p bucket-relay --example contract -- --reason-table"
    );
}

#[test]
fn readme_names_every_reason_and_outcome() {
    let missing = unnamed_words(&readme());
    assert!(missing.is_empty(), "README.md does not name: {missing:?}");
}

#[test]
fn readme_lists_every_environment_variable() {
    let readme = readme();
    let missing: Vec<&str> = env::ALL
        .iter()
        .copied()
        .filter(|name| !readme.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's configuration table lacks: {missing:?}"
    );
}

/// Each row of the contract's reason table names reasons and, in its second cell, the outcome
/// (event reasons) or the status (request reasons) the code gives them.
#[test]
fn the_contract_table_gives_each_reason_the_outcome_or_status_the_code_does() {
    let contract = contract();
    let mut seen = Vec::new();
    for row in contract.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (names, answer) = (cells[1], cells[2]);
        for reason in Reason::ALL {
            if !names.contains(&format!("`{reason}`")) {
                continue;
            }
            seen.push(*reason);
            let status = relay_protocol::wire::request_error_status(*reason).to_string();
            match reason.outcome() {
                Some(outcome) => assert!(
                    answer.contains(outcome.as_str()),
                    "{reason}: the contract says {answer:?}, the code {outcome}"
                ),
                None => assert!(
                    answer.contains(&status),
                    "{reason}: the contract says {answer:?}, the code {status}"
                ),
            }
        }
    }
    let missing: Vec<_> = Reason::ALL.iter().filter(|r| !seen.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "not in the contract's table: {missing:?}"
    );
}
