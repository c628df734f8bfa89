//! `integrations test ID --receiver-url URL`: sends the test event ([`crate::test_event`]) to a
//! running receiver with `reqwest`, step by step: the name resolves, a connection (and TLS)
//! opens, an answer comes back, and the receiver's answer is read.

use super::commands::{load, master_key, CliResult};
use super::print;
use crate::backend::error_chain;
use crate::test_event::{self, judge, SendAs, Step, Verdict};
use crate::wiring::Wired;
use chrono::Utc;
use std::time::Duration;

/// How long the test waits for the receiver: the worker's default.
const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn test_event(
    wired: &Wired,
    id: &str,
    receiver_url: &str,
    send_as: SendAs,
    json: bool,
) -> CliResult {
    let integration = load(wired.backends.store.as_ref(), id).await?;
    let master = match send_as.secret {
        // Signing with a given secret needs no master key.
        Some(_) => None,
        None => Some(master_key(wired).await?),
    };
    let request = test_event::build(
        &integration,
        master.as_ref().map_or(&[][..], |key| key.as_bytes()),
        &send_as,
        receiver_url,
        Utc::now(),
    );
    let verdict = send(&request).await;
    print::print_event_test(&integration, receiver_url, &request, &verdict, json);
    match &verdict.cause {
        None => Ok(()),
        Some(cause) => Err(format!("the test event for {id} failed: {cause}")),
    }
}

async fn send(request: &test_event::TestRequest) -> Verdict {
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
