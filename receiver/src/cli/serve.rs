//! `serve`, and what the process runs as on Lambda: the one place the runtime is chosen.

use super::args::{Metrics, ServeArgs};
use super::common::CliResult;
use super::listing;
use crate::env;
use crate::handler::Relay;
use crate::poll::Poller;
use crate::telemetry::{install_metrics, MetricsSinks};
use crate::wiring::Wired;
use anyhow::anyhow;
use std::path::Path;
use std::sync::Arc;

/// What this process runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Runtime {
    /// `serve`: the handler as a plain HTTP server.
    Http,
    /// On Lambda, behind a function URL: the handler through `lambda_http`.
    LambdaHttp,
    /// On Lambda with `RELAY_LAMBDA_HANDLER=poll`: one poll tick per scheduled invocation.
    LambdaPoller,
}

impl Runtime {
    /// Lambda sets `AWS_LAMBDA_RUNTIME_API`; the poller function also sets
    /// `RELAY_LAMBDA_HANDLER=poll`.
    pub(crate) fn from_env() -> Runtime {
        if std::env::var_os(env::LAMBDA_RUNTIME_API).is_none() {
            return Runtime::Http;
        }
        match std::env::var(env::LAMBDA_HANDLER).as_deref() {
            Ok(env::LAMBDA_HANDLER_POLL) => Runtime::LambdaPoller,
            _ => Runtime::LambdaHttp,
        }
    }

    pub(crate) fn on_lambda(self) -> bool {
        self != Runtime::Http
    }
}

/// Runs the handler (or the poller) in `runtime` until the process is told to stop.
pub(crate) async fn serve(
    wired: Wired,
    data_dir: &Path,
    args: ServeArgs,
    runtime: Runtime,
) -> CliResult {
    let sinks = MetricsSinks {
        emf: args
            .metrics
            .map_or(runtime.on_lambda(), |m| m == Metrics::Emf),
        prometheus: args.metrics_listen.is_some() && runtime == Runtime::Http,
    };
    let installed = install_metrics(sinks).map_err(|e| anyhow!("cannot record metrics: {e}"))?;
    if let Some(buffer) = &wired.usage_buffer {
        if runtime.on_lambda() {
            crate::lambda::flush_on_shutdown(Arc::clone(buffer)).await;
        } else {
            buffer.spawn_ticker();
        }
    }
    if runtime == Runtime::LambdaPoller {
        let poller = Poller::new(&wired.backends, wired.keys, wired.buckets);
        return crate::lambda::run_poller(Arc::new(poller))
            .await
            .map_err(|e| anyhow!(e));
    }
    #[cfg(feature = "embedded")]
    if wired.embedded.is_some() {
        // A local key file that cannot be read would answer every request 503 until someone
        // mends it: refuse to start instead. (A key in Secrets Manager is read at the first
        // request and answered 503 while it cannot be: an outage there must not stop the server.)
        wired.keys.keyring().await?;
    }
    if let (Some(every), Runtime::Http) = (args.poll_every, runtime) {
        listing::spawn_ticks(&wired, *every).await;
    }
    #[cfg(feature = "server")]
    let backlog = Arc::clone(&wired.backends.backlog);
    let relay = Arc::new(Relay::new(wired.backends, wired.keys).with_lookup(wired.lookups));
    if runtime == Runtime::LambdaHttp {
        return crate::lambda::run(relay).await.map_err(|e| anyhow!(e));
    }
    #[cfg(feature = "server")]
    {
        crate::events::Starting {
            data_dir: data_dir.display().to_string(),
            listen: args.listen.to_string(),
        }
        .emit();
        if let (Some(address), Some(handle)) = (args.metrics_listen, installed.prometheus) {
            crate::serve::metrics::serve(address, handle, backlog)
                .await
                .map_err(|e| anyhow!("cannot answer /metrics on {address}: {e}"))?;
        }
        let limits = crate::serve::Limits {
            connections: args.max_connections as usize,
            body_bytes: args.max_body_buffer_mib as usize * 1024 * 1024,
        };
        crate::serve::run(relay, args.listen, *args.read_timeout, limits)
            .await
            .map_err(|e| anyhow!("cannot serve on {}: {e}", args.listen))
    }
    #[cfg(not(feature = "server"))]
    {
        let _ = (data_dir, relay, installed);
        Err(anyhow!(
            "this build serves only on Lambda (it was built without the `server` feature), \
             not on {}",
            args.listen
        ))
    }
}
