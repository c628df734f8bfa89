//! How each source writes object keys, and the one function that reads them back.
//!
//! A job must name the object exactly as the bucket does, or the pipeline's `GetObject` fails.
//! The sources disagree on how they put a key into JSON, and the evidence is not all one way
//! (the README weighs it):
//!
//! - **R2 notifications** carry the key as stored ([`KeyEncoding::Exact`]).
//! - **S3 events through EventBridge** are read as form-URL-encoded, the way S3 writes keys in its
//!   notifications (`my report+v2.pdf` as `my+report%2Bv2.pdf`: `+` is a space, `%XX` a byte),
//!   and as AWS's Lambda Powertools decodes this field ([`KeyEncoding::FormUrlencoded`]).
//! - **CloudTrail data events** are read as percent-encoded: `%XX` is a byte, a `+` is a plus
//!   ([`KeyEncoding::PercentEncoded`]).
//!
//! A key is decoded only when it could be an encoder's output: nothing but letters, digits,
//! `-_.~*!'()/+%`, every `%` starting a `%XX` escape, and UTF-8 once decoded. An encoder leaves no
//! space, colon, non-ASCII character or lone `%` in its output, so a key holding one was not
//! encoded, and is taken exactly as it came. The job's `key_encoding` says which reading was
//! used. The only keys the rule can misread are ones an encoder could also have written: an
//! unencoded key made of those characters that holds a `+` or a `%XX`.

use serde::{Deserialize, Serialize};

/// How a job's key was read from its event; carried in every job as `key_encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEncoding {
    /// Taken as delivered.
    Exact,
    /// `application/x-www-form-urlencoded`: `+` was a space, `%XX` a byte.
    FormUrlencoded,
    /// RFC 3986 percent-encoding: `%XX` was a byte, `+` a plus.
    PercentEncoded,
}

impl KeyEncoding {
    /// The object key that `raw`, as a source using `self` wrote it, names; and the reading used:
    /// `self` when `raw` could be its output, else [`KeyEncoding::Exact`].
    pub fn read(self, raw: &str) -> (String, KeyEncoding) {
        let decoded = match self {
            KeyEncoding::Exact => None,
            KeyEncoding::FormUrlencoded => decode(raw, true),
            KeyEncoding::PercentEncoded => decode(raw, false),
        };
        match decoded {
            Some(key) => (key, self),
            None => (raw.to_owned(), KeyEncoding::Exact),
        }
    }
}

/// The bytes an encoder may leave as they are, besides letters and digits.
const UNESCAPED: &[u8] = b"-_.~*!'()/";

/// `text` decoded, or `None` when it cannot be the output of the encoder (`plus_is_space`: form).
fn decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                at += 3;
                continue;
            }
            b'+' if plus_is_space => decoded.push(b' '),
            b'+' => decoded.push(b'+'),
            byte if byte.is_ascii_alphanumeric() || UNESCAPED.contains(&byte) => decoded.push(byte),
            _ => return None,
        }
        at += 1;
    }
    String::from_utf8(decoded).ok()
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
    fn each_encoding_gives_back_the_exact_key_and_says_so() {
        for (key, form, percent) in CASES {
            assert_eq!(Exact.read(key), (key.to_owned(), Exact));
            assert_eq!(FormUrlencoded.read(form), (key.to_owned(), FormUrlencoded));
            assert_eq!(
                PercentEncoded.read(percent),
                (key.to_owned(), PercentEncoded)
            );
        }
    }

    #[test]
    fn a_plus_is_a_space_only_in_form_encoding() {
        assert_eq!(FormUrlencoded.read("a+b").0, "a b");
        assert_eq!(PercentEncoded.read("a+b").0, "a+b");
        assert_eq!(Exact.read("a+b%20").0, "a+b%20");
    }

    #[test]
    fn a_key_no_encoder_could_have_written_is_taken_exactly() {
        // A colon, a space, a lone %, a broken escape, non-ASCII, bytes that are not UTF-8.
        for raw in [
            "raw/2023-08-08T14:03:40.zip",
            "in/my report.pdf",
            "in/100%",
            "a%2",
            "a%zz.pdf",
            "résumé.pdf",
            "%FF%FE",
        ] {
            for encoding in [FormUrlencoded, PercentEncoded] {
                assert_eq!(encoding.read(raw), (raw.to_owned(), Exact), "{raw}");
            }
        }
    }
}
