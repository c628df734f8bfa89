//! A small client of Cloudflare's v4 REST API, for `integrations connect-r2` and
//! `disconnect-r2`: one account, an API token, answers in the v4 envelope
//! (`{"success": …, "errors": [{"code", "message"}], "result": …}`).
//!
//! An error names the step that failed and Cloudflare's own error code and message; the token
//! is never in one (reqwest's errors carry the URL, which holds no token), nor in a log line.
//! With `dry_run`, reads are sent (the plan depends on them) and writes are only recorded.

use anyhow::{anyhow, bail};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// How long one API call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the customer's API token must allow, as the dashboard names the permissions (Cloudflare's
/// API reference names each endpoint's: Queues Write, Workers Scripts Write, Workers R2 Storage
/// Write), all on the one account.
pub(crate) const TOKEN_PERMISSIONS: [&str; 3] = [
    "Account · Queues · Edit",
    "Account · Workers Scripts · Edit",
    "Account · Workers R2 Storage · Edit",
];

/// A Cloudflare account id: 32 lowercase hex digits (the protocol's naming rule).
pub(crate) fn check_account(account: &str) -> anyhow::Result<()> {
    if relay_protocol::names::is_r2_account_id(account) {
        Ok(())
    } else {
        bail!("--cloudflare-account must be a Cloudflare account id: 32 lowercase hex digits")
    }
}

/// An API token: what Cloudflare issues is 40 characters of `[A-Za-z0-9_-]`; anything with
/// other characters (a pasted line with quotes, a header) is refused before it is sent.
pub(crate) struct Token(String);

impl Token {
    pub(crate) fn new(text: &str) -> anyhow::Result<Token> {
        let text = text.trim();
        if text.len() < 20
            || text.len() > 256
            || !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            bail!(
                "the Cloudflare API token is not one: 20 to 256 characters of letters, digits, \
                 `_`, `-` and `.` (given on stdin or in CLOUDFLARE_API_TOKEN)"
            );
        }
        Ok(Token(text.to_owned()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The API base URL: https, or http on the loopback interface (a local recording server).
pub(crate) fn check_base(base: &str) -> anyhow::Result<Url> {
    let url = Url::parse(base.trim_end_matches('/'))
        .map_err(|e| anyhow!("CLOUDFLARE_API_BASE_URL is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => bail!(
            "CLOUDFLARE_API_BASE_URL must be https (http only on 127.0.0.1 or localhost): the \
             token is sent to it"
        ),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        bail!("CLOUDFLARE_API_BASE_URL must be a plain base URL, without query or credentials");
    }
    Ok(url)
}

/// What a request sends.
pub(crate) enum Body {
    None,
    Json(Value),
    /// A worker upload: the metadata part, then the modules (name, content type, bytes).
    Script {
        metadata: Value,
        modules: Vec<(String, &'static str, Vec<u8>)>,
    },
}

/// A write `--dry-run` did not send.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PlannedRequest {
    pub step: String,
    pub method: String,
    pub path: String,
    /// The JSON body, with any secret's text replaced; for a worker upload, its metadata and
    /// the modules' names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// A failed call: the step, the HTTP status and Cloudflare's errors (code and message).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub step: String,
    pub status: Option<u16>,
    pub errors: Vec<(i64, String)>,
    pub transport: Option<String>,
}

impl ApiError {
    /// Whether Cloudflare answered 404 (the thing does not exist).
    pub(crate) fn not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step `{}` failed: ", self.step)?;
        if let Some(transport) = &self.transport {
            return write!(f, "cannot reach the Cloudflare API: {transport}");
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(code, message)| format!("Cloudflare error {code}: {message}"))
            .collect();
        if errors.is_empty() {
            write!(f, "Cloudflare answered HTTP {}", self.status.unwrap_or(0))?;
        } else {
            write!(
                f,
                "{} (HTTP {})",
                errors.join("; "),
                self.status.unwrap_or(0)
            )?;
        }
        if matches!(self.status, Some(401 | 403)) {
            write!(
                f,
                ": the token must be for this account, with {}",
                TOKEN_PERMISSIONS.join(", ")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// One account's API.
pub(crate) struct Cloudflare {
    client: reqwest::Client,
    base: Url,
    account: String,
    token: Token,
    dry_run: bool,
    planned: Mutex<Vec<PlannedRequest>>,
}

impl Cloudflare {
    pub(crate) fn new(
        base: Url,
        account: &str,
        token: Token,
        dry_run: bool,
    ) -> anyhow::Result<Self> {
        check_account(account)?;
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("bucket-relay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Cloudflare {
            client,
            base,
            account: account.to_owned(),
            token,
            dry_run,
            planned: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn account_id(&self) -> &str {
        &self.account
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The writes a dry run did not send.
    pub(crate) fn planned(&self) -> Vec<PlannedRequest> {
        self.planned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `GET` under the account.
    pub(crate) async fn get(&self, step: &str, path: &str) -> Result<Value, ApiError> {
        self.call(step, Method::GET, path, &[], Body::None).await
    }

    /// A request under the account (`path` starts with `/`; its segments are escaped by the
    /// caller's choice of names, which are checked). Writes are only recorded in a dry run.
    pub(crate) async fn call(
        &self,
        step: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<Value, ApiError> {
        let full = format!("/accounts/{}{path}", self.account);
        if self.dry_run && method != Method::GET {
            self.plan(step, &method, &full, &body);
            return Ok(Value::Null);
        }
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|()| ApiError {
                step: step.to_owned(),
                status: None,
                errors: Vec::new(),
                transport: Some("the API base URL cannot take a path".into()),
            })?;
            for segment in full.split('/').filter(|s| !s.is_empty()) {
                segments.push(segment);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self.client.request(method, url).bearer_auth(&self.token.0);
        let request = match body {
            Body::None => request,
            Body::Json(value) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(value.to_string()),
            Body::Script { metadata, modules } => {
                let mut form = reqwest::multipart::Form::new().part(
                    "metadata",
                    reqwest::multipart::Part::text(metadata.to_string())
                        .mime_str("application/json")
                        .expect("a valid mime type"),
                );
                for (name, content_type, bytes) in modules {
                    let part = reqwest::multipart::Part::bytes(bytes)
                        .file_name(name.clone())
                        .mime_str(content_type)
                        .expect("a valid mime type");
                    form = form.part(name, part);
                }
                request.multipart(form)
            }
        };
        let failed = |status: Option<StatusCode>, errors, transport| ApiError {
            step: step.to_owned(),
            status: status.map(|s| s.as_u16()),
            errors,
            transport,
        };
        let response = request
            .send()
            .await
            .map_err(|e| failed(None, Vec::new(), Some(transport(&e))))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| failed(Some(status), Vec::new(), Some(transport(&e))))?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let errors: Vec<(i64, String)> = answer["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        (
                            e["code"].as_i64().unwrap_or(0),
                            printable(e["message"].as_str().unwrap_or("")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !status.is_success() || answer["success"] != Value::Bool(true) {
            return Err(failed(Some(status), errors, None));
        }
        Ok(answer["result"].clone())
    }

    fn plan(&self, step: &str, method: &Method, path: &str, body: &Body) {
        let body = match body {
            Body::None => None,
            Body::Json(value) => Some(redacted(value)),
            Body::Script { metadata, modules } => Some(serde_json::json!({
                "metadata": redacted(metadata),
                "modules": modules.iter().map(|(name, content_type, bytes)| serde_json::json!({
                    "name": name, "content_type": content_type, "bytes": bytes.len(),
                })).collect::<Vec<_>>(),
            })),
        };
        self.planned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(PlannedRequest {
                step: step.to_owned(),
                method: method.to_string(),
                path: path.to_owned(),
                body,
            });
    }
}

/// A JSON body with every `text` of a secret replaced.
fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let secret = map.get("type").and_then(Value::as_str) == Some("secret_text");
            Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = if secret && k == "text" {
                            Value::String("<redacted>".into())
                        } else {
                            redacted(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// An error message from the API, as a terminal may show it: control characters removed and
/// at most 300 characters.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// Why a request did not get an answer, without the URL's query (none carries a secret, but
/// an error is shown as is).
fn transport(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match error.url().and_then(Url::host_str) {
        Some(host) => format!("{kind} ({host})"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_is_told_what_it_needs() {
        let error = ApiError {
            step: "queue r2-events".into(),
            status: Some(403),
            errors: vec![(10000, "Authentication error".into())],
            transport: None,
        };
        let text = error.to_string();
        assert!(text.contains("Cloudflare error 10000: Authentication error (HTTP 403)"));
        assert!(
            text.contains("Account · Workers R2 Storage · Edit"),
            "{text}"
        );
    }

    #[test]
    fn the_customers_pages_list_the_token_s_permissions() {
        for page in ["README.md", "docs/customers-r2.md"] {
            let path = format!("{}/../{page}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            for permission in TOKEN_PERMISSIONS {
                assert!(text.contains(permission), "{page} lacks {permission}");
            }
        }
    }

    #[test]
    fn only_a_cloudflare_account_id_is_taken() {
        assert!(check_account("4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f").is_ok());
        for bad in [
            "",
            "4F3C1E0D9B8A7C6D5E4F3A2B1C0D9E8F",
            "../../user/tokens",
            "4f3c",
        ] {
            assert!(check_account(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_is_checked_and_never_shown() {
        let token = Token::new(" abcdefghijklmnopqrstuvwxyz0123456789ABCD\n").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert!(Token::new("short").is_err());
        assert!(Token::new("abcdefghijklmnopqrstuvwxyz\r\nX-Evil: 1").is_err());
    }

    #[test]
    fn the_base_url_is_https_or_loopback_http() {
        assert!(check_base(super::super::args::CLOUDFLARE_API_BASE).is_ok());
        assert!(check_base("http://127.0.0.1:8080/client/v4").is_ok());
        assert!(check_base("http://localhost:1/client/v4").is_ok());
        for bad in [
            "http://api.cloudflare.com/client/v4",
            "http://10.0.0.1/client/v4",
            "https://user:pw@api.cloudflare.com/",
            "https://api.cloudflare.com/client/v4?x=1",
            "ftp://x",
        ] {
            assert!(check_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_dry_run_shows_no_secret_text() {
        let body = serde_json::json!({"bindings": [
            {"type": "plain_text", "name": "A", "text": "shown"},
            {"type": "secret_text", "name": "S", "text": "whsec_hidden"},
        ], "name": "S", "text": "kept: not a secret_text object"});
        let shown = redacted(&body).to_string();
        assert!(
            shown.contains("shown") && !shown.contains("whsec_hidden"),
            "{shown}"
        );
    }

    #[test]
    fn an_error_names_the_step_and_cloudflare_s_code() {
        let error = ApiError {
            step: "queue r2-events".into(),
            status: Some(400),
            errors: vec![(11003, printable("bad\u{1b}[31m name"))],
            transport: None,
        };
        assert_eq!(
            error.to_string(),
            "step `queue r2-events` failed: Cloudflare error 11003: bad[31m name (HTTP 400)"
        );
    }
}
