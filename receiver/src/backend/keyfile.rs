//! The master key's file on the embedded backend: `<data-dir>/master.key`, created 0600 on first
//! run. It holds the keyring ([`Keyring`]): a bare hex key (version 1, as before versions) until
//! `keys rotate` writes the JSON form. A new content is written to a temporary file (0600) and
//! renamed into place: never overwritten in place, never half-written. [`KeyFile`] is the
//! [`MasterKeySource`] read from it.

use super::{BackendError, KeyCache, Keyring, MasterKey, MasterKeySource};
use crate::keys::{hex, KEY_BYTES};
use async_trait::async_trait;
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The keyring of a key file, read (or created) at its first use and kept: a command that
/// needs no key (`jobs list`, `show`) works even when the file is damaged.
pub struct KeyFile {
    path: PathBuf,
    cache: KeyCache,
}

impl KeyFile {
    /// The key file at `path`; nothing is read yet.
    pub fn at(path: &Path) -> KeyFile {
        KeyFile {
            path: path.to_owned(),
            cache: KeyCache::default(),
        }
    }

    async fn read(&self) -> Result<Keyring, BackendError> {
        load_or_create(&self.path).map_err(|e| BackendError::new("keyfile", e))
    }
}

#[async_trait]
impl MasterKeySource for KeyFile {
    async fn keyring(&self) -> Result<Keyring, BackendError> {
        self.cache.get(None, || self.read()).await
    }

    async fn keyring_with(&self, version: u32) -> Result<Keyring, BackendError> {
        self.cache.get(Some(version), || self.read()).await
    }

    async fn replace(&self, expected: &Keyring, new: &Keyring) -> Result<(), BackendError> {
        let failed = |e: String| BackendError::new("keyfile", e);
        let now = load_or_create(&self.path).map_err(failed)?;
        if &now != expected {
            return Err(failed(format!(
                "master key {} changed while this command ran: run it again",
                self.path.display()
            )));
        }
        write_new(&self.path, &new.to_text(), Install::Rename).map_err(|e| {
            failed(format!(
                "cannot write master key {}: {e}",
                self.path.display()
            ))
        })?;
        self.cache.forget().await;
        Ok(())
    }
}

/// How a freshly written file takes the key file's place.
enum Install {
    /// Only if there is none (a first run): two processes starting at once agree on one key.
    Link,
    /// Over the old one, atomically.
    Rename,
}

/// Writes `text` to a temporary file (0600, synced) beside `path`, then puts it in place.
fn write_new(path: &Path, text: &str, install: Install) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(file, "{text}")?;
        file.sync_all()?;
        match install {
            Install::Link => std::fs::hard_link(&tmp, path),
            Install::Rename => std::fs::rename(&tmp, path),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written
}

/// Reads the key file, creating it (mode 0600) with a fresh random key if there is none.
pub fn load_or_create(path: &Path) -> Result<Keyring, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read master key {}: {e}", path.display())),
    }
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    match write_new(path, &hex(&key), Install::Link) {
        Ok(()) => Ok(Keyring::single(MasterKey::from_bytes(&key))),
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

fn parse(path: &Path, text: &str) -> Result<Keyring, String> {
    Keyring::parse(text).map_err(|why| {
        format!(
            "master key {} is not a key: {why} (its content is not shown)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_key_once_and_reads_the_same_key_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = load_or_create(&path).unwrap();
        assert!(
            matches!(first.version(1), Ok(crate::keys::KeyVersion::Local(key)) if key.as_bytes().len() == KEY_BYTES)
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!is_too_open(&path));
        let again = load_or_create(&path).unwrap();
        assert_eq!(first, again);
        // Today's format: bare hex, version 1.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), KEY_BYTES * 2);
    }

    #[tokio::test]
    async fn a_replaced_keyring_is_renamed_into_place_private_and_only_over_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let file = KeyFile::at(&path);
        let before = file.keyring().await.unwrap();
        let rotated = before.rotated(None);
        file.replace(&before, &rotated).await.unwrap();
        assert_eq!(file.keyring().await.unwrap(), rotated);
        assert_eq!(KeyFile::at(&path).keyring().await.unwrap(), rotated);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second writer that read the old keyring is refused, and changes nothing.
        let error = file
            .replace(&before, &before.rotated(None))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("changed while this command ran"),
            "{error}"
        );
        assert_eq!(KeyFile::at(&path).keyring().await.unwrap(), rotated);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
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
