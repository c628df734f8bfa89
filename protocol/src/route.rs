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

/// The route `key` takes among `routes`: the longest matching prefix, else the default
/// (`default_params`, `default_output`).
pub fn route_for<'a>(
    routes: &'a [Route],
    default_params: &'a BTreeMap<String, String>,
    default_output: Option<&'a str>,
    key: &str,
) -> Matched<'a> {
    let best = routes
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
            params: default_params,
            output_prefix: default_output,
        },
    }
}

/// Whether `key` lies under one of the routes' output prefixes (loop protection).
pub fn under_an_output(routes: &[Route], key: &str) -> bool {
    routes.iter().any(|route| {
        route
            .output_prefix
            .as_deref()
            .is_some_and(|output| !output.is_empty() && key.starts_with(output))
    })
}

/// Adds `route` to `routes`, or replaces the one with the same prefix; answers whether it
/// replaced one. `watched` is the integration's own prefix. Refused by name when it breaks a
/// limit or loop protection; `routes` is then unchanged.
pub fn put(
    routes: &mut Vec<Route>,
    watched: Option<&str>,
    route: Route,
) -> Result<bool, RouteError> {
    route.check()?;
    let mut next = routes.clone();
    let replaced = match next.iter_mut().find(|r| r.prefix == route.prefix) {
        Some(existing) => {
            *existing = route;
            true
        }
        None => {
            if next.len() >= MAX_ROUTES {
                return Err(RouteError::TooManyRoutes);
            }
            next.push(route);
            false
        }
    };
    check_outputs(watched, &next)?;
    *routes = next;
    Ok(replaced)
}

/// Removes the route with `prefix` from `routes`.
pub fn remove(routes: &mut Vec<Route>, prefix: &str) -> Result<Route, RouteError> {
    let at = routes
        .iter()
        .position(|r| r.prefix == prefix)
        .ok_or_else(|| RouteError::NoSuchRoute(prefix.to_owned()))?;
    Ok(routes.remove(at))
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
        let mut routes = Vec::new();
        let defaults: BTreeMap<String, String> =
            [("tier".to_owned(), "standard".to_owned())].into();
        put(
            &mut routes,
            None,
            route("invoices/", &[("tier", "premium")], Some("out/invoices/")),
        )
        .unwrap();
        put(
            &mut routes,
            None,
            route("invoices/eu/", &[("language", "de")], None),
        )
        .unwrap();
        let at = |key| route_for(&routes, &defaults, Some("results/"), key);
        let eu = at("invoices/eu/a.pdf");
        assert_eq!(eu.route, Some("invoices/eu/"));
        assert_eq!(eu.params["language"], "de");
        let invoices = at("invoices/us/a.pdf");
        assert_eq!(
            (invoices.route, invoices.output_prefix),
            (Some("invoices/"), Some("out/invoices/"))
        );
        let other = at("scans/a.pdf");
        assert_eq!((other.route, other.output_prefix), (None, Some("results/")));
        assert_eq!(other.params["tier"], "standard");
        assert!(under_an_output(&routes, "out/invoices/a.json"));
        assert!(!under_an_output(&routes, "invoices/a.pdf"));
    }

    #[test]
    fn a_route_with_suffixes_takes_only_those_keys() {
        let mut pdfs = route("scans/", &[("tier", "basic")], None);
        pdfs.suffixes = vec![".pdf".into()];
        let routes = vec![pdfs];
        let none = BTreeMap::new();
        assert_eq!(
            route_for(&routes, &none, None, "scans/a.pdf").route,
            Some("scans/")
        );
        assert_eq!(route_for(&routes, &none, None, "scans/a.png").route, None);
    }

    #[test]
    fn each_limit_and_loop_is_refused_by_name() {
        let mut routes = Vec::new();
        let name =
            |r: Route, routes: &mut Vec<Route>| put(routes, Some("in/"), r).unwrap_err().as_str();
        assert_eq!(
            name(route("", &[], None), &mut routes),
            "route_prefix_empty"
        );
        assert_eq!(
            name(route("a/", &[("Tier", "x")], None), &mut routes),
            "bad_param_name"
        );
        let long = "x".repeat(MAX_PARAM_VALUE_BYTES + 1);
        assert_eq!(
            name(route("a/", &[("tier", &long)], None), &mut routes),
            "param_value_too_long"
        );
        assert_eq!(
            name(route("a/\n", &[], None), &mut routes),
            "route_control_character"
        );
        assert_eq!(
            name(route("x/", &[], Some("in/results/")), &mut routes),
            "output_under_watched_prefix",
            "under the integration's prefix"
        );
        put(&mut routes, Some("in/"), route("b/", &[], None)).unwrap();
        assert_eq!(
            name(route("c/", &[], Some("b/out/")), &mut routes),
            "output_under_watched_prefix",
            "under another route's prefix"
        );
        for n in 1..MAX_ROUTES {
            put(
                &mut routes,
                Some("in/"),
                route(&format!("r{n}/"), &[], None),
            )
            .unwrap();
        }
        assert_eq!(
            name(route("last/", &[], None), &mut routes),
            "too_many_routes"
        );
        assert!(
            put(
                &mut routes,
                Some("in/"),
                route("b/", &[("tier", "x")], None)
            )
            .unwrap(),
            "the same prefix replaces its route, within the limit"
        );
        assert_eq!(
            remove(&mut routes, "nope/").unwrap_err().as_str(),
            "no_such_route"
        );
        assert_eq!(remove(&mut routes, "b/").unwrap().params["tier"], "x");
    }
}
