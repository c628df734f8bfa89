//! The master key's file on the embedded backend: `<data-dir>/master.key`, hex, created 0600 on
//! first run and never overwritten. [`KeyFile`] is the [`MasterKeySource`] read from it.

use super::{BackendError, MasterKey, MasterKeySource};
use async_trait::async_trait;
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::sync::OnceCell;

/// Bytes of a newly made master key.
const KEY_BYTES: usize = 32;

/// The key of a key file, read (or created) at its first use and kept: a command that needs no
/// key (`jobs list`, `show`) works even when the file is damaged.
pub struct KeyFile {
    path: PathBuf,
    key: OnceCell<MasterKey>,
}

impl KeyFile {
    /// The key file at `path`; nothing is read yet.
    pub fn at(path: &Path) -> KeyFile {
        KeyFile {
            path: path.to_owned(),
            key: OnceCell::new(),
        }
    }
}

#[async_trait]
impl MasterKeySource for KeyFile {
    async fn master_key(&self) -> Result<MasterKey, BackendError> {
        let key = self
            .key
            .get_or_try_init(|| async {
                load_or_create(&self.path).map_err(|e| BackendError::new("keyfile", e))
            })
            .await?;
        Ok(key.clone())
    }
}

/// Reads the key file, creating it (mode 0600) with a fresh random key if there is none.
///
/// Creation writes a temporary file and hard-links it into place, so two processes starting at
/// once agree on one key and nobody ever reads a half-written file.
pub fn load_or_create(path: &Path) -> Result<MasterKey, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read master key {}: {e}", path.display())),
    }
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(file, "{}", hex(&key))?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(MasterKey::from_bytes(&key)),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read master key {}: {e}", path.display()))?;
            parse(path, &text)
        }
        Err(e) => Err(format!("cannot create master key {}: {e}", path.display())),
    }
}

/// Whether the key file can be read by anyone but its owner.
pub fn is_too_open(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false)
}

fn parse(path: &Path, text: &str) -> Result<MasterKey, String> {
    MasterKey::from_hex(text).ok_or_else(|| {
        format!(
            "master key {} is not at least 16 bytes of hex (its content is not shown)",
            path.display()
        )
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_key_once_and_reads_the_same_key_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.as_bytes().len(), KEY_BYTES);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!is_too_open(&path));
        let again = load_or_create(&path).unwrap();
        assert_eq!(first.as_bytes(), again.as_bytes());
    }

    #[test]
    fn a_damaged_key_file_is_named_without_showing_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not-hex-secretvalue").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(err.contains("master.key"), "{err}");
        assert!(!err.contains("secretvalue"), "{err}");
    }
}
