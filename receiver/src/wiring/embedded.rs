//! The embedded backend's wiring: one private folder holding `relay.db` (SQLite: integrations,
//! ledger, queue and usage) and `master.key`.

use super::Chosen;
use crate::backend::keyfile::{self, KeyFile};
use crate::backend::sqlite::Sqlite;
use crate::backend::Backends;
use std::path::Path;
use std::sync::Arc;

const DB_FILE: &str = "relay.db";
const KEY_FILE: &str = "master.key";

pub(super) fn wire(data_dir: &Path) -> anyhow::Result<Chosen> {
    create_private_dir(data_dir)?;
    let db_path = data_dir.join(DB_FILE);
    let db = Sqlite::open(&db_path)?;
    // The ledger and the queue name every object: readable by the owner only. SQLite gives its
    // -wal and -shm files the database file's mode.
    make_private(&db_path, 0o600)?;
    let key_path = data_dir.join(KEY_FILE);
    let key = KeyFile::open(&key_path).map_err(anyhow::Error::msg)?;
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
            history: shared,
        },
        keys: Arc::new(key),
        embedded: Some(db),
    })
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
