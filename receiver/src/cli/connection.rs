//! `integrations test ID --receiver-url URL`: sends the test event ([`super::test_event`]) to a
//! running receiver with `reqwest`, step by step: the name resolves, a connection (and TLS)
//! opens, an answer comes back, and the receiver's answer is read.

use super::args::TestArgs;
use super::common::{keyring, load, CliResult, Report, Safe};
use super::test_event::{self, SendAs, TestRequest};
use super::verdict::{judge, Step, Verdict};
use crate::backend::error_chain;
use crate::wiring::Wired;
use anyhow::Context;
use chrono::Utc;
use relay_protocol::webhook::SigningKey;
use relay_protocol::Integration;
use serde::{Serialize, Serializer};
use std::fmt::{self, Write};
use std::time::Duration;

/// How long the test waits for the receiver: the worker's default.
const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn test_event(
    wired: &Wired,
    args: &TestArgs,
    receiver_url: &str,
) -> CliResult<EventTest> {
    let integration = load(wired.backends.store.as_ref(), &args.id).await?;
    let send_as = SendAs {
        bucket: args.bucket.clone(),
        account: args.account.clone(),
        secret: args.secret_stdin.then(read_secret).transpose()?,
    };
    let current = match &send_as.secret {
        // Signing with a given secret needs no master key.
        Some(given) => given.clone(),
        None => {
            keyring(wired)
                .await?
                .current_signing_key(&integration)
                .await?
        }
    };
    let request = test_event::build(&integration, &current, &send_as, receiver_url, Utc::now());
    let verdict = send(&request).await;
    Ok(EventTest {
        integration,
        receiver_url: receiver_url.to_owned(),
        request,
        verdict,
    })
}

/// A `whsec_…` secret from stdin, for `--secret-stdin`; never echoed.
fn read_secret() -> CliResult<SigningKey> {
    let mut text = String::new();
    std::io::stdin()
        .read_line(&mut text)
        .context("cannot read the secret from stdin")?;
    SigningKey::from_secret(text.trim())
        .ok()
        .context("stdin does not hold a whsec_… secret")
}

/// The test event's steps, then the cause and what to do.
pub(crate) struct EventTest {
    integration: Integration,
    receiver_url: String,
    request: TestRequest,
    verdict: Verdict,
}

impl Serialize for EventTest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            id: &'a str,
            receiver_url: &'a str,
            sent_as: &'a str,
            key: &'a str,
            ok: bool,
            cause: &'a Option<String>,
            hint: &'a Option<String>,
            steps: &'a [Step],
        }
        Doc {
            id: &self.integration.id,
            receiver_url: &self.receiver_url,
            sent_as: self.request.sender.as_str(),
            key: &self.request.key,
            ok: self.verdict.cause.is_none(),
            cause: &self.verdict.cause,
            hint: &self.verdict.hint,
            steps: &self.verdict.steps,
        }
        .serialize(serializer)
    }
}

impl Report for EventTest {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let i = &self.integration;
        writeln!(
            out,
            "Test event for {} ({} bucket {}), sent as the {} sends it, to {}:",
            i.id,
            i.provider,
            i.bucket,
            self.request.sender.as_str(),
            self.receiver_url
        )?;
        for step in &self.verdict.steps {
            let word = if step.ok { "ok" } else { "FAIL" };
            writeln!(out, "  {word:<5} {:<12} {}", step.step, Safe(&step.detail))?;
        }
        match (&self.verdict.cause, &self.verdict.hint) {
            (Some(cause), Some(hint)) => writeln!(out, "cause: {cause}\nhint:  {hint}"),
            _ => writeln!(
                out,
                "OK: the receiver takes this integration's events (the test made no job)."
            ),
        }
    }

    fn failure(&self) -> Option<String> {
        let cause = self.verdict.cause.as_ref()?;
        let id = &self.integration.id;
        Some(format!("the test event for {id} failed: {cause}"))
    }
}

async fn send(request: &TestRequest) -> Verdict {
    let mut steps = Vec::new();
    let url = match reqwest::Url::parse(&request.url) {
        Ok(url) => url,
        Err(e) => {
            return Verdict::failed(steps, Step::failed("url", e.to_string()), "bad_url");
        }
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Verdict::failed(
            steps,
            Step::failed("url", "no host in the receiver URL"),
            "bad_url",
        );
    };
    match tokio::net::lookup_host((host.trim_matches(['[', ']']), port)).await {
        Ok(mut addresses) => {
            let first = addresses.next().map(|a| a.ip().to_string());
            steps.push(Step::ok(
                "dns",
                format!("{host} → {}", first.unwrap_or_default()),
            ));
        }
        Err(e) => return Verdict::failed(steps, Step::failed("dns", e.to_string()), "dns"),
    }
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => return Verdict::failed(steps, Step::failed("connect", e.to_string()), "connect"),
    };
    let mut call = client.post(url.clone()).body(request.body.clone());
    for (name, value) in &request.headers {
        call = call.header(*name, value);
    }
    let response = match call.send().await {
        Ok(response) => response,
        Err(e) => {
            let (step, cause) = transport_cause(&e, url.scheme() == "https");
            return Verdict::failed(steps, Step::failed(step, error_chain(&e)), cause);
        }
    };
    steps.push(Step::ok(
        "connect",
        match url.scheme() {
            "https" => "connected, TLS verified",
            _ => "connected (plain http)",
        },
    ));
    let status = response.status().as_u16();
    match response.text().await {
        Ok(body) => judge(steps, status, &body),
        Err(e) => {
            let (step, cause) = transport_cause(&e, false);
            Verdict::failed(steps, Step::failed(step, error_chain(&e)), cause)
        }
    }
}

/// The step and named cause of a transport failure. reqwest marks connect and timeout
/// failures; a TLS failure is a connect failure whose causes name the handshake.
fn transport_cause(error: &reqwest::Error, https: bool) -> (&'static str, &'static str) {
    // The causes only: the message itself names the URL, whose host may say "tls" or "ssl".
    let chain = std::error::Error::source(error)
        .map(error_chain)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let tls = [
        "certificate",
        "tls",
        "handshake",
        "ssl",
        "invalidcontenttype",
    ];
    if error.is_timeout() {
        ("connect", "timeout")
    } else if https && tls.iter().any(|word| chain.contains(word)) {
        ("tls", "tls")
    } else if error.is_connect() {
        ("connect", "connect")
    } else {
        ("http", "connect")
    }
}
