//! Bucket Relay's Cloudflare Worker: the R2 side of the relay, deployed by customers with
//! `wrangler deploy`.
//!
//! It consumes the R2 bucket's event-notification queue. Per batch it acks what its filters drop,
//! forwards the rest as ONE Standard Webhooks–signed POST to the receiver, then acks, retries (with
//! a backoff that grows with the message's age) or dead-letters every message by the receiver's
//! per-event answer. Nothing is dropped silently: a configuration error, a transport failure or a
//! non-200 answer retries the whole batch.
//!
//! - [`core`]: the pure part (configuration, filters, backoff, the per-message plan), unit-tested
//!   natively.
//! - the `queue` and `fetch` handlers below: the shell, built for wasm32 only.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod shell {
    use crate::core::{
        backoff_seconds, batch_id, bundle_version, plan, retry_cap, Action, Answer, BatchLine,
        Config, ConfigError, ConsumedByQueue, Counts, ErrorWord, Health, LogLine, Queues, Source,
        CONFIG_ERROR, MAX_RETRY_SECONDS,
    };
    use futures_util::future::{select, Either};
    use relay_protocol::webhook;
    use relay_protocol::wire::{
        self, BatchEvent, WorkerBatch, WORKER_DLQ_BINDING, WORKER_VAR_MAX_RETRY_DELAY,
    };
    use relay_protocol::Outcome;
    use serde_json::value::RawValue;
    use std::borrow::Cow;
    use std::cell::RefCell;
    use std::pin::pin;
    use std::rc::Rc;
    use worker::*;

    thread_local! {
        /// The checked configuration, signing key included, kept for the isolate's life: vars
        /// and secrets only change with a new deployment, which starts new isolates.
        static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
        /// The batches this isolate consumed from each queue, for `/healthz`.
        static SEEN: RefCell<ConsumedByQueue> = const { RefCell::new(ConsumedByQueue::new()) };
    }

    /// The configuration, read and checked on the isolate's first batch; errors are not kept,
    /// so every batch names them until the configuration is fixed.
    fn config(env: &Env) -> std::result::Result<Rc<Config>, Vec<ConfigError>> {
        if let Some(config) = CONFIG.with_borrow(Option::clone) {
            return Ok(config);
        }
        let config = Rc::new(Config::from_vars(|name| read(env, name), parse_url)?);
        CONFIG.set(Some(Rc::clone(&config)));
        Ok(config)
    }

    fn log(line: LogLine<'_>) {
        console_log!("{}", line.to_json());
    }

    /// A URL's scheme and host as the runtime's own `URL` reads it: the parser `fetch` uses.
    fn parse_url(url: &str) -> Option<(String, String)> {
        let url = web_sys::Url::new(url).ok()?;
        let protocol = url.protocol();
        Some((protocol.strip_suffix(':')?.to_owned(), url.hostname()))
    }

    /// A var or a secret, whichever the name is bound as.
    fn read(env: &Env, name: &str) -> Option<String> {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
    }

    /// A queue message and its body as JSON text: one `JSON.stringify` in the runtime, not a
    /// walk over the JS object field by field into Rust values. The text goes on to the receiver
    /// as it is.
    struct Delivery {
        message: RawMessage,
        body: Box<RawValue>,
    }

    impl Delivery {
        fn read(message: RawMessage) -> Result<Self> {
            let text = js_sys::JSON::stringify(&message.body())
                .ok()
                .and_then(|text| text.as_string())
                .ok_or_else(|| Error::RustError("a message body is not JSON".into()))?;
            let body = RawValue::from_string(text)?;
            Ok(Delivery { message, body })
        }
    }

    impl std::ops::Deref for Delivery {
        type Target = RawMessage;

        fn deref(&self) -> &RawMessage {
            &self.message
        }
    }

    fn age_seconds(message: &RawMessage, now_ms: u64) -> f64 {
        now_ms.saturating_sub(message.timestamp().as_millis()) as f64 / 1000.0
    }

    fn retry(message: &RawMessage, now_ms: u64, max_delay: u32, reason: &str) -> u32 {
        let delay = backoff_seconds(age_seconds(message, now_ms), max_delay);
        message.retry_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(delay)
                .build(),
        );
        log(LogLine::MessageRetry {
            id: &message.id(),
            reason,
            delay_seconds: delay,
        });
        delay
    }

    /// The batch's type parameter is never used: the bodies are read raw ([`Delivery::read`]),
    /// so workers-rs deserialises nothing.
    #[event(queue)]
    pub async fn queue(batch: MessageBatch<()>, env: Env, _ctx: Context) -> Result<()> {
        let messages = batch
            .raw_iter()
            .map(Delivery::read)
            .collect::<Result<Vec<_>>>()?;
        let now_ms = Date::now().as_millis();
        let queue = batch.queue();
        let source = Source::of(&queue);
        SEEN.with_borrow_mut(|seen| seen.record(&queue, messages.len(), now_ms));
        let max_delay = retry_cap(read(&env, WORKER_VAR_MAX_RETRY_DELAY));
        let config = match config(&env) {
            Ok(config) => config,
            Err(errors) => {
                retry_for_config(&messages, &errors, now_ms, max_delay);
                let counts = Counts::of("retried", messages.len() as u32);
                log(LogLine::Batch(BatchLine {
                    reason: Some(CONFIG_ERROR),
                    ..BatchLine::new(&queue, source, messages.len(), &counts)
                }));
                return Ok(());
            }
        };
        let mut counts = Counts::default();
        let forwarded = ack_filtered(&config, &messages, &mut counts);
        if forwarded.is_empty() {
            log(LogLine::Batch(BatchLine {
                integration_id: Some(&config.integration_id),
                ..BatchLine::new(&queue, source, messages.len(), &counts)
            }));
            return Ok(());
        }
        let ids: Vec<String> = forwarded.iter().map(|m| m.id()).collect();
        let status = match forward(&config, &forwarded, &ids, now_ms).await {
            Ok(results) => {
                for ((_, action), message) in
                    plan(source, &ids, &results).into_iter().zip(&forwarded)
                {
                    let word = settle(&env, message, action, now_ms, max_delay).await;
                    counts.add(word, 1);
                }
                200
            }
            Err((status, reason)) => {
                for message in &forwarded {
                    retry(message, now_ms, max_delay, &reason);
                }
                counts.add("retried", forwarded.len() as u32);
                status
            }
        };
        log(LogLine::Batch(BatchLine {
            integration_id: Some(&config.integration_id),
            forwarded: forwarded.len(),
            receiver_status: Some(status),
            ..BatchLine::new(&queue, source, messages.len(), &counts)
        }));
        Ok(())
    }

    /// A configuration error: every message is retried (never dropped) and each error logged.
    fn retry_for_config(
        messages: &[Delivery],
        errors: &[ConfigError],
        now_ms: u64,
        max_delay: u32,
    ) {
        for error in errors {
            log(LogLine::ConfigError {
                error: error.code(),
                detail: &error.to_string(),
            });
        }
        for message in messages {
            retry(message, now_ms, max_delay, CONFIG_ERROR);
        }
    }

    /// Acks what the filters drop; answers the messages to forward.
    fn ack_filtered<'a>(
        config: &Config,
        messages: &'a [Delivery],
        counts: &mut Counts,
    ) -> Vec<&'a Delivery> {
        let mut forwarded = Vec::new();
        for message in messages {
            match config.filter(message.body.get()) {
                Some(reason) => {
                    message.ack();
                    counts.add("filtered", 1);
                    log(LogLine::MessageFiltered {
                        id: &message.id(),
                        reason: reason.as_str(),
                    });
                }
                None => forwarded.push(message),
            }
        }
        forwarded
    }

    /// The one signed request of a batch: the receiver's results, or (status, reason) to retry.
    async fn forward(
        config: &Config,
        messages: &[&Delivery],
        ids: &[String],
        now_ms: u64,
    ) -> std::result::Result<Answer, (u16, String)> {
        let request = signed_request(config, messages, ids, now_ms)?;
        let (status, text) = exchange(config, request).await?;
        if status != 200 {
            let reason = serde_json::from_str::<ErrorWord>(&text)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("http_{status}"));
            log(LogLine::ReceiverRefused {
                status,
                reason: &reason,
                receiver_host: &config.receiver_host,
            });
            return Err((status, reason));
        }
        serde_json::from_str::<Answer>(&text).map_err(|e| {
            log(LogLine::ReceiverAnswerUnreadable {
                error: &e.to_string(),
            });
            (status, "unreadable_answer".to_owned())
        })
    }

    /// The batch as one Standard Webhooks–signed POST to the events URL.
    fn signed_request(
        config: &Config,
        messages: &[&Delivery],
        ids: &[String],
        now_ms: u64,
    ) -> std::result::Result<Request, (u16, String)> {
        let batch = WorkerBatch {
            events: ids
                .iter()
                .zip(messages)
                .map(|(id, message)| BatchEvent {
                    id: Cow::Borrowed(id.as_str()),
                    notification: &message.body,
                })
                .collect(),
        };
        let body = serde_json::to_string(&batch).map_err(|e| (0, e.to_string()))?;
        let msg_id = batch_id(ids);
        let timestamp = (now_ms / 1000) as i64;
        let headers = Headers::new();
        let set =
            |name: &str, value: &str| headers.set(name, value).map_err(|e| (0, e.to_string()));
        set("content-type", "application/json")?;
        set(webhook::HEADER_ID, &msg_id)?;
        set(webhook::HEADER_TIMESTAMP, &timestamp.to_string())?;
        set(
            webhook::HEADER_SIGNATURE,
            &config.key.sign(&msg_id, timestamp, body.as_bytes()),
        )?;
        set(wire::HEADER_WORKER_BUNDLE, &config.bundle)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(body.into()));
        Request::new_with_init(&config.events_url, &init).map_err(|e| (0, e.to_string()))
    }

    /// Sends the request and reads the answer, all within the timeout; past it the request is
    /// aborted and the batch retried (the receiver's ledger makes the retry safe).
    async fn exchange(
        config: &Config,
        request: Request,
    ) -> std::result::Result<(u16, String), (u16, String)> {
        let controller = AbortController::default();
        let signal = controller.signal();
        let exchange = async {
            let mut response = Fetch::Request(request).send_with_signal(&signal).await?;
            let text = response.text().await.unwrap_or_default();
            Ok::<_, Error>((response.status_code(), text))
        };
        let deadline = Delay::from(std::time::Duration::from_secs(u64::from(
            config.timeout_seconds,
        )));
        let (exchange, deadline) = (pin!(exchange), pin!(deadline));
        let outcome = select(exchange, deadline).await;
        match outcome {
            Either::Left((Ok(answer), _)) => Ok(answer),
            Either::Left((Err(e), _)) => {
                log(LogLine::ReceiverUnreachable {
                    receiver_host: &config.receiver_host,
                    error: &e.to_string(),
                });
                Err((0, "transport_error".into()))
            }
            Either::Right(_) => {
                controller.abort();
                log(LogLine::ReceiverTimeout {
                    receiver_host: &config.receiver_host,
                    timeout_seconds: config.timeout_seconds,
                });
                Err((0, "receiver_timeout".into()))
            }
        }
    }

    /// Carries out one message's action; answers the word it is counted under.
    async fn settle(
        env: &Env,
        message: &RawMessage,
        action: Action,
        now_ms: u64,
        max_delay: u32,
    ) -> &'static str {
        match action {
            Action::Ack { outcome } => {
                message.ack();
                outcome.as_str()
            }
            Action::Retry { reason } => {
                retry(message, now_ms, max_delay, &reason);
                Outcome::RetryLater.as_str()
            }
            Action::Keep { reason } => {
                message.retry_with_options(
                    &QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(MAX_RETRY_SECONDS)
                        .build(),
                );
                log(LogLine::MessageKept {
                    id: &message.id(),
                    reason: &reason,
                    delay_seconds: MAX_RETRY_SECONDS,
                });
                "kept"
            }
            Action::DeadLetter { reason } => {
                // The original notification goes to the dead-letter queue, as delivered (its JS
                // value, not a re-serialisation), so it can be replayed into the events queue once
                // the cause is fixed; the reason is in the log.
                let raw = RawMessageBuilder::new(message.body())
                    .build_with_content_type(QueueContentType::Json);
                let sent = match env.queue(WORKER_DLQ_BINDING) {
                    Ok(dlq) => dlq.send_raw(raw).await,
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(()) => {
                        message.ack();
                        log(LogLine::MessageDeadLettered {
                            id: &message.id(),
                            reason: &reason,
                        });
                        Outcome::Rejected.as_str()
                    }
                    Err(e) => {
                        log(LogLine::DeadLetterFailed {
                            id: &message.id(),
                            reason: &reason,
                            error: &e.to_string(),
                        });
                        retry(message, now_ms, max_delay, "dead_letter_failed");
                        Outcome::RetryLater.as_str()
                    }
                }
            }
        }
    }

    #[event(fetch)]
    pub async fn fetch(request: Request, env: Env, _ctx: Context) -> Result<Response> {
        if request.path() != wire::HEALTH_PATH || request.method() != Method::Get {
            return Response::error("not found", 404);
        }
        let secret_set = read(&env, relay_protocol::wire::WORKER_SECRET_NAME).is_some();
        let consumed = SEEN.with_borrow(ConsumedByQueue::clone);
        let queues = Queues::new(&consumed);
        // The prebuilt bundle's version when packaged (`worker package`); a build from source
        // has none.
        let bundle = bundle_version(read(&env, wire::WORKER_VAR_BUNDLE));
        let config = Config::from_vars(|name| read(&env, name), parse_url);
        let body = match &config {
            Ok(config) => Health::Ok {
                bundle,
                max_retry_delay_seconds: config.max_retry_seconds,
                integration_id: &config.integration_id,
                receiver_host: &config.receiver_host,
                secret_set,
                actions: &config.actions,
                prefix: config.prefix.as_deref(),
                suffixes: &config.suffixes,
                receiver_timeout_seconds: config.timeout_seconds,
                queues,
            },
            Err(errors) => Health::Misconfigured {
                bundle,
                integration_id: read(&env, relay_protocol::wire::WORKER_VAR_INTEGRATION_ID),
                secret_set,
                problems: errors.iter().map(|e| e.to_string()).collect(),
                queues,
            },
        };
        let status = body.status_code();
        Ok(Response::from_json(&body)?.with_status(status))
    }
}
