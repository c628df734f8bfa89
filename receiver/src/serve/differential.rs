//! The request-head guard ([`super::head::Guarded`]) against hyper, on the same bytes.
//!
//! The guard follows each connection's framing itself, so that it finds every request head
//! before hyper does. If the two ever disagreed on where a request ends, the guard would refuse
//! a request hyper takes (and answer in the middle of hyper's answers), or let a head through
//! unchecked. So generated streams of pipelined requests, written in random pieces, are served by
//! hyper twice, once alone and once behind the guard:
//!
//! - well-framed streams (lengths, chunked bodies with extensions and trailers, header case and
//!   white space varied): the guard refuses nothing and hyper behind it sees exactly the requests
//!   hyper alone sees;
//! - the same with one head the guard must refuse (a length that is not a number, two lengths,
//!   a length and chunked together, another transfer coding): hyper behind the guard sees exactly
//!   the requests before it, and the guard refuses.
//!
//! CI runs it with the rest of the unit tests, a bounded number of cases.

use super::head::Guarded;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How a generated request frames its body.
#[derive(Clone, Debug)]
enum Body {
    None,
    Length(Vec<u8>),
    /// Chunks of these bytes; with a chunk extension, and a trailer field.
    Chunked(Vec<Vec<u8>>, bool, bool),
}

#[derive(Clone, Debug)]
struct Request {
    post: bool,
    path: u8,
    /// Extra header fields (names are lowercase letters).
    fields: Vec<(String, String)>,
    body: Body,
    /// Header names in upper case, and white space around values.
    upper: bool,
    spaces: bool,
}

/// A head the guard must refuse.
#[derive(Clone, Copy, Debug)]
enum Bad {
    LengthNotANumber,
    TwoLengths,
    LengthAndChunked,
    OtherCoding,
}

fn encode(request: &Request, bad: Option<Bad>) -> Vec<u8> {
    let method = if request.post { "POST" } else { "GET" };
    let mut head = format!("{method} /p{} HTTP/1.1\r\n", request.path);
    let name = |n: &str| {
        if request.upper {
            n.to_ascii_uppercase()
        } else {
            n.to_owned()
        }
    };
    let value = |v: &str| {
        if request.spaces {
            format!(" \t{v} ")
        } else {
            v.to_owned()
        }
    };
    head.push_str(&format!("{}:{}\r\n", name("host"), value("relay.test")));
    for (n, v) in &request.fields {
        head.push_str(&format!("{}:{}\r\n", name(&format!("x-{n}")), value(v)));
    }
    let mut body = Vec::new();
    match &request.body {
        Body::None => {}
        Body::Length(bytes) => {
            head.push_str(&format!(
                "{}:{}\r\n",
                name("content-length"),
                value(&bytes.len().to_string())
            ));
            body.extend_from_slice(bytes);
        }
        Body::Chunked(chunks, extension, trailer) => {
            head.push_str(&format!(
                "{}:{}\r\n",
                name("transfer-encoding"),
                value("chunked")
            ));
            for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                let ext = if *extension { ";a=b" } else { "" };
                body.extend_from_slice(format!("{:x}{ext}\r\n", chunk.len()).as_bytes());
                body.extend_from_slice(chunk);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            if *trailer {
                body.extend_from_slice(b"x-trailer: done\r\n");
            }
            body.extend_from_slice(b"\r\n");
        }
    }
    match bad {
        None => {}
        Some(Bad::LengthNotANumber) => head.push_str("content-length: 1x\r\n"),
        Some(Bad::TwoLengths) => head.push_str("content-length: 1\r\ncontent-length: 2\r\n"),
        Some(Bad::LengthAndChunked) => {
            head.push_str("content-length: 0\r\ntransfer-encoding: chunked\r\n");
        }
        Some(Bad::OtherCoding) => head.push_str("transfer-encoding: gzip\r\n"),
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if bad.is_none() {
        bytes.extend_from_slice(&body);
    }
    bytes
}

/// What hyper's service saw: each request's method, path and body.
type Seen = Vec<(String, String, Vec<u8>)>;

/// Serves `bytes`, written in pieces of the given sizes, on one connection; what hyper saw, and
/// whether the guard refused a head.
async fn serve(bytes: &[u8], pieces: &[usize], guarded: bool) -> (Seen, bool) {
    let (client, server) = tokio::io::duplex(1 << 16);
    let seen = Arc::new(Mutex::new(Seen::new()));
    let refused = Arc::new(AtomicBool::new(false));
    let log = Arc::clone(&seen);
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let log = Arc::clone(&log);
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let entry = (
                parts.method.to_string(),
                parts.uri.path().to_owned(),
                body.to_vec(),
            );
            log.lock().unwrap().push(entry);
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
        }
    });
    let server_side = async {
        if guarded {
            let flag = Arc::clone(&refused);
            let io = Guarded::new(
                server,
                Box::new(move |_, _| flag.store(true, Ordering::SeqCst)),
            );
            connection(io, service).await;
        } else {
            connection(server, service).await;
        }
    };
    let client_side = async {
        let (mut reader, mut writer) = tokio::io::split(client);
        let mut rest = bytes;
        for &size in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at(size.clamp(1, rest.len()));
            if writer.write_all(piece).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
            rest = after;
        }
        let _ = writer.shutdown().await;
        let mut answers = Vec::new();
        let _ = reader.read_to_end(&mut answers).await;
    };
    let both = async { tokio::join!(server_side, client_side) };
    tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("a connection of generated requests ends");
    let seen = seen.lock().unwrap().clone();
    (seen, refused.load(Ordering::SeqCst))
}

async fn connection<IO, S>(io: IO, service: S)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Full<Bytes>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn request() -> impl Strategy<Value = Request> {
    let body = prop_oneof![
        Just(Body::None),
        bytes(300).prop_map(Body::Length),
        (
            proptest::collection::vec(bytes(40), 0..4),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(chunks, ext, trailer)| Body::Chunked(chunks, ext, trailer)),
    ];
    let field = ("[a-z]{1,8}", "[ -~&&[^ \t]]{0,12}");
    (
        any::<bool>(),
        any::<u8>(),
        proptest::collection::vec(field, 0..4),
        body,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(post, path, fields, body, upper, spaces)| Request {
            post,
            path,
            fields,
            body,
            upper,
            spaces,
        })
}

fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        Just(Bad::LengthNotANumber),
        Just(Bad::TwoLengths),
        Just(Bad::LengthAndChunked),
        Just(Bad::OtherCoding),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn behind_the_guard_hyper_sees_every_well_framed_request_it_sees_alone(
        requests in proptest::collection::vec(request(), 1..5),
        pieces in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(|r| encode(r, None)).collect();
        let (alone, (behind, refused)) = runtime().block_on(async {
            (serve(&stream, &pieces, false).await.0, serve(&stream, &pieces, true).await)
        });
        prop_assert_eq!(alone.len(), requests.len(), "hyper takes every generated request");
        prop_assert!(!refused, "the guard refused a well-framed request");
        prop_assert_eq!(behind, alone);
    }

    #[test]
    fn behind_the_guard_hyper_sees_exactly_the_requests_before_a_refused_head(
        requests in proptest::collection::vec(request(), 1..4),
        bad in bad(),
        pieces in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let last = requests.len() - 1;
        let stream: Vec<u8> = requests
            .iter()
            .enumerate()
            .flat_map(|(i, r)| encode(r, (i == last).then_some(bad)))
            .collect();
        let good: Vec<u8> = requests[..last].iter().flat_map(|r| encode(r, None)).collect();
        let (before, (behind, refused)) = runtime().block_on(async {
            (serve(&good, &pieces, false).await.0, serve(&stream, &pieces, true).await)
        });
        prop_assert!(refused, "the guard let {:?} through", bad);
        prop_assert_eq!(behind, before);
    }
}
