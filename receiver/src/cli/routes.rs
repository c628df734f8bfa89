//! `integrations route add|remove|list|default`: per key prefix, what each job carries for the
//! pipeline (`ingest-job/v2`'s `route`, `params`, `output_prefix`). The rules (longest prefix,
//! limits, loop protection) are the protocol's ([`relay_protocol::route`]); this writes them.

use super::args::RouteCommand;
use super::common::{load, CliResult, Printer, Report, Safe};
use crate::wiring::Wired;
use chrono::Utc;
use relay_protocol::route::{check_params, Route};
use relay_protocol::Integration;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

pub(crate) async fn run(wired: &Wired, printer: Printer, command: RouteCommand) -> CliResult {
    let store = wired.backends.store.as_ref();
    let (id, change): (String, Option<Change>) = match command {
        RouteCommand::List { id } => (id, None),
        RouteCommand::Add {
            id,
            prefix,
            suffixes,
            params,
            output_prefix,
        } => {
            let route = Route {
                prefix,
                suffixes,
                params: params.into_iter().collect(),
                output_prefix: output_prefix.filter(|p| !p.is_empty()),
            };
            (id, Some(Change::Put(route)))
        }
        RouteCommand::Remove { id, prefix } => (id, Some(Change::Remove(prefix))),
        RouteCommand::Default { id, params } => {
            (id, Some(Change::Default(params.into_iter().collect())))
        }
    };
    let mut integration = load(store, &id).await?;
    let did = match change {
        None => "listed",
        Some(change) => {
            let did = change.apply(&mut integration)?;
            integration.updated_at = Utc::now();
            store.put(&integration).await?;
            did
        }
    };
    printer.emit(&Routes::of(&integration, did))
}

enum Change {
    Put(Route),
    Remove(String),
    Default(BTreeMap<String, String>),
}

impl Change {
    fn apply(self, integration: &mut Integration) -> CliResult<&'static str> {
        Ok(match self {
            Change::Put(route) => {
                if integration.put_route(route)? {
                    "replaced"
                } else {
                    "added"
                }
            }
            Change::Remove(prefix) => {
                integration.remove_route(&prefix)?;
                "removed"
            }
            Change::Default(params) => {
                check_params(&params)?;
                integration.default_params = params;
                "set the default of"
            }
        })
    }
}

/// An integration's routes, after a change.
#[derive(Serialize)]
pub(crate) struct Routes {
    id: String,
    did: &'static str,
    routes: Vec<Route>,
    default_params: BTreeMap<String, String>,
    default_output_prefix: Option<String>,
}

impl Routes {
    fn of(integration: &Integration, did: &'static str) -> Self {
        Routes {
            id: integration.id.clone(),
            did,
            routes: integration.routes.clone(),
            default_params: integration.default_params.clone(),
            default_output_prefix: integration.output_prefix.clone(),
        }
    }
}

/// `tier=premium, language=de`, or `-`.
pub(crate) fn describe_params(params: &BTreeMap<String, String>) -> String {
    if params.is_empty() {
        return "-".to_owned();
    }
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report for Routes {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        if self.did != "listed" {
            writeln!(out, "Routes of {} ({}):", self.id, self.did)?;
        }
        for route in &self.routes {
            let suffixes = if route.suffixes.is_empty() {
                String::new()
            } else {
                format!(" *{}", route.suffixes.join("|*"))
            };
            writeln!(
                out,
                "  {}{}  {}  -> {}",
                Safe(&route.prefix),
                Safe(&suffixes),
                Safe(&describe_params(&route.params)),
                Safe(route.output_prefix.as_deref().unwrap_or("-"))
            )?;
        }
        writeln!(
            out,
            "  (default)  {}  -> {}",
            Safe(&describe_params(&self.default_params)),
            Safe(self.default_output_prefix.as_deref().unwrap_or("-"))
        )
    }
}
