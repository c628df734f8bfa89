//! The embedded backend's wiring: one private folder holding `relay.db` (SQLite: integrations,
//! ledger, queue and usage) and `master.key`.

use super::Chosen;
use crate::backend::keyfile::{self, KeyFile};
use crate::backend::sqlite::Sqlite;
use crate::backend::Backends;
use relay_protocol::job::JobSchema;
use std::path::Path;
use std::sync::Arc;

const DB_FILE: &str = "relay.db";
const KEY_FILE: &str = "master.key";

pub(super) fn wire(
    data_dir: &Path,
    schema: JobSchema,
    rate_window: chrono::Duration,
) -> anyhow::Result<Chosen> {
    create_private_dir(data_dir)?;
    let db_path = data_dir.join(DB_FILE);
    // The ledger and the queue name every object: readable by the owner only. SQLite gives its
    // -wal and -shm files the database file's mode when it creates them, so the file is made
    // private before SQLite opens it (and those of an older run are made private too).
    create_private_file(&db_path)?;
    for path in [
        &db_path,
        &sidecar(&db_path, "-wal"),
        &sidecar(&db_path, "-shm"),
    ] {
        if path.exists() {
            make_private(path, 0o600)?;
        }
    }
    let db = Sqlite::open(&db_path)?
        .with_job_schema(schema)
        .with_rate_window(rate_window);
    let key_path = data_dir.join(KEY_FILE);
    let key = KeyFile::at(&key_path);
    if keyfile::is_too_open(&key_path) {
        eprintln!(
            "warning: {} is readable by other users; run chmod 600 on it",
            key_path.display()
        );
    }
    let shared = Arc::new(db.clone());
    Ok(Chosen {
        backends: Backends {
            store: shared.clone(),
            intake: shared.clone(),
            usage: shared.clone(),
            cursors: shared.clone(),
            history: shared.clone(),
            records: shared.clone(),
            backlog: shared,
        },
        keys: Arc::new(key),
        embedded: Some(db),
        // SQLite adds the counts up in the commit's own transaction.
        usage_buffer: None,
    })
}

/// Creates `path` empty with mode 0600 if it does not exist yet.
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot create {}: {e}", path.display())),
    }
}

/// SQLite's file beside the database: `relay.db-wal`, `relay.db-shm`.
fn sidecar(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// Creates the data directory (mode 0700), and makes an existing one private too.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
    make_private(dir, 0o700)
}

fn make_private(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| anyhow::anyhow!("cannot make {} private: {e}", path.display()))
}
