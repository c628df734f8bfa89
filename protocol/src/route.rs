//! Routes: per key prefix, what the pipeline needs to process an object and where its result
//! goes.
//!
//! An integration holds an ordered set of routes. Each is a key prefix (optionally with
//! suffixes), a map of string parameters whose meaning the operator's pipeline decides (`tier`,
//! `language`, `notify`…), and an output prefix. An object takes the route with the longest
//! prefix it starts with (whose suffixes, if any, it ends with); otherwise the integration-wide
//! default: its `default_params` and its `output_prefix`. The job carries the route's prefix,
//! parameters and output prefix (`ingest-job/v2`).
//!
//! Loop protection holds per route: a route's output prefix may not lie under a watched prefix of
//! the integration (its own, another route's, or the integration's), and an object under any
//! route's output prefix never becomes a job.

use crate::integration::Integration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// At most this many routes per integration.
pub const MAX_ROUTES: usize = 50;
/// At most this many parameters per route (and in the default).
pub const MAX_PARAMS: usize = 20;
/// A parameter's name: 1 to 64 of `[a-z0-9_.-]`, starting with a letter.
pub const MAX_PARAM_NAME_BYTES: usize = 64;
/// A parameter's value: at most this many bytes, no control characters.
pub const MAX_PARAM_VALUE_BYTES: usize = 1024;
/// A route's prefix or output prefix: at most this many bytes (S3 and R2 keys are at most 1,024).
pub const MAX_PREFIX_BYTES: usize = 1024;

/// One route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suffixes: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_prefix: Option<String>,
}

/// Why a route (or the default's parameters) is refused: a stable name and what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    TooManyRoutes,
    PrefixEmpty,
    PrefixTooLong,
    ControlCharacter,
    TooManyParams,
    BadParamName(String),
    ParamValueTooLong(String),
    /// The route's output prefix lies under a watched prefix: its results would become jobs.
    OutputUnderWatchedPrefix {
        output: String,
        watched: String,
    },
    NoSuchRoute(String),
}

impl RouteError {
    /// The stable name of the refusal.
    pub fn as_str(&self) -> &'static str {
        match self {
            RouteError::TooManyRoutes => "too_many_routes",
            RouteError::PrefixEmpty => "route_prefix_empty",
            RouteError::PrefixTooLong => "route_prefix_too_long",
            RouteError::ControlCharacter => "route_control_character",
            RouteError::TooManyParams => "too_many_params",
            RouteError::BadParamName(_) => "bad_param_name",
            RouteError::ParamValueTooLong(_) => "param_value_too_long",
            RouteError::OutputUnderWatchedPrefix { .. } => "output_under_watched_prefix",
            RouteError::NoSuchRoute(_) => "no_such_route",
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.as_str())?;
        match self {
            RouteError::TooManyRoutes => {
                write!(f, "an integration has at most {MAX_ROUTES} routes")
            }
            RouteError::PrefixEmpty => {
                f.write_str("a route needs a prefix (the default is `route default`)")
            }
            RouteError::PrefixTooLong => {
                write!(f, "a prefix is at most {MAX_PREFIX_BYTES} bytes")
            }
            RouteError::ControlCharacter => {
                f.write_str("prefixes, suffixes and values may not hold control characters")
            }
            RouteError::TooManyParams => write!(f, "at most {MAX_PARAMS} parameters"),
            RouteError::BadParamName(name) => write!(
                f,
                "{name:?} is not a parameter name (1 to {MAX_PARAM_NAME_BYTES} of a-z 0-9 _ . -, \
                 starting with a letter)"
            ),
            RouteError::ParamValueTooLong(name) => write!(
                f,
                "the value of {name} is over {MAX_PARAM_VALUE_BYTES} bytes"
            ),
            RouteError::OutputUnderWatchedPrefix { output, watched } => write!(
                f,
                "output prefix {output:?} lies under the watched prefix {watched:?}: the \
                 pipeline's results would become jobs again"
            ),
            RouteError::NoSuchRoute(prefix) => write!(f, "no route with prefix {prefix:?}"),
        }
    }
}

impl std::error::Error for RouteError {}

/// The route an object takes: the matched prefix (`None`: the default), its parameters and its
/// output prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub route: Option<&'a str>,
    pub params: &'a BTreeMap<String, String>,
    pub output_prefix: Option<&'a str>,
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn is_param_name(name: &str) -> bool {
    (1..=MAX_PARAM_NAME_BYTES).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

/// Checks a parameter map.
pub fn check_params(params: &BTreeMap<String, String>) -> Result<(), RouteError> {
    if params.len() > MAX_PARAMS {
        return Err(RouteError::TooManyParams);
    }
    for (name, value) in params {
        if !is_param_name(name) {
            return Err(RouteError::BadParamName(name.clone()));
        }
        if value.len() > MAX_PARAM_VALUE_BYTES {
            return Err(RouteError::ParamValueTooLong(name.clone()));
        }
        if has_control(value) {
            return Err(RouteError::ControlCharacter);
        }
    }
    Ok(())
}

impl Route {
    fn check(&self) -> Result<(), RouteError> {
        if self.prefix.is_empty() {
            return Err(RouteError::PrefixEmpty);
        }
        let texts = std::iter::once(&self.prefix)
            .chain(&self.suffixes)
            .chain(self.output_prefix.iter());
        for text in texts {
            if text.len() > MAX_PREFIX_BYTES {
                return Err(RouteError::PrefixTooLong);
            }
            if has_control(text) {
                return Err(RouteError::ControlCharacter);
            }
        }
        check_params(&self.params)
    }

    fn admits(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && (self.suffixes.is_empty() || self.suffixes.iter().any(|s| key.ends_with(s.as_str())))
    }
}

impl Integration {
    /// The route `key` takes: the longest matching route prefix, else the default.
    pub fn route_for(&self, key: &str) -> Matched<'_> {
        let best = self
            .routes
            .iter()
            .filter(|route| route.admits(key))
            .max_by_key(|route| route.prefix.len());
        match best {
            Some(route) => Matched {
                route: Some(&route.prefix),
                params: &route.params,
                output_prefix: route.output_prefix.as_deref(),
            },
            None => Matched {
                route: None,
                params: &self.default_params,
                output_prefix: self.output_prefix.as_deref(),
            },
        }
    }

    /// Whether `key` lies under one of the routes' output prefixes (loop protection).
    pub fn under_a_route_output(&self, key: &str) -> bool {
        self.routes.iter().any(|route| {
            route
                .output_prefix
                .as_deref()
                .is_some_and(|output| !output.is_empty() && key.starts_with(output))
        })
    }

    /// Adds `route`, or replaces the route with the same prefix; answers whether it replaced
    /// one. Refused by name when it breaks a limit or loop protection.
    pub fn put_route(&mut self, route: Route) -> Result<bool, RouteError> {
        route.check()?;
        let mut routes = self.routes.clone();
        let replaced = match routes.iter_mut().find(|r| r.prefix == route.prefix) {
            Some(existing) => {
                *existing = route;
                true
            }
            None => {
                if routes.len() >= MAX_ROUTES {
                    return Err(RouteError::TooManyRoutes);
                }
                routes.push(route);
                false
            }
        };
        check_outputs(self.prefix.as_deref(), &routes)?;
        self.routes = routes;
        Ok(replaced)
    }

    /// Removes the route with `prefix`.
    pub fn remove_route(&mut self, prefix: &str) -> Result<Route, RouteError> {
        let at = self
            .routes
            .iter()
            .position(|r| r.prefix == prefix)
            .ok_or_else(|| RouteError::NoSuchRoute(prefix.to_owned()))?;
        Ok(self.routes.remove(at))
    }
}

/// No route's output prefix lies under a watched prefix: the integration's (when it has one)
/// or any route's.
fn check_outputs(integration_prefix: Option<&str>, routes: &[Route]) -> Result<(), RouteError> {
    let watched: Vec<&str> = integration_prefix
        .filter(|p| !p.is_empty())
        .into_iter()
        .chain(routes.iter().map(|r| r.prefix.as_str()))
        .collect();
    for output in routes.iter().filter_map(|r| r.output_prefix.as_deref()) {
        if let Some(watched) = watched.iter().find(|w| output.starts_with(**w)) {
            return Err(RouteError::OutputUnderWatchedPrefix {
                output: output.to_owned(),
                watched: (*watched).to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integration::tests::sample;
    use crate::Provider;

    fn route(prefix: &str, params: &[(&str, &str)], output: Option<&str>) -> Route {
        Route {
            prefix: prefix.into(),
            suffixes: vec![],
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            output_prefix: output.map(str::to_owned),
        }
    }

    #[test]
    fn the_longest_matching_prefix_wins_and_the_default_applies_otherwise() {
        let mut integration = sample(Provider::R2);
        integration.output_prefix = Some("results/".into());
        integration.default_params = [("tier".to_owned(), "standard".to_owned())].into();
        integration
            .put_route(route(
                "invoices/",
                &[("tier", "premium")],
                Some("out/invoices/"),
            ))
            .unwrap();
        integration
            .put_route(route("invoices/eu/", &[("language", "de")], None))
            .unwrap();
        let eu = integration.route_for("invoices/eu/a.pdf");
        assert_eq!(eu.route, Some("invoices/eu/"));
        assert_eq!(eu.params["language"], "de");
        let invoices = integration.route_for("invoices/us/a.pdf");
        assert_eq!(
            (invoices.route, invoices.output_prefix),
            (Some("invoices/"), Some("out/invoices/"))
        );
        let other = integration.route_for("scans/a.pdf");
        assert_eq!((other.route, other.output_prefix), (None, Some("results/")));
        assert_eq!(other.params["tier"], "standard");
        assert!(integration.under_a_route_output("out/invoices/a.json"));
        assert!(!integration.under_a_route_output("invoices/a.pdf"));
    }

    #[test]
    fn a_route_with_suffixes_takes_only_those_keys() {
        let mut integration = sample(Provider::S3);
        let mut pdfs = route("scans/", &[("tier", "basic")], None);
        pdfs.suffixes = vec![".pdf".into()];
        integration.put_route(pdfs).unwrap();
        assert_eq!(integration.route_for("scans/a.pdf").route, Some("scans/"));
        assert_eq!(integration.route_for("scans/a.png").route, None);
    }

    #[test]
    fn each_limit_and_loop_is_refused_by_name() {
        let mut integration = sample(Provider::S3);
        let names = |r: Route, i: &mut Integration| i.put_route(r).unwrap_err().as_str();
        assert_eq!(
            names(route("", &[], None), &mut integration),
            "route_prefix_empty"
        );
        assert_eq!(
            names(route("a/", &[("Tier", "x")], None), &mut integration),
            "bad_param_name"
        );
        let long = "x".repeat(MAX_PARAM_VALUE_BYTES + 1);
        assert_eq!(
            names(route("a/", &[("tier", &long)], None), &mut integration),
            "param_value_too_long"
        );
        assert_eq!(
            names(route("a/\n", &[], None), &mut integration),
            "route_control_character"
        );
        assert_eq!(
            names(route("in/", &[], Some("in/results/")), &mut integration),
            "output_under_watched_prefix"
        );
        integration.put_route(route("b/", &[], None)).unwrap();
        assert_eq!(
            names(route("c/", &[], Some("b/out/")), &mut integration),
            "output_under_watched_prefix",
            "under another route's prefix"
        );
        for n in 1..MAX_ROUTES {
            integration
                .put_route(route(&format!("r{n}/"), &[], None))
                .unwrap();
        }
        assert_eq!(
            names(route("last/", &[], None), &mut integration),
            "too_many_routes"
        );
        assert!(
            integration
                .put_route(route("b/", &[("tier", "x")], None))
                .unwrap(),
            "the same prefix replaces its route, within the limit"
        );
        assert_eq!(
            integration.remove_route("nope/").unwrap_err().as_str(),
            "no_such_route"
        );
        assert_eq!(integration.remove_route("b/").unwrap().params["tier"], "x");
    }
}
