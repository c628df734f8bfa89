//! Properties that must hold for any input a sender can put on the wire: the parsers, the key
//! rules, the signature check and the decision answer with a value or a named error, never a
//! panic; and whatever is signed verifies, while a changed body does not.

use chrono::DateTime;
use proptest::prelude::*;
use relay_protocol::event::{eventbridge, r2, KeyEncoding};
use relay_protocol::integration::NewIntegration;
use relay_protocol::webhook::{self, SignedHeaders, SigningKey};
use relay_protocol::{decide, Integration, Provider};

const NOW: i64 = 1_800_000_000;

/// Event-like text: arbitrary strings, and R2 / EventBridge shapes with arbitrary field values.
fn event_text() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("null".to_owned()),
        Just("{}".to_owned()),
        Just("[]".to_owned()),
    ];
    prop_oneof![
        any::<String>(),
        (value.clone(), value.clone(), value.clone(), value.clone()).prop_map(|(a, b, k, s)| {
            format!(
                r#"{{"account":{a},"action":{b},"bucket":"uploads","object":{{"key":{k},"size":{s},"eTag":{a}}}}}"#
            )
        }),
        (value.clone(), value.clone(), value).prop_map(|(t, k, s)| {
            format!(
                r#"{{"id":"e","detail-type":{t},"source":"aws.s3","detail":{{"bucket":{{"name":"docs"}},"object":{{"key":{k},"size":{s}}},"eventName":{t},"requestParameters":{{"bucketName":"docs","key":{k}}}}}}}"#
            )
        }),
    ]
}

fn integration(provider: Provider) -> Integration {
    let at = DateTime::from_timestamp(NOW, 0).unwrap();
    let fields = NewIntegration {
        account: Some(
            match provider {
                Provider::S3 => "123456789012",
                Provider::R2 => "4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f",
            }
            .into(),
        ),
        prefix: Some("in/".into()),
        suffixes: vec![".pdf".into()],
        output_prefix: Some("out/".into()),
        ..NewIntegration::new(provider, "uploads")
    };
    fields.build("prop", at).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn parsers_and_the_decision_never_panic(text in event_text()) {
        let now = DateTime::from_timestamp(NOW, 0).unwrap();
        let _ = eventbridge::event_id(&text);
        let _ = decide(&integration(Provider::R2), r2::parse(&text, "m"), now);
        let _ = decide(&integration(Provider::S3), eventbridge::parse(&text), now);
    }

    #[test]
    fn every_key_rule_answers_and_exact_keeps_the_key(raw in any::<String>()) {
        for encoding in [KeyEncoding::FormUrlencoded, KeyEncoding::PercentEncoded] {
            let (key, used) = encoding.read(&raw);
            prop_assert!(used == encoding || (used == KeyEncoding::Exact && key == raw));
        }
        prop_assert_eq!(KeyEncoding::Exact.read(&raw), (raw.clone(), KeyEncoding::Exact));
    }

    #[test]
    fn a_form_encoded_key_decodes_to_itself(key in any::<String>()) {
        // Encoded the way S3 writes keys: every byte outside the unreserved set as %XX.
        let mut encoded = String::new();
        for byte in key.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    encoded.push(char::from(byte))
                }
                b' ' => encoded.push('+'),
                _ => encoded.push_str(&format!("%{byte:02X}")),
            }
        }
        prop_assert_eq!(KeyEncoding::FormUrlencoded.read(&encoded).0, key);
    }

    #[test]
    fn what_is_signed_verifies_and_a_changed_body_does_not(
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        id in "[a-zA-Z0-9_]{1,40}",
        body in proptest::collection::vec(any::<u8>(), 1..512),
        skew in -300i64..=300,
        flip in any::<usize>(),
    ) {
        let key = SigningKey::from_bytes(secret);
        let at = NOW + skew;
        let signature = key.sign(&id, at, &body);
        let timestamp = at.to_string();
        let headers = SignedHeaders {
            id: Some(&id),
            timestamp: Some(&timestamp),
            signature: Some(&signature),
        };
        prop_assert!(webhook::verify(std::slice::from_ref(&key), headers, &body, NOW).is_ok());
        let mut tampered = body.clone();
        let at = flip % tampered.len();
        tampered[at] ^= 1;
        prop_assert!(webhook::verify(std::slice::from_ref(&key), headers, &tampered, NOW).is_err());
    }

    #[test]
    fn any_headers_and_body_get_an_answer(
        id in proptest::option::of(any::<String>()),
        timestamp in proptest::option::of(any::<String>()),
        signature in proptest::option::of(any::<String>()),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let key = SigningKey::from_bytes(b"key".to_vec());
        let headers = SignedHeaders {
            id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: signature.as_deref(),
        };
        let _ = webhook::verify(std::slice::from_ref(&key), headers, &body, NOW);
    }
}
