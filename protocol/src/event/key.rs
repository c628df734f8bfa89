//! How each source writes object keys, and the one function that reads them back.
//!
//! A job must name the object exactly as the bucket does, or the pipeline's `GetObject` fails.
//! The sources disagree on how they put a key into JSON:
//!
//! - **R2 notifications** carry the key as stored: taken byte for byte ([`KeyEncoding::Exact`]).
//! - **S3 events through EventBridge** carry it form-URL-encoded, as S3's other notifications
//!   do (`my report+v2.pdf` arrives as `my+report%2Bv2.pdf`): `+` is a space and `%XX` a byte
//!   ([`KeyEncoding::FormUrlencoded`]). AWS's Lambda Powertools decodes this field the same way.
//! - **CloudTrail data events** carry the request's key with special characters percent-encoded;
//!   a `+` there is a plus ([`KeyEncoding::PercentEncoded`]). The evidence is weaker than for the
//!   other two (see the README), so every job says which rule produced its key.
//!
//! Decoding is strict: a `%` not followed by two hex digits, or bytes that are not UTF-8 (S3 keys
//! are UTF-8), make the event `malformed_event` rather than a job for an object that does not
//! exist.

use super::EventError;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// How the source encoded the key; carried in every job as `key_encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEncoding {
    /// Taken as delivered.
    Exact,
    /// `application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte.
    FormUrlencoded,
    /// RFC 3986 percent-encoding: `%XX` is a byte, `+` stays a plus.
    PercentEncoded,
}

impl KeyEncoding {
    /// The object key that `raw`, as the source wrote it, names.
    pub fn decode(self, raw: &str) -> Result<String, EventError> {
        match self {
            KeyEncoding::Exact => Ok(raw.to_owned()),
            KeyEncoding::FormUrlencoded => percent_decode_strict(&raw.replace('+', " ")),
            KeyEncoding::PercentEncoded => percent_decode_strict(raw),
        }
    }
}

fn percent_decode_strict(text: &str) -> Result<String, EventError> {
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices('%') {
        let escape = bytes.get(at + 1..at + 3);
        if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
            return Err(EventError::KeyEncoding(
                "a % not followed by two hex digits",
            ));
        }
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| EventError::KeyEncoding("the decoded key is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyEncoding::*;

    /// Each case: the key in the bucket, how S3 notifications write it (Python's
    /// `urllib.parse.quote_plus(key, safe="/")`), and how a percent-encoder writes it
    /// (`quote(key, safe="/")`).
    const CASES: [(&str, &str, &str); 7] = [
        (
            "in/with space.pdf",
            "in/with+space.pdf",
            "in/with%20space.pdf",
        ),
        (
            "in/plus+sign.pdf",
            "in/plus%2Bsign.pdf",
            "in/plus%2Bsign.pdf",
        ),
        ("in/100%.pdf", "in/100%25.pdf", "in/100%25.pdf"),
        ("a/b/c=d.pdf", "a/b/c%3Dd.pdf", "a/b/c%3Dd.pdf"),
        (
            "in/résumé ü.pdf",
            "in/r%C3%A9sum%C3%A9+%C3%BC.pdf",
            "in/r%C3%A9sum%C3%A9%20%C3%BC.pdf",
        ),
        (
            "日本語 ✓",
            "%E6%97%A5%E6%9C%AC%E8%AA%9E+%E2%9C%93",
            "%E6%97%A5%E6%9C%AC%E8%AA%9E%20%E2%9C%93",
        ),
        ("x%2By", "x%252By", "x%252By"),
    ];

    #[test]
    fn each_encoding_gives_back_the_exact_key() {
        for (key, form, percent) in CASES {
            assert_eq!(Exact.decode(key).unwrap(), key);
            assert_eq!(FormUrlencoded.decode(form).unwrap(), key, "{form}");
            assert_eq!(PercentEncoded.decode(percent).unwrap(), key, "{percent}");
        }
    }

    #[test]
    fn a_plus_is_a_space_only_in_form_encoding() {
        assert_eq!(FormUrlencoded.decode("a+b").unwrap(), "a b");
        assert_eq!(PercentEncoded.decode("a+b").unwrap(), "a+b");
        assert_eq!(Exact.decode("a+b%20").unwrap(), "a+b%20");
    }

    #[test]
    fn broken_escapes_and_non_utf8_are_named_errors() {
        for raw in ["100%", "a%2", "a%zz.pdf", "%%41"] {
            assert!(matches!(
                FormUrlencoded.decode(raw),
                Err(EventError::KeyEncoding(_))
            ));
            assert!(matches!(
                PercentEncoded.decode(raw),
                Err(EventError::KeyEncoding(_))
            ));
        }
        assert!(matches!(
            PercentEncoded.decode("%FF%FE"),
            Err(EventError::KeyEncoding(_))
        ));
    }
}
