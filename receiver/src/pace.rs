//! How fast a backfill may write to the ledger: a share of the table's write capacity, so a
//! listing of a million objects leaves the live event path the rest of the table. Pure: the
//! capacity comes in as the database reported it, time as a duration since the run started.
//!
//! A backfill settles each listed page in parts of about a second of its rate
//! ([`Pace::part_len`]), with as many commits in flight as that rate needs
//! ([`Pace::commits_at_once`]), charges each part its write units once it is committed, and
//! waits before the next part while it is more than [`BURST`] ahead of its rate (never after the
//! last). The price of a part is the cost model's (docs/operators.md): a new job writes its
//! claim, its done marker and its history item; a duplicate at most one failed claim (read
//! first, most cost half a read unit instead).

use std::time::Duration;

/// The ledger's write capacity, as its database reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCapacity {
    /// Provisioned: write capacity units (one 1 KB write a second each).
    Provisioned(u64),
    /// On demand: the write units a second the table serves at once (its warm throughput), and
    /// the most the operator allows it (its maximum on-demand throughput), when set.
    OnDemand { warm: u64, max: Option<u64> },
}

/// A new job's write units on DynamoDB: claim, done marker, history item.
pub const UNITS_PER_JOB: u64 = 3;
/// A duplicate's, at most: a claim that found the job made.
pub const UNITS_PER_DUPLICATE: u64 = 1;
/// How far ahead of its rate a backfill may run: a part of a page is committed at once.
pub const BURST: Duration = Duration::from_secs(1);
/// The fewest objects a paced backfill settles at once.
pub const MIN_PART: usize = 10;
/// New jobs a second one commit after another makes on DynamoDB: a commit of 100 is about ten
/// round trips (its claims 16 at once, then the sends, done markers and history), some 100 ms at
/// the few milliseconds DynamoDB takes a call.
pub const JOBS_PER_SECOND_PER_COMMIT: u64 = 1_000;

/// Where a pace's rate came from. Written as [`PaceSource::as_str`] in logs and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaceSource {
    /// Half the table's provisioned write capacity.
    Provisioned,
    /// Half the on-demand table's warm throughput.
    WarmThroughput,
    /// Half the on-demand table's maximum throughput (set lower than its warm throughput).
    MaxThroughput,
    /// The operator's `--write-units`.
    Flag,
}

impl PaceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PaceSource::Provisioned => "provisioned",
            PaceSource::WarmThroughput => "warm_throughput",
            PaceSource::MaxThroughput => "max_throughput",
            PaceSource::Flag => "flag",
        }
    }

    /// The table's figure the rate is half of, in words (`None` for `--write-units`).
    pub fn table_figure(self) -> Option<&'static str> {
        match self {
            PaceSource::Provisioned => Some("provisioned"),
            PaceSource::WarmThroughput => Some("warm"),
            PaceSource::MaxThroughput => Some("maximum"),
            PaceSource::Flag => None,
        }
    }
}

impl serde::Serialize for PaceSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A backfill's write rate and how far it has charged ahead.
#[derive(Clone, Debug, PartialEq)]
pub struct Pace {
    units_per_second: u64,
    source: PaceSource,
    /// The table's own figure the rate is half of (`None` for `--write-units`).
    table_units: Option<u64>,
    /// When, since the run started, the units charged so far are paid off.
    paid_at: Duration,
}

impl Pace {
    /// The operator's rate if given, else half the table's write capacity (the live path keeps
    /// the other half); `None` for a ledger that reports no capacity and no rate given.
    pub fn of(capacity: Option<WriteCapacity>, given: Option<u64>) -> Option<Pace> {
        let (table_units, source) = match (given, capacity) {
            (Some(units), _) => {
                return Some(Pace::new(units, PaceSource::Flag, None));
            }
            (None, None) => return None,
            (None, Some(WriteCapacity::Provisioned(units))) => (units, PaceSource::Provisioned),
            (None, Some(WriteCapacity::OnDemand { warm, max })) => match max {
                Some(max) if max < warm => (max, PaceSource::MaxThroughput),
                _ => (warm, PaceSource::WarmThroughput),
            },
        };
        Some(Pace::new(table_units / 2, source, Some(table_units)))
    }

    fn new(units_per_second: u64, source: PaceSource, table_units: Option<u64>) -> Pace {
        Pace {
            units_per_second: units_per_second.max(1),
            source,
            table_units,
            paid_at: Duration::ZERO,
        }
    }

    pub fn units_per_second(&self) -> u64 {
        self.units_per_second
    }

    pub fn source(&self) -> PaceSource {
        self.source
    }

    pub fn table_units(&self) -> Option<u64> {
        self.table_units
    }

    /// How many listed objects to settle at once: about a second of the pace in new jobs (10
    /// at least, so a small table is not written one object at a time).
    pub fn part_len(&self) -> usize {
        usize::try_from(self.units_per_second / UNITS_PER_JOB)
            .unwrap_or(usize::MAX)
            .max(MIN_PART)
    }

    /// How many commits to have in flight at once to keep up with the pace in new jobs: one for
    /// a new on-demand table's half (about 670 jobs a second), more for a table warmed or
    /// provisioned beyond it (the intake may take fewer: a FIFO queue one).
    pub fn commits_at_once(&self) -> usize {
        let jobs = self.units_per_second / UNITS_PER_JOB;
        usize::try_from(jobs.div_ceil(JOBS_PER_SECOND_PER_COMMIT))
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// The write units `jobs` new jobs and `duplicates` spent.
    pub fn units_of(jobs: u64, duplicates: u64) -> u64 {
        jobs.saturating_mul(UNITS_PER_JOB)
            .saturating_add(duplicates.saturating_mul(UNITS_PER_DUPLICATE))
    }

    /// Charges `units` written from `began` (since the run started) until now: units spread
    /// over a part that took long are paid for by the time it took.
    pub fn charge(&mut self, units: u64, began: Duration) {
        let cost = Duration::from_secs_f64(units as f64 / self.units_per_second as f64);
        self.paid_at = self.paid_at.max(began) + cost;
    }

    /// How long to wait at `now` (since the run started) before writing more: zero while the
    /// run is at most [`BURST`] ahead of its rate.
    pub fn wait(&self, now: Duration) -> Duration {
        self.paid_at.saturating_sub(now + BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_faster_pace_keeps_more_commits_in_flight() {
        let on_demand = |warm| Pace::of(Some(WriteCapacity::OnDemand { warm, max: None }), None);
        // A new on-demand table: half of 4,000 units is 666 new jobs a second, one commit's worth.
        assert_eq!(on_demand(4_000).unwrap().commits_at_once(), 1);
        // Warmed to 10,000 and 40,000 (the default table quota): 1,666 and 6,666 jobs a second.
        assert_eq!(on_demand(10_000).unwrap().commits_at_once(), 2);
        assert_eq!(on_demand(40_000).unwrap().commits_at_once(), 7);
        assert_eq!(Pace::of(None, Some(1)).unwrap().commits_at_once(), 1);
    }

    #[test]
    fn a_backfill_takes_half_the_table_and_the_live_path_keeps_the_rest() {
        let provisioned = Pace::of(Some(WriteCapacity::Provisioned(1000)), None).unwrap();
        assert_eq!(provisioned.units_per_second(), 500);
        assert_eq!(provisioned.source(), PaceSource::Provisioned);
        assert_eq!(provisioned.table_units(), Some(1000));
        // A new on-demand table serves 4,000 write units a second at once.
        let on_demand = WriteCapacity::OnDemand {
            warm: 4000,
            max: None,
        };
        let warm = Pace::of(Some(on_demand), None).unwrap();
        assert_eq!(
            (warm.units_per_second(), warm.source()),
            (2000, PaceSource::WarmThroughput)
        );
    }

    #[test]
    fn an_on_demand_maximum_below_the_warm_throughput_is_the_table_s_capacity() {
        let capped = WriteCapacity::OnDemand {
            warm: 4000,
            max: Some(600),
        };
        let pace = Pace::of(Some(capped), None).unwrap();
        assert_eq!(
            (pace.units_per_second(), pace.source()),
            (300, PaceSource::MaxThroughput)
        );
        let above = WriteCapacity::OnDemand {
            warm: 4000,
            max: Some(40_000),
        };
        assert_eq!(
            Pace::of(Some(above), None).unwrap().units_per_second(),
            2000
        );
    }

    #[test]
    fn the_operator_s_rate_wins_and_no_capacity_means_no_pace() {
        let given = Pace::of(Some(WriteCapacity::Provisioned(1000)), Some(900)).unwrap();
        assert_eq!(
            (
                given.units_per_second(),
                given.source(),
                given.table_units()
            ),
            (900, PaceSource::Flag, None)
        );
        assert_eq!(Pace::of(None, None), None);
        assert_eq!(Pace::of(None, Some(50)).unwrap().units_per_second(), 50);
        // A one-unit table still moves.
        let tiny = Pace::of(Some(WriteCapacity::Provisioned(1)), None).unwrap();
        assert_eq!(tiny.units_per_second(), 1);
    }

    #[test]
    fn a_part_within_one_second_of_the_rate_goes_on_and_one_beyond_it_waits_the_excess() {
        let mut pace = Pace::of(Some(WriteCapacity::Provisioned(200)), None).unwrap();
        // 100 units a second: a 100-unit part is one second's worth, within the burst.
        pace.charge(100, S(0));
        assert_eq!(pace.wait(S(0)), Duration::ZERO);
        // Another at once: two seconds' worth, one beyond the burst.
        pace.charge(100, S(0));
        assert_eq!(pace.wait(S(0)), S(1));
        // After that second, the run is one second ahead: the next part waits one more.
        pace.charge(100, S(1));
        assert_eq!(pace.wait(S(1)), S(1));
        // A run that fell behind (a slow listing) is not owed the time it lost.
        pace.charge(100, S(60));
        assert_eq!(pace.wait(S(60)), Duration::ZERO);
        pace.charge(150, S(60));
        assert_eq!(pace.wait(S(60)), Duration::from_millis(1500));
    }

    #[test]
    fn a_part_that_took_longer_than_its_units_cost_goes_on_at_once() {
        let mut pace = Pace::of(Some(WriteCapacity::Provisioned(200)), None).unwrap();
        // 300 units written over 7 seconds: 43 a second, well within 100.
        pace.charge(300, S(0));
        assert_eq!(pace.wait(S(7)), Duration::ZERO);
        // The same written in a moment is two seconds beyond the burst.
        let mut pace = Pace::of(Some(WriteCapacity::Provisioned(200)), None).unwrap();
        pace.charge(300, S(0));
        assert_eq!(pace.wait(S(0)), S(2));
    }

    #[test]
    fn a_part_is_about_a_second_of_the_rate_in_new_jobs_and_never_fewer_than_ten() {
        let part = |units| Pace::of(None, Some(units)).unwrap().part_len();
        assert_eq!(part(2000), 666);
        assert_eq!(part(30), MIN_PART);
        assert_eq!(part(1), MIN_PART);
        assert_eq!(
            part(40_000_000),
            13_333_333,
            "a page (1,000) then goes whole"
        );
    }

    #[test]
    fn a_part_is_charged_three_units_a_new_job_and_one_a_duplicate() {
        assert_eq!(Pace::units_of(1000, 0), 3000);
        assert_eq!(Pace::units_of(0, 1000), 1000);
        assert_eq!(Pace::units_of(u64::MAX, 1), u64::MAX);
    }
}
