//! Every request head on a `serve` connection is checked here before hyper sees it, so that a
//! head hyper would refuse with an empty 400 or 431 is refused with the receiver's JSON error.
//!
//! [`Guarded`] sits between the socket and hyper. It holds a head's bytes until the head is
//! whole, parses it with `httparse` (the parser hyper itself uses) and reads the body's framing
//! from it. Body bytes then pass straight through, counted, so that the next head is found where
//! the body ends (chunked bodies included). A head that fails the check never reaches hyper:
//! hyper reads the end of the stream instead, answers the requests before it, and shuts the
//! connection down, and the JSON refusal is written just before the socket is shut.
//!
//! Checked here: the head's size ([`MAX_HEAD_BYTES`], [`MAX_HEADERS`]; 431
//! `headers_too_large`), its syntax, and `Content-Length` / `Transfer-Encoding` (400
//! `malformed_request`: a length that is not a number, two different lengths, both headers at
//! once, or a transfer coding other than chunked). Whatever passes is left to hyper, which
//! would accept it too.

use crate::handler::Refusal;
use bytes::{Buf, Bytes, BytesMut};
use relay_protocol::Reason;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest request head accepted; hyper's own limit is far higher.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields a head may have (hyper's default too).
pub(super) const MAX_HEADERS: usize = 100;
/// A chunk-size line longer than this is not followed: hyper decides about the body.
const MAX_CHUNK_LINE: usize = 1024;
const READ_CHUNK: usize = 16 * 1024;

/// Called once with a refused head's path (when it got that far) and the refusal.
pub(super) type OnRefusal = Box<dyn FnOnce(&str, &Refusal) + Send>;

/// Where on the connection the next bytes belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A request head, held until whole.
    Head,
    /// This many bytes of a `Content-Length` body.
    Body(u64),
    /// A chunk-size line, held until whole.
    ChunkSize,
    /// This many bytes of chunk data, its CRLF included.
    ChunkData(u64),
    /// The trailer section after the last chunk, held until whole.
    Trailers,
    /// Framing no longer followed (an odd chunk line): everything passes, hyper decides.
    Unchecked,
    /// A head was refused: nothing more is read.
    Refused,
}

pub(super) struct Guarded<S> {
    inner: S,
    framing: Framing,
    /// Read from the socket, not yet checked.
    held: BytesMut,
    /// Checked, not yet handed to hyper.
    ready: BytesMut,
    /// The refusal's bytes, written before the socket is shut.
    answer: Bytes,
    on_refusal: Option<OnRefusal>,
}

impl<S> Guarded<S> {
    pub(super) fn new(inner: S, on_refusal: OnRefusal) -> Self {
        Guarded {
            inner,
            framing: Framing::Head,
            held: BytesMut::new(),
            ready: BytesMut::new(),
            answer: Bytes::new(),
            on_refusal: Some(on_refusal),
        }
    }

    /// Moves what can be checked from `held` to `ready`.
    fn advance(&mut self) {
        loop {
            match self.framing {
                Framing::Head => {
                    if !self.advance_head() {
                        return;
                    }
                }
                Framing::Body(left) | Framing::ChunkData(left) => {
                    if self.held.is_empty() {
                        return;
                    }
                    let take = left.min(self.held.len() as u64);
                    let left = left - take;
                    let next = match (self.framing, left) {
                        (Framing::Body(_), 0) => Framing::Head,
                        (Framing::Body(_), _) => Framing::Body(left),
                        (_, 0) => Framing::ChunkSize,
                        _ => Framing::ChunkData(left),
                    };
                    self.release(take as usize, next);
                }
                Framing::ChunkSize => match httparse::parse_chunk_size(&self.held) {
                    Ok(httparse::Status::Complete((length, 0))) => {
                        self.release(length, Framing::Trailers)
                    }
                    Ok(httparse::Status::Complete((length, size))) => {
                        self.release(length, Framing::ChunkData(size.saturating_add(2)))
                    }
                    Ok(httparse::Status::Partial) if self.held.len() <= MAX_CHUNK_LINE => return,
                    _ => self.framing = Framing::Unchecked,
                },
                Framing::Trailers => {
                    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(&self.held, &mut fields) {
                        Ok(httparse::Status::Complete((length, _))) => {
                            self.release(length, Framing::Head)
                        }
                        Ok(httparse::Status::Partial) if self.held.len() <= MAX_HEAD_BYTES => {
                            return
                        }
                        _ => self.framing = Framing::Unchecked,
                    }
                }
                Framing::Unchecked => {
                    let all = self.held.len();
                    self.release(all, Framing::Unchecked);
                    return;
                }
                Framing::Refused => {
                    self.held.clear();
                    return;
                }
            }
        }
    }

    /// Releases or refuses a whole head; `false` while it is still incomplete.
    fn advance_head(&mut self) -> bool {
        let refusal = match check_head(&self.held) {
            // A head is held to the limit whole, however much of it one read brought.
            Ok(Some((length, _))) if length > MAX_HEAD_BYTES => too_large_head(),
            Ok(Some((length, next))) => {
                self.release(length, next);
                return true;
            }
            Ok(None) if self.held.len() <= MAX_HEAD_BYTES => return false,
            Ok(None) => too_large_head(),
            Err(refusal) => refusal,
        };
        let path = request_path(&self.held);
        self.refuse(&path, refusal);
        true
    }

    fn release(&mut self, length: usize, next: Framing) {
        self.ready.extend_from_slice(&self.held[..length]);
        self.held.advance(length);
        self.framing = next;
    }

    fn refuse(&mut self, path: &str, refusal: Refusal) {
        if let Some(report) = self.on_refusal.take() {
            report(path, &refusal);
        }
        self.answer = http1_bytes(refusal.into_response());
        self.framing = Framing::Refused;
        self.held.clear();
    }
}

/// A whole head's length and the framing of the body after it; `None` while incomplete.
fn check_head(bytes: &[u8]) -> Result<Option<(usize, Framing)>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(length)) => {
            Ok(Some((length, body_framing(request.headers)?)))
        }
        Err(httparse::Error::TooManyHeaders) => Err(too_large_head()),
        Err(error) => Err(Refusal::new(
            Reason::MalformedRequest,
            format!("the request head is not valid HTTP/1.1 ({error})"),
        )),
    }
}

/// The body's framing by RFC 9112 section 6, refusing what would make it ambiguous.
fn body_framing(fields: &[httparse::Header<'_>]) -> Result<Framing, Refusal> {
    let malformed = |detail: &str| Refusal::new(Reason::MalformedRequest, detail);
    let mut length: Option<u64> = None;
    let mut coding: Option<&[u8]> = None;
    for field in fields {
        if field.name.eq_ignore_ascii_case("content-length") {
            for part in field.value.split(|&b| b == b',') {
                let part = part.trim_ascii();
                let value = (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| malformed("Content-Length is not a number"))?;
                if length.is_some_and(|seen| seen != value) {
                    return Err(malformed("the request has two different Content-Lengths"));
                }
                length = Some(value);
            }
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = field.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            coding = Some(last.trim_ascii());
        }
    }
    match (coding, length) {
        (Some(_), Some(_)) => Err(malformed(
            "the request has both Transfer-Encoding and Content-Length",
        )),
        (Some(last), None) if last.eq_ignore_ascii_case(b"chunked") => Ok(Framing::ChunkSize),
        (Some(_), None) => Err(malformed("the only transfer coding accepted is chunked")),
        (None, Some(0) | None) => Ok(Framing::Head),
        (None, Some(length)) => Ok(Framing::Body(length)),
    }
}

fn too_large_head() -> Refusal {
    Refusal::new(
        Reason::HeadersTooLarge,
        format!("the request head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_HEADERS} fields"),
    )
}

/// The path of a refused head, when its request line got that far (for the log line).
fn request_path(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(b"");
    let mut words = line.split(|&b| b == b' ');
    let path = words.nth(1).unwrap_or(b"");
    let path = path.split(|&b| b == b'?').next().unwrap_or(b"");
    String::from_utf8_lossy(path).into_owned()
}

/// An answer as HTTP/1.1 bytes, closing the connection.
fn http1_bytes(response: http::Response<Bytes>) -> Bytes {
    let (parts, body) = response.into_parts();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    Bytes::from(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.framing == Framing::Refused {
                return Poll::Ready(Ok(())); // the end of the stream, for hyper
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(())); // the client's end of the stream
            }
            this.held.extend_from_slice(read.filled());
            this.advance();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while !this.answer.is_empty() {
            let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.answer))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.answer.advance(written);
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `request` through a guard and returns (what hyper would read, what the client reads).
    async fn through_guard(request: &[u8]) -> (Vec<u8>, String) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(request).await.unwrap();
        client_write.shutdown().await.unwrap();
        let mut guarded = Guarded::new(server, Box::new(|_, _| {}));
        let mut passed = Vec::new();
        guarded.read_to_end(&mut passed).await.unwrap();
        guarded.shutdown().await.unwrap();
        drop(guarded);
        let mut answer = String::new();
        client_read.read_to_string(&mut answer).await.unwrap();
        (passed, answer)
    }

    #[tokio::test]
    async fn well_framed_requests_pass_untouched_one_after_another() {
        let request = b"POST /a HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nt: 1\r\n\r\n\
            GET /healthz HTTP/1.1\r\n\r\n";
        let (passed, answer) = through_guard(request).await;
        assert_eq!(passed, request);
        assert_eq!(answer, "");
    }

    #[tokio::test]
    async fn a_bad_length_is_refused_after_the_request_before_it() {
        let first = b"POST /a HTTP/1.1\r\ncontent-length: 2\r\n\r\nok";
        let mut request = first.to_vec();
        request.extend_from_slice(b"POST /b HTTP/1.1\r\ncontent-length: abc\r\n\r\n");
        let (passed, answer) = through_guard(&request).await;
        assert_eq!(passed, first);
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("}") && answer.contains(r#""error":"malformed_request""#));
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused_431_without_waiting_for_its_end() {
        let mut request = b"POST /v1/events/x HTTP/1.1\r\nx: ".to_vec();
        request.resize(MAX_HEAD_BYTES + 10, b'a');
        let (passed, answer) = through_guard(&request).await;
        assert!(passed.is_empty());
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(
            answer.contains(r#""error":"headers_too_large""#),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn a_whole_head_over_the_limit_is_refused_431_however_it_arrives() {
        for size in [MAX_HEAD_BYTES + 1, 66_000, 70_000, 80_000] {
            let mut request = b"POST /v1/events/x HTTP/1.1\r\nx: ".to_vec();
            request.resize(size - 4, b'a');
            request.extend_from_slice(b"\r\n\r\n");
            let (passed, answer) = through_guard(&request).await;
            assert!(passed.is_empty(), "{size} bytes reached hyper");
            assert!(answer.starts_with("HTTP/1.1 431 "), "{size}: {answer}");
        }
    }

    #[test]
    fn framing_follows_rfc_9112_and_refuses_ambiguity() {
        let framing = |fields: &[(&str, &str)]| {
            let fields: Vec<_> = fields
                .iter()
                .map(|(name, value)| httparse::Header {
                    name,
                    value: value.as_bytes(),
                })
                .collect();
            body_framing(&fields).map_err(|refusal| refusal.reason)
        };
        assert_eq!(framing(&[]), Ok(Framing::Head));
        assert_eq!(framing(&[("Content-Length", "0")]), Ok(Framing::Head));
        assert_eq!(
            framing(&[("content-length", " 12 ")]),
            Ok(Framing::Body(12))
        );
        assert_eq!(
            framing(&[("content-length", "12, 12")]),
            Ok(Framing::Body(12))
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "gzip, Chunked")]),
            Ok(Framing::ChunkSize)
        );
        for bad in [
            vec![("content-length", "abc")],
            vec![("content-length", "+5")],
            vec![("content-length", "")],
            vec![("content-length", "99999999999999999999999")],
            vec![("content-length", "5"), ("content-length", "6")],
            vec![("transfer-encoding", "gzip")],
            vec![("transfer-encoding", "chunked"), ("content-length", "5")],
        ] {
            assert_eq!(framing(&bad), Err(Reason::MalformedRequest), "{bad:?}");
        }
    }
}
