//! What every command shares: its error type, the [`Report`] it returns and the [`Printer`] that
//! shows it, and the two reads nearly every command starts with ([`load`], [`keyring`]).
//!
//! A command returns a typed, serialisable report; [`Printer::emit`] is the one place that
//! decides whether a person reads it as text or a program as one JSON document (`--json`).
//! These live apart from `cli/mod.rs` so that no command module imports the module that
//! dispatches to it.

use crate::backend::{Keyring, Store};
use crate::wiring::Wired;
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use relay_protocol::integration::ReadAccess;
use relay_protocol::Integration;
use serde::Serialize;
use std::fmt;

/// A command's result: `Err` is printed on stderr with exit code 1.
pub(crate) type CliResult<T = ()> = anyhow::Result<T>;

/// What a command produced: a JSON document, and the text a person reads.
pub(crate) trait Report: Serialize {
    /// The text a person reads on the terminal.
    fn render(&self, out: &mut dyn fmt::Write) -> fmt::Result;

    /// For a report of something that failed (a check, a replay that kept messages): the error
    /// the command exits with once the report is shown.
    fn failure(&self) -> Option<String> {
        None
    }

    /// The exit code of a [`Report::failure`]: 1, unless the command documents another.
    fn exit_code(&self) -> u8 {
        1
    }
}

/// A command's failure with an exit code of its own (see [`Report::exit_code`]).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failed {}

/// Shows reports as text, or as one JSON document each with `--json`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Printer {
    pub(crate) json: bool,
}

impl Printer {
    /// Prints the report on stdout; then its failure, if it is one, becomes the command's error.
    pub(crate) fn emit<R: Report>(self, report: &R) -> CliResult {
        self.show(report)?;
        match report.failure() {
            Some(message) => Err(Failed {
                code: report.exit_code(),
                message,
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Prints the report on stdout, failed or not: for a command that goes on (`poll --every`).
    /// JSON is exact; text never carries a control character a terminal would act on (a key
    /// with ESC or BEL in it), whatever a renderer forgot to wrap in [`Safe`].
    pub(crate) fn show<R: Report>(self, report: &R) -> CliResult {
        if self.json {
            println!("{}", serde_json::to_string_pretty(report)?);
        } else {
            let mut text = String::new();
            report.render(&mut text)?;
            let mut shown = String::with_capacity(text.len());
            for c in text.chars() {
                match c {
                    '\n' | '\t' => shown.push(c),
                    c => push_safe(&mut shown, c),
                }
            }
            print!("{shown}");
        }
        Ok(())
    }
}

/// Text from outside (an object key, a prefix, an error's detail) as a terminal may show it:
/// control characters (a newline too: it would forge a row) and bidirectional overrides are
/// written as escapes, so what a person reads is what the text holds.
pub(crate) struct Safe<'a>(pub(crate) &'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = String::with_capacity(self.0.len());
        for c in self.0.chars() {
            push_safe(&mut shown, c);
        }
        f.pad(&shown)
    }
}

/// Pushes `c`, or its escape when a terminal would act on it rather than show it.
fn push_safe(out: &mut String, c: char) {
    let bidi =
        matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
    if c.is_control() || bidi {
        out.extend(c.escape_default());
    } else {
        out.push(c);
    }
}

/// The master key's keyring, or the backend's error.
pub(crate) async fn keyring(wired: &Wired) -> CliResult<Keyring> {
    Ok(wired.keys.keyring().await?)
}

/// The integration `id`, or "no integration ID".
/// A command the build leaves out (the Lambda package has no `operator` feature).
#[cfg(not(feature = "operator"))]
pub(crate) fn not_in_this_build(command: &str) -> anyhow::Error {
    anyhow!(
        "{command}: this build of bucket-relay (the Lambda package) leaves the operator's \
         commands out; run it from a full build (cargo install, or the release binary)"
    )
}

pub(crate) async fn load(store: &dyn Store, id: &str) -> CliResult<Integration> {
    store
        .get(id)
        .await?
        .ok_or_else(|| anyhow!("no integration {id}"))
}

/// A time as the tables show it: RFC 3339 to the second, in UTC.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An integration as reports show it: a sealed token is named, never shown (not even sealed).
pub(crate) struct Shown<'a>(pub(crate) &'a Integration);

impl Serialize for Shown<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(self.0).map_err(serde::ser::Error::custom)?;
        if let Some(ReadAccess::SealedKeys { .. }) = &self.0.read_access {
            value["read_access"] = serde_json::json!({"kind": "sealed_keys"});
        }
        value.serialize(serializer)
    }
}

/// Whether one checked thing passed and, when not, its stable error name and the detail: the
/// shape every per-item result in a report shares (flattened into the item).
#[derive(Serialize)]
pub(crate) struct Checked {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Checked {
    /// `name` gives an error's stable name, `detail` its words.
    pub(crate) fn of<T, E>(
        result: &Result<T, E>,
        name: impl FnOnce(&E) -> &'static str,
        detail: impl FnOnce(&E) -> String,
    ) -> Self {
        let error = result.as_ref().err();
        Checked {
            ok: error.is_none(),
            error: error.map(name),
            detail: error.map(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_cannot_forge_a_row_or_drive_the_terminal() {
        let key = "a\nFORGED\u{1b}[31m\u{7}\u{202e}fdp.exe";
        let shown = Safe(key).to_string();
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{shown}"
        );
        assert_eq!(shown, "a\\nFORGED\\u{1b}[31m\\u{7}\\u{202e}fdp.exe");
        assert_eq!(format!("{:<6}|", Safe("ab")), "ab    |");
    }
}
