//! A temp dir per test that is removed on success and kept (and named) on failure.

use std::path::{Path, PathBuf};

use crate::Error;

/// A test's own folder for data, configs and logs.
#[derive(Debug)]
pub struct WorkDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl WorkDir {
    /// Creates `$TMPDIR/stoker-<prefix>-XXXX`.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("stoker-{prefix}-"))
            .tempdir()
            .map_err(|source| Error::Io {
                what: "create a test work dir".into(),
                source,
            })?;
        let path = dir.path().to_owned();
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A sub-folder, created.
    pub fn subdir(&self, name: &str) -> Result<PathBuf, Error> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).map_err(|source| Error::Io {
            what: format!("create {}", p.display()),
            source,
        })?;
        Ok(p)
    }

    /// Writes `contents` to `name` inside the folder and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf, Error> {
        let p = self.path.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                what: format!("create {}", parent.display()),
                source,
            })?;
        }
        std::fs::write(&p, contents).map_err(|source| Error::Io {
            what: format!("write {}", p.display()),
            source,
        })?;
        Ok(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var_os("STOKER_KEEP_TEST_DIRS").is_some();
        let Some(dir) = self.dir.take() else { return };
        if keep {
            let kept = dir.keep();
            eprintln!("test work dir kept at {}", kept.display());
            return;
        }
        // A task that has not seen its abort yet (a Pod supervisor writing a log, the
        // hosts file rewritten) can add a file while the folder is removed; try again
        // briefly rather than leave the folder behind.
        let path = dir.keep();
        for attempt in 1..=10 {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) if attempt == 10 => {
                    eprintln!("failed to remove the test work dir {}: {e}", path.display());
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }
}
