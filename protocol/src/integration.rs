//! One customer bucket's configuration: the row that every event is checked against.
//!
//! Nothing secret lives here in the clear: the event source secret is derived from the master
//! key and the `generation` (see [`crate::secret`]), an S3 read role is trusted with an external
//! id derived the same way, and an R2 token's credentials are stored sealed (an AEAD keyed from
//! the master key), so the table can be read, backed up and logged freely.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// 200 MiB: objects above this are skipped as `too_large` unless the integration says otherwise.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 200 * 1024 * 1024;

/// Integration ids start with this, followed by random lowercase alphanumerics.
pub const ID_PREFIX: &str = "int_";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    R2,
    S3,
}

/// `event`: events become jobs. `poll`: a poller lists the bucket, so events are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Event,
    Poll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Paused,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),* }) => {
        impl $ty {
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok(Self::$variant),)*
                    other => Err(format!(
                        "unknown value {other:?} (expected one of: {})",
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(Provider { R2 = "r2", S3 = "s3" });
text_enum!(Mode { Event = "event", Poll = "poll" });
text_enum!(Status { Active = "active", Paused = "paused" });

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    pub id: String,
    pub provider: Provider,
    pub bucket: String,
    /// R2 account id or AWS account id; checked against the event when set.
    pub account: Option<String>,
    /// AWS region of an S3 bucket; informational for R2.
    pub region: Option<String>,
    pub mode: Mode,
    pub status: Status,
    /// Only keys starting with this become jobs (empty or absent: every key).
    pub prefix: Option<String>,
    /// Allow-list of key suffixes such as `.pdf` (empty: every suffix).
    #[serde(default)]
    pub suffixes: Vec<String>,
    pub max_object_bytes: u64,
    /// Where the pipeline writes results back into the bucket: never turned into jobs.
    pub output_prefix: Option<String>,
    /// Secret generation: bumped by rotation.
    pub generation: u32,
    /// Earlier generations whose secrets still verify until their grace ends, newest first.
    #[serde(default)]
    pub previous_generations: Vec<GraceGeneration>,
    /// How the receiver may list the bucket (poll mode and backfill); absent until set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_access: Option<ReadAccess>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Read access to the customer's bucket, for listing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadAccess {
    /// S3: a role in the customer's account that trusts ours, assumed with the integration's
    /// external id ([`crate::secret::external_id`]).
    AssumeRole { role_arn: String },
    /// R2: an R2 API token's S3 credentials (access key id and secret), sealed: only the master
    /// key opens them. The endpoint comes from the integration's account id.
    SealedKeys { sealed: String },
}

impl ReadAccess {
    /// What `show` and `list` print: the role, or that a sealed token is set (never the token).
    pub fn describe(&self) -> String {
        match self {
            ReadAccess::AssumeRole { role_arn } => format!("assume role {role_arn}"),
            ReadAccess::SealedKeys { .. } => "R2 API token (sealed)".to_owned(),
        }
    }
}

/// A replaced secret generation that keeps working until `valid_until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraceGeneration {
    pub generation: u32,
    pub valid_until: DateTime<Utc>,
}

/// Why an integration cannot be rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationsExhausted;

/// What an operator gives to create an integration; [`NewIntegration::build`] checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewIntegration {
    pub provider: Provider,
    pub bucket: String,
    pub account: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub suffixes: Vec<String>,
    pub max_object_bytes: u64,
    pub output_prefix: Option<String>,
    pub mode: Mode,
}

/// A field a new integration cannot have, named as the operator's flag is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldError {
    EmptyBucket,
    EmptySuffix,
    ZeroMaxObjectBytes,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldError::EmptyBucket => "--bucket must not be empty",
            FieldError::EmptySuffix => "--suffix must not be empty",
            FieldError::ZeroMaxObjectBytes => "--max-object-bytes must be at least 1",
        })
    }
}

impl NewIntegration {
    /// An integration of `provider` for `bucket` with every default: no account, region or
    /// filters, objects up to [`DEFAULT_MAX_OBJECT_BYTES`], event mode.
    pub fn new(provider: Provider, bucket: impl Into<String>) -> Self {
        NewIntegration {
            provider,
            bucket: bucket.into(),
            account: None,
            region: None,
            prefix: None,
            suffixes: vec![],
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            output_prefix: None,
            mode: Mode::Event,
        }
    }

    /// The integration, active at generation 1, with id [`ID_PREFIX`] + `random` (lowercased).
    /// Empty optional texts count as absent.
    pub fn build(self, random: &str, now: DateTime<Utc>) -> Result<Integration, FieldError> {
        if self.bucket.trim().is_empty() {
            return Err(FieldError::EmptyBucket);
        }
        if self.suffixes.iter().any(String::is_empty) {
            return Err(FieldError::EmptySuffix);
        }
        if self.max_object_bytes == 0 {
            return Err(FieldError::ZeroMaxObjectBytes);
        }
        let given = |value: Option<String>| value.filter(|v| !v.is_empty());
        Ok(Integration {
            id: format!("{ID_PREFIX}{}", random.to_lowercase()),
            provider: self.provider,
            bucket: self.bucket,
            account: given(self.account),
            region: given(self.region),
            mode: self.mode,
            status: Status::Active,
            prefix: given(self.prefix),
            suffixes: self.suffixes,
            max_object_bytes: self.max_object_bytes,
            output_prefix: given(self.output_prefix),
            generation: 1,
            previous_generations: vec![],
            read_access: None,
            created_at: now,
            updated_at: now,
        })
    }
}

impl Integration {
    /// The secret generations a request may be signed with at `now`: current first.
    pub fn valid_generations(&self, now: DateTime<Utc>) -> impl Iterator<Item = u32> + '_ {
        let previous = self
            .previous_generations
            .iter()
            .filter(move |grace| now < grace.valid_until)
            .map(|grace| grace.generation);
        std::iter::once(self.generation).chain(previous)
    }

    /// Issues a new secret generation at `now`. The current one keeps working until
    /// `grace_until`, and every earlier one keeps the grace it was promised; `None` revokes all
    /// of them at once. Generations whose grace has ended are dropped.
    pub fn rotate(
        &mut self,
        now: DateTime<Utc>,
        grace_until: Option<DateTime<Utc>>,
    ) -> Result<(), GenerationsExhausted> {
        let next = self.generation.checked_add(1).ok_or(GenerationsExhausted)?;
        match grace_until {
            Some(valid_until) => {
                self.previous_generations
                    .retain(|grace| now < grace.valid_until);
                self.previous_generations.insert(
                    0,
                    GraceGeneration {
                        generation: self.generation,
                        valid_until,
                    },
                );
            }
            None => self.previous_generations.clear(),
        }
        self.generation = next;
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(provider: Provider) -> Integration {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        NewIntegration::new(provider, "uploads")
            .build("test", at)
            .unwrap()
    }

    fn valid(integration: &Integration, at: DateTime<Utc>) -> Vec<u32> {
        integration.valid_generations(at).collect()
    }

    #[test]
    fn a_rotated_generation_is_valid_only_within_its_grace() {
        let mut integration = sample(Provider::R2);
        let now = integration.created_at;
        assert_eq!(valid(&integration, now), [1]);
        let hours = chrono::Duration::hours;
        integration.rotate(now, Some(now + hours(24))).unwrap();
        assert_eq!(valid(&integration, now), [2, 1]);
        assert_eq!(valid(&integration, now + hours(25)), [2]);
        assert_eq!(integration.updated_at, now);
    }

    #[test]
    fn a_second_rotation_keeps_the_grace_the_first_one_promised() {
        let mut integration = sample(Provider::R2);
        let t0 = integration.created_at;
        let hours = chrono::Duration::hours;
        integration.rotate(t0, Some(t0 + hours(24))).unwrap();
        integration
            .rotate(t0 + hours(1), Some(t0 + hours(2)))
            .unwrap();
        assert_eq!(valid(&integration, t0 + hours(1)), [3, 2, 1]);
        assert_eq!(
            valid(&integration, t0 + hours(3)),
            [3, 1],
            "1 keeps its 24 h"
        );
        // A rotation after a grace ended drops that generation for good.
        integration
            .rotate(t0 + hours(30), Some(t0 + hours(31)))
            .unwrap();
        assert_eq!(valid(&integration, t0 + hours(30)), [4, 3]);
        // --now revokes every earlier generation at once.
        integration.rotate(t0 + hours(30), None).unwrap();
        assert_eq!(valid(&integration, t0 + hours(30)), [5]);
        assert!(integration.previous_generations.is_empty());
    }

    #[test]
    fn the_last_generation_cannot_wrap_around() {
        let mut integration = sample(Provider::R2);
        integration.generation = u32::MAX;
        let now = integration.created_at;
        assert_eq!(integration.rotate(now, None), Err(GenerationsExhausted));
        assert_eq!(integration.generation, u32::MAX);
    }

    fn new_r2(bucket: &str) -> NewIntegration {
        NewIntegration {
            account: Some(String::new()),
            prefix: Some("in/".into()),
            suffixes: vec![".pdf".into()],
            output_prefix: Some(String::new()),
            ..NewIntegration::new(Provider::R2, bucket)
        }
    }

    #[test]
    fn a_new_integration_starts_active_at_generation_1_with_empty_texts_absent() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let integration = new_r2("uploads").build("AbC123", now).unwrap();
        assert_eq!(integration.id, "int_abc123");
        assert_eq!(integration.status, Status::Active);
        assert_eq!((integration.generation, integration.created_at), (1, now));
        assert_eq!(
            integration.account, None,
            "an empty --account is no account"
        );
        assert_eq!(integration.output_prefix, None);
        assert_eq!(integration.prefix.as_deref(), Some("in/"));
    }

    #[test]
    fn a_new_integration_refuses_fields_that_would_match_nothing_or_everything_wrongly() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let build = |change: fn(&mut NewIntegration)| {
            let mut fields = new_r2("uploads");
            change(&mut fields);
            fields.build("x", now).map(|_| ())
        };
        assert_eq!(
            build(|f| f.bucket = " ".into()),
            Err(FieldError::EmptyBucket)
        );
        assert_eq!(
            build(|f| f.suffixes.push(String::new())),
            Err(FieldError::EmptySuffix)
        );
        assert_eq!(
            build(|f| f.max_object_bytes = 0),
            Err(FieldError::ZeroMaxObjectBytes)
        );
        assert_eq!(build(|_| ()), Ok(()));
        assert_eq!(
            FieldError::EmptySuffix.to_string(),
            "--suffix must not be empty"
        );
    }

    #[test]
    fn text_values_round_trip_and_unknown_ones_are_named() {
        assert_eq!("poll".parse::<Mode>(), Ok(Mode::Poll));
        assert_eq!(Provider::S3.to_string(), "s3");
        let err = "gcs".parse::<Provider>().unwrap_err();
        assert!(err.contains("r2, s3"), "{err}");
    }
}
