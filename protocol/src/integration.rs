//! One customer bucket's configuration: the row that every event is checked against.
//!
//! Nothing secret lives here: the event source secret is derived from the master key and the
//! `generation` (see [`crate::secret`]), so the table can be read, backed up and logged freely.

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
    /// Until then the secret of `generation - 1` is accepted too.
    pub previous_generation_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Integration {
    /// The secret generations a request may be signed with at `now`: current first.
    pub fn valid_generations(&self, now: DateTime<Utc>) -> impl Iterator<Item = u32> {
        let previous = match self.previous_generation_valid_until {
            Some(until) if now < until && self.generation > 1 => Some(self.generation - 1),
            _ => None,
        };
        std::iter::once(self.generation).chain(previous)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(provider: Provider) -> Integration {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Integration {
            id: "int_test".into(),
            provider,
            bucket: "uploads".into(),
            account: None,
            region: None,
            mode: Mode::Event,
            status: Status::Active,
            prefix: None,
            suffixes: vec![],
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            output_prefix: None,
            generation: 1,
            previous_generation_valid_until: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn previous_generation_is_valid_only_within_its_grace() {
        let mut integration = sample(Provider::R2);
        let now = integration.created_at;
        assert_eq!(integration.valid_generations(now).collect::<Vec<_>>(), [1]);

        integration.generation = 2;
        integration.previous_generation_valid_until = Some(now + chrono::Duration::hours(24));
        assert_eq!(
            integration.valid_generations(now).collect::<Vec<_>>(),
            [2, 1]
        );
        let later = now + chrono::Duration::hours(25);
        assert_eq!(
            integration.valid_generations(later).collect::<Vec<_>>(),
            [2]
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
