//! Standard Webhooks (<https://www.standardwebhooks.com>) signing and verification.
//!
//! The signed content is `webhook-id + "." + webhook-timestamp + "." + body`, the MAC is
//! HMAC-SHA256 keyed with the base64 bytes after `whsec_`, and `webhook-signature` is a
//! space-separated list of `v1,<base64>` entries of which any one may match. Comparison is
//! constant-time. A key never appears in `Debug` output or in an error.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// The prefix of a secret as customers see it.
pub const SECRET_PREFIX: &str = "whsec_";
/// The only signature scheme: HMAC-SHA256.
pub const SIGNATURE_VERSION: &str = "v1";
/// How far `webhook-timestamp` may be from the receiver's clock, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

type HmacSha256 = Hmac<Sha256>;

/// Why a request's signature was not accepted. The receiver answers all of them
/// `invalid_secret`, but logs the variant so an operator can tell a clock skew from a wrong secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookError {
    MissingHeader(&'static str),
    InvalidTimestamp,
    TimestampTooOld,
    TimestampTooNew,
    NoMatchingSignature,
    /// The secret is not `whsec_` followed by base64.
    InvalidSecret,
}

impl WebhookError {
    /// Every name [`WebhookError::as_str`] gives, for docs and tests.
    pub const NAMES: [&'static str; 6] = [
        "missing_header",
        "invalid_timestamp",
        "timestamp_too_old",
        "timestamp_too_new",
        "no_matching_signature",
        "invalid_secret_format",
    ];

    /// A short stable name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookError::MissingHeader(_) => "missing_header",
            WebhookError::InvalidTimestamp => "invalid_timestamp",
            WebhookError::TimestampTooOld => "timestamp_too_old",
            WebhookError::TimestampTooNew => "timestamp_too_new",
            WebhookError::NoMatchingSignature => "no_matching_signature",
            WebhookError::InvalidSecret => "invalid_secret_format",
        }
    }
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::MissingHeader(name) => write!(f, "missing header {name}"),
            WebhookError::InvalidTimestamp => f.write_str("webhook-timestamp is not unix seconds"),
            WebhookError::TimestampTooOld => f.write_str("webhook-timestamp is too old"),
            WebhookError::TimestampTooNew => f.write_str("webhook-timestamp is in the future"),
            WebhookError::NoMatchingSignature => f.write_str("no signature matches"),
            WebhookError::InvalidSecret => f.write_str("the secret is not whsec_<base64>"),
        }
    }
}

impl std::error::Error for WebhookError {}

/// The raw key bytes behind a `whsec_` secret.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        SigningKey(bytes.into())
    }

    /// Reads a `whsec_<base64>` secret (the prefix is optional, as in the reference libraries).
    pub fn from_secret(secret: &str) -> Result<Self, WebhookError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| WebhookError::InvalidSecret)?;
        if bytes.is_empty() {
            return Err(WebhookError::InvalidSecret);
        }
        Ok(SigningKey(bytes))
    }

    /// The secret as customers paste it: `whsec_<base64>`.
    pub fn to_secret(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.0))
    }

    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The `webhook-signature` value for this message: `v1,<base64>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.mac(msg_id, &timestamp.to_string(), body);
        format!("{SIGNATURE_VERSION},{}", BASE64.encode(mac))
    }
}

/// The three Standard Webhooks header values of one request.
#[derive(Clone, Copy, Debug)]
pub struct SignedHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Verifies `body` against any of `keys` (current secret first, then one still in its grace).
pub fn verify(
    keys: &[SigningKey],
    headers: SignedHeaders<'_>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), WebhookError> {
    let msg_id = headers.id.ok_or(WebhookError::MissingHeader(HEADER_ID))?;
    let timestamp = headers
        .timestamp
        .ok_or(WebhookError::MissingHeader(HEADER_TIMESTAMP))?;
    let signatures = headers
        .signature
        .ok_or(WebhookError::MissingHeader(HEADER_SIGNATURE))?;

    let sent_at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::InvalidTimestamp)?;
    if sent_at < now_unix - TOLERANCE_SECONDS {
        return Err(WebhookError::TimestampTooOld);
    }
    if sent_at > now_unix + TOLERANCE_SECONDS {
        return Err(WebhookError::TimestampTooNew);
    }

    let candidates: Vec<[u8; 32]> = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .filter_map(|(_, encoded)| BASE64.decode(encoded).ok()?.try_into().ok())
        .collect();
    for key in keys {
        let expected = key.mac(msg_id, timestamp, body);
        if candidates
            .iter()
            .any(|candidate| bool::from(candidate.ct_eq(&expected)))
        {
            return Ok(());
        }
    }
    Err(WebhookError::NoMatchingSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks specification's reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers<'a>(timestamp: &'a str, signature: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            id: Some(MSG_ID),
            timestamp: Some(timestamp),
            signature: Some(signature),
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_secret(SECRET).unwrap()
    }

    #[test]
    fn signs_the_published_vector() {
        assert_eq!(key().sign(MSG_ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn verifies_the_published_vector_among_several_signatures() {
        let ts = TIMESTAMP.to_string();
        let list = format!("v1,Zm9vYmFy v2,ignored {SIGNATURE}");
        assert_eq!(
            verify(&[key()], headers(&ts, &list), BODY, TIMESTAMP),
            Ok(())
        );
    }

    #[test]
    fn any_of_several_keys_may_match() {
        let ts = TIMESTAMP.to_string();
        let other = SigningKey::from_bytes(b"another key".to_vec());
        let keys = [other, key()];
        assert_eq!(
            verify(&keys, headers(&ts, SIGNATURE), BODY, TIMESTAMP),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_or_wrong_key_does_not_match() {
        let ts = TIMESTAMP.to_string();
        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(&[key()], headers(&ts, SIGNATURE), tampered, TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
        let wrong = SigningKey::from_bytes(b"wrong".to_vec());
        assert_eq!(
            verify(&[wrong], headers(&ts, SIGNATURE), BODY, TIMESTAMP),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamps_outside_five_minutes_are_refused_either_way() {
        let ts = TIMESTAMP.to_string();
        let ok_edge = TIMESTAMP + TOLERANCE_SECONDS;
        assert_eq!(
            verify(&[key()], headers(&ts, SIGNATURE), BODY, ok_edge),
            Ok(())
        );
        assert_eq!(
            verify(&[key()], headers(&ts, SIGNATURE), BODY, ok_edge + 1),
            Err(WebhookError::TimestampTooOld)
        );
        assert_eq!(
            verify(
                &[key()],
                headers(&ts, SIGNATURE),
                BODY,
                TIMESTAMP - TOLERANCE_SECONDS - 1
            ),
            Err(WebhookError::TimestampTooNew)
        );
        assert_eq!(
            verify(&[key()], headers("soon", SIGNATURE), BODY, TIMESTAMP),
            Err(WebhookError::InvalidTimestamp)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let ts = TIMESTAMP.to_string();
        let mut h = headers(&ts, SIGNATURE);
        h.signature = None;
        assert_eq!(
            verify(&[key()], h, BODY, TIMESTAMP),
            Err(WebhookError::MissingHeader(HEADER_SIGNATURE))
        );
    }

    #[test]
    fn secrets_round_trip_and_never_show_in_debug() {
        assert_eq!(key().to_secret(), SECRET);
        assert_eq!(format!("{:?}", key()), "SigningKey(<redacted>)");
        assert_eq!(
            SigningKey::from_secret("whsec_!!!").unwrap_err(),
            WebhookError::InvalidSecret
        );
    }
}
