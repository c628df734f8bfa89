//! The README is the newcomer's page, `docs/` holds one page per audience, and docs/contract.md
//! is the contract: it names every reason the receiver can answer with, docs/cli.md every
//! environment variable it reads, with the exact words the code uses; every link between the
//! pages leads somewhere.

use bucket_relay::env;
use relay_protocol::{Outcome, Reason};

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    std::fs::read_to_string(path).expect("README.md at the repository root")
}

fn doc(name: &str) -> String {
    let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
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
    for doc in pages().into_iter().map(|(_, text)| text) {
        assert!(!doc.contains("../shared"), "a clone has no ../shared");
        assert!(!doc.contains("DESIGN.md") && !doc.contains("TOOLCHAIN.md"));
    }
}

#[test]
fn the_contract_reason_table_is_the_one_the_code_writes() {
    let contract = contract();
    let begin = contract
        .find("<!-- reasons:")
        .expect("docs/contract.md marks its reason table");
    let table = &contract[begin..];
    let table = &table[table.find('\n').unwrap() + 1..];
    let end = table
        .find("<!-- end of reasons -->")
        .expect("docs/contract.md marks the end of its reason table");
    assert_eq!(
        &table[..end],
        bucket_relay::contract::reason_table(),
        "regenerate it: cargo run -p bucket-relay --example contract -- --reason-table"
    );
}

#[test]
fn the_cli_page_lists_every_environment_variable() {
    let cli = doc("cli.md");
    let missing: Vec<&str> = env::ALL
        .iter()
        .copied()
        .filter(|name| !cli.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/cli.md's configuration table lacks: {missing:?}"
    );
}

/// The README and every page under docs/, as (path from the repository root, text).
fn pages() -> Vec<(String, String)> {
    let mut pages = vec![("README.md".to_owned(), readme())];
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("docs/")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    names.sort();
    for name in names {
        pages.push((format!("docs/{name}"), doc(&name)));
    }
    pages
}

/// The targets of a page's Markdown links `[text](target)`.
fn links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_link_between_the_pages_leads_to_a_file_and_heading_that_exist() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut broken = Vec::new();
    for (page, text) in pages() {
        let dir = root.join(&page).parent().unwrap().to_path_buf();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                root.join(&page)
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{page}: {target} (no such file)"));
                continue;
            }
            if fragment.is_empty() {
                continue;
            }
            let linked = std::fs::read_to_string(&path).unwrap_or_default();
            let found = linked
                .lines()
                .filter_map(|line| line.strip_prefix('#'))
                .any(|heading| anchor(heading.trim_start_matches('#')) == fragment);
            if !found {
                broken.push(format!("{page}: {target} (no such heading)"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn the_readme_is_a_newcomers_page_and_links_every_audiences_page() {
    let readme = readme();
    assert!(
        readme.len() <= 12 * 1024,
        "README.md is {} bytes: move reference material to docs/",
        readme.len()
    );
    for name in [
        "contract.md",
        "operators.md",
        "cli.md",
        "customers-r2.md",
        "customers-s3.md",
        "performance.md",
        "development.md",
    ] {
        assert!(
            readme.contains(&format!("](docs/{name})")),
            "README.md does not link docs/{name}"
        );
    }
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

/// The contract as data, as `cargo run -p bucket-relay --example contract` prints it.
fn contract_words(section: &str, list: &str) -> Vec<String> {
    let document = bucket_relay::contract::document();
    document[section][list]
        .as_array()
        .unwrap_or_else(|| panic!("the contract has {section}.{list}"))
        .iter()
        .map(|word| word.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_operators_page_names_every_cause_an_auth_failure_is_logged_with() {
    let operators = doc("operators.md");
    let missing: Vec<String> = contract_words("receiver", "auth_failed_causes")
        .into_iter()
        .filter(|cause| !operators.contains(&format!("`{cause}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operators.md does not name the auth_failed causes {missing:?}"
    );
}

/// A failure name the operator's pages give (`…_mismatch`, `…_denied`, `…_unreadable`, …) is
/// one the code can report: a reason, a listing or lookup failure, or an auth cause.
#[test]
fn every_failure_the_operator_pages_name_is_one_the_code_reports() {
    let mut known: Vec<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    known.extend(contract_words("listing", "access_errors"));
    known.extend(contract_words("listing", "lookup_errors"));
    known.extend(contract_words("receiver", "auth_failed_causes"));
    let failure = [
        "_mismatch",
        "_denied",
        "_unreadable",
        "_misconfigured",
        "_unreachable",
    ];
    let mut unknown = Vec::new();
    for page in ["operators.md", "cli.md"] {
        let text = doc(page);
        for word in text.split('`').skip(1).step_by(2) {
            let is_name =
                !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if is_name
                && failure.iter().any(|end| word.ends_with(end))
                && !known.iter().any(|k| k == word)
            {
                unknown.push(format!("{page}: {word}"));
            }
        }
    }
    assert!(unknown.is_empty(), "names no code reports: {unknown:?}");
}

#[test]
fn the_operators_page_names_every_listing_failure() {
    let operators = doc("operators.md");
    let missing: Vec<String> = contract_words("listing", "access_errors")
        .into_iter()
        .filter(|name| !operators.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operators.md does not name the listing failures {missing:?}"
    );
}
