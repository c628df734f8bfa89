//! The embedded default: integrations, the ledger and the job queue in one SQLite file.
//!
//! WAL mode and a busy timeout let the CLI change an integration while `serve` runs: every
//! request reads the integration afresh, so `pause` takes effect on the next request. Calls run
//! on tokio's blocking pool so a slow disk never stalls the HTTP server's threads.

use super::{
    BackendError, Claim, Ledger, Queue, Store, UsageCounts, CLAIM_LEASE, LEDGER_RETENTION,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use relay_protocol::{IngestJob, Integration};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

const BACKEND: &str = "sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS integrations (
    id   TEXT PRIMARY KEY,
    body TEXT NOT NULL            -- the Integration as JSON
);
CREATE TABLE IF NOT EXISTS ledger (
    job_id         TEXT PRIMARY KEY,
    integration_id TEXT NOT NULL,
    bucket         TEXT NOT NULL,
    key            TEXT NOT NULL,
    state          TEXT NOT NULL, -- 'pending' (claimed) or 'done' (enqueued)
    claimed_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    integration_id TEXT NOT NULL,
    day            TEXT NOT NULL, -- YYYY-MM-DD, UTC
    name           TEXT NOT NULL, -- '<outcome>' or '<outcome>/<reason>'
    count          INTEGER NOT NULL,
    PRIMARY KEY (integration_id, day, name)
);
CREATE TABLE IF NOT EXISTS jobs (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    body   TEXT NOT NULL          -- the ingest-job/v1 message, as a queue would carry it
);
";

#[derive(Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(BACKEND, e)
}

impl Sqlite {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let conn = Connection::open(path)
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| err("connection lock poisoned"))?;
            f(&mut conn).map_err(err)
        })
        .await
        .map_err(err)?
    }

    /// Every job on the embedded queue, oldest first.
    pub async fn jobs(&self) -> Result<Vec<IngestJob>, BackendError> {
        self.json_rows("SELECT body FROM jobs ORDER BY seq").await
    }

    /// The JSON documents a one-column query selects, parsed.
    async fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
    ) -> Result<Vec<T>, BackendError> {
        let bodies = self
            .run(move |conn| {
                let mut stmt = conn.prepare(sql)?;
                let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await?;
        bodies
            .iter()
            .map(|body| serde_json::from_str(body).map_err(err))
            .collect()
    }
}

#[async_trait]
impl Store for Sqlite {
    async fn get(&self, id: &str) -> Result<Option<Integration>, BackendError> {
        let id = id.to_owned();
        let body = self
            .run(move |conn| {
                conn.query_row("SELECT body FROM integrations WHERE id = ?1", [id], |row| {
                    row.get::<_, String>(0)
                })
                .optional()
            })
            .await?;
        body.map(|body| serde_json::from_str(&body).map_err(err))
            .transpose()
    }

    async fn put(&self, integration: &Integration) -> Result<(), BackendError> {
        let id = integration.id.clone();
        let body = serde_json::to_string(integration).map_err(err)?;
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO integrations (id, body) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                params![id, body],
            )
        })
        .await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Integration>, BackendError> {
        self.json_rows("SELECT body FROM integrations ORDER BY id")
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool, BackendError> {
        let id = id.to_owned();
        let deleted = self
            .run(move |conn| conn.execute("DELETE FROM integrations WHERE id = ?1", [id]))
            .await?;
        Ok(deleted > 0)
    }
}

struct ClaimRow {
    job_id: String,
    integration_id: String,
    bucket: String,
    key: String,
}

#[async_trait]
impl Ledger for Sqlite {
    async fn claim(
        &self,
        jobs: &[&IngestJob],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, BackendError> {
        let rows: Vec<ClaimRow> = jobs
            .iter()
            .map(|job| ClaimRow {
                job_id: job.job_id.clone(),
                integration_id: job.integration_id.clone(),
                bucket: job.bucket.clone(),
                key: job.key.clone(),
            })
            .collect();
        let now_ms = now.timestamp_millis();
        let lease_ms = CLAIM_LEASE.num_milliseconds();
        let expires_ms = (now + LEDGER_RETENTION).timestamp_millis();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let mut claims = Vec::with_capacity(rows.len());
            for row in &rows {
                let existing: Option<(String, i64, i64)> = tx
                    .query_row(
                        "SELECT state, claimed_at_ms, expires_at_ms FROM ledger WHERE job_id = ?1",
                        [&row.job_id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let claim = match existing {
                    Some((_, _, expires)) if expires <= now_ms => Claim::Claimed,
                    Some((state, _, _)) if state == "done" => Claim::Done,
                    Some((_, claimed, _)) if now_ms - claimed < lease_ms => Claim::InFlight,
                    _ => Claim::Claimed,
                };
                if claim == Claim::Claimed {
                    tx.execute(
                        "INSERT OR REPLACE INTO ledger
                         (job_id, integration_id, bucket, key, state, claimed_at_ms, expires_at_ms)
                         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)",
                        params![
                            row.job_id,
                            row.integration_id,
                            row.bucket,
                            row.key,
                            now_ms,
                            expires_ms
                        ],
                    )?;
                }
                claims.push(claim);
            }
            tx.commit()?;
            Ok(claims)
        })
        .await
    }

    async fn complete(&self, jobs: &[&IngestJob], _now: DateTime<Utc>) -> Result<(), BackendError> {
        let ids: Vec<String> = jobs.iter().map(|job| job.job_id.clone()).collect();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            for id in &ids {
                tx.execute("UPDATE ledger SET state = 'done' WHERE job_id = ?1", [id])?;
            }
            tx.commit()
        })
        .await
    }

    async fn release(&self, job_ids: &[&str]) -> Result<(), BackendError> {
        let ids: Vec<String> = job_ids.iter().map(|id| (*id).to_owned()).collect();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            for id in &ids {
                tx.execute(
                    "DELETE FROM ledger WHERE job_id = ?1 AND state = 'pending'",
                    [id],
                )?;
            }
            tx.commit()
        })
        .await
    }

    async fn record_usage(
        &self,
        integration_id: &str,
        day: NaiveDate,
        counts: &UsageCounts,
    ) -> Result<(), BackendError> {
        let (id, day) = (integration_id.to_owned(), day.to_string());
        let counts = counts.clone();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            for (name, count) in &counts {
                tx.execute(
                    "INSERT INTO usage (integration_id, day, name, count) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (integration_id, day, name) DO UPDATE SET count = count + excluded.count",
                    params![id, day, name, *count as i64],
                )?;
            }
            tx.commit()
        })
        .await
    }

    async fn usage(
        &self,
        integration_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, UsageCounts>, BackendError> {
        let (id, since, until) = (
            integration_id.to_owned(),
            since.to_string(),
            until.to_string(),
        );
        let rows = self
            .run(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT day, name, count FROM usage
                     WHERE integration_id = ?1 AND day >= ?2 AND day <= ?3",
                )?;
                let rows = stmt.query_map(params![id, since, until], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let mut usage: BTreeMap<NaiveDate, UsageCounts> = BTreeMap::new();
        for (day, name, count) in rows {
            let day = day.parse().map_err(err)?;
            usage.entry(day).or_default().insert(name, count as u64);
        }
        Ok(usage)
    }
}

#[async_trait]
impl Queue for Sqlite {
    async fn send(&self, jobs: &[&IngestJob]) -> Result<Vec<Result<(), String>>, BackendError> {
        let rows = jobs
            .iter()
            .map(|job| Ok((job.job_id.clone(), serde_json::to_string(job)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(err)?;
        let count = rows.len();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            for (job_id, body) in &rows {
                tx.execute(
                    "INSERT INTO jobs (job_id, body) VALUES (?1, ?2)",
                    params![job_id, body],
                )?;
            }
            tx.commit()
        })
        .await?;
        Ok(vec![Ok(()); count])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_protocol::integration::Provider;

    fn job(id: &str) -> IngestJob {
        IngestJob {
            schema: "ingest-job/v1".into(),
            job_id: id.into(),
            integration_id: "int_1".into(),
            provider: Provider::R2,
            account: None,
            region: None,
            bucket: "b".into(),
            key: "k".into(),
            key_encoding: relay_protocol::event::KeyEncoding::Exact,
            size: Some(1),
            etag: None,
            version_id: None,
            sequencer: None,
            action: "PutObject".into(),
            event_time: String::new(),
            received_at: String::new(),
            source_event_id: "m".into(),
        }
    }

    #[tokio::test]
    async fn a_claim_is_done_once_completed_in_flight_while_fresh_and_reclaimable_after_its_lease()
    {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("relay.db")).unwrap();
        let (a, b) = (job("a"), job("b"));
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();

        assert_eq!(
            db.claim(&[&a, &b], t0).await.unwrap(),
            [Claim::Claimed, Claim::Claimed]
        );
        db.complete(&[&a], t0).await.unwrap();
        assert_eq!(
            db.claim(&[&a, &b], t0).await.unwrap(),
            [Claim::Done, Claim::InFlight]
        );
        // The claim on b was never completed (the receiver died): after the lease it is taken again.
        let later = t0 + CLAIM_LEASE;
        assert_eq!(db.claim(&[&b], later).await.unwrap(), [Claim::Claimed]);
        // A released claim is free at once, so a retry after a failed send is not a duplicate.
        db.release(&["b"]).await.unwrap();
        assert_eq!(db.claim(&[&b], later).await.unwrap(), [Claim::Claimed]);
        // After the retention the ledger forgets, even a done job.
        let expired = t0 + LEDGER_RETENTION;
        assert_eq!(db.claim(&[&a], expired).await.unwrap(), [Claim::Claimed]);
    }

    #[tokio::test]
    async fn usage_adds_up_per_day_and_integration() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("relay.db")).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let counts = |n| UsageCounts::from([("accepted".to_owned(), n)]);
        db.record_usage("int_1", day, &counts(2)).await.unwrap();
        db.record_usage("int_1", day, &counts(3)).await.unwrap();
        db.record_usage("int_2", day, &counts(7)).await.unwrap();
        db.record_usage("int_1", day.pred_opt().unwrap(), &counts(1))
            .await
            .unwrap();
        let usage = db.usage("int_1", day, day).await.unwrap();
        assert_eq!(usage, BTreeMap::from([(day, counts(5))]));
    }

    #[tokio::test]
    async fn jobs_and_integrations_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        {
            let db = Sqlite::open(&path).unwrap();
            db.send(&[&job("j1"), &job("j2")]).await.unwrap();
        }
        let db = Sqlite::open(&path).unwrap();
        let ids: Vec<String> = db
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.job_id)
            .collect();
        assert_eq!(ids, ["j1", "j2"]);
        assert!(db.get("int_missing").await.unwrap().is_none());
        assert!(!db.delete("int_missing").await.unwrap());
    }
}
