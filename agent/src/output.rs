//! Writes rendered files into the folder shared with the Kafka container, atomically:
//! a temp file in the same folder, fsync, then rename, so Kafka never reads half a
//! file and a crash leaves the previous version intact.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// A failed write.
#[derive(Debug, thiserror::Error)]
#[error("failed to write {path}")]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Replaces `dir/name` with `contents`, readable by `mode`.
pub fn write_atomically(
    dir: &Path,
    name: &str,
    contents: &str,
    mode: u32,
) -> Result<(), WriteError> {
    let path = dir.join(name);
    let err = |source| WriteError {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(())
}

/// A failed copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The source.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The copy could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Copies `src` to `dir/name` atomically, unless `dir/name` already holds the same
/// bytes (a restarted agent leaves a file Kafka may have open alone).
pub fn copy_atomically(src: &Path, dir: &Path, name: &str) -> Result<(), CopyError> {
    let path = dir.join(name);
    let bytes = std::fs::read(src).map_err(|source| CopyError::Read {
        path: src.to_path_buf(),
        source,
    })?;
    if std::fs::read(&path).is_ok_and(|have| have == bytes) {
        return Ok(());
    }
    let err = |source| WriteError {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    file.write_all(&bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_made_once_and_a_missing_source_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("agent.jar");
        std::fs::write(&src, b"PK jar").expect("source");
        let out = dir.path().join("out");
        copy_atomically(&src, &out, "x.jar").expect("first copy");
        let first = std::fs::metadata(out.join("x.jar")).expect("copied");
        copy_atomically(&src, &out, "x.jar").expect("second copy");
        let second = std::fs::metadata(out.join("x.jar")).expect("still there");
        assert_eq!(std::fs::read(out.join("x.jar")).expect("read"), b"PK jar");
        assert_eq!(
            first.modified().expect("mtime"),
            second.modified().expect("mtime"),
            "identical bytes are not rewritten"
        );
        let e =
            copy_atomically(&dir.path().join("missing.jar"), &out, "y.jar").expect_err("no source");
        assert_eq!(
            e.to_string(),
            format!(
                "failed to read {}",
                dir.path().join("missing.jar").display()
            )
        );
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomically(dir.path(), "a.properties", "x=1\n", 0o640).expect("first write");
        write_atomically(dir.path(), "a.properties", "x=2\n", 0o640).expect("second write");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.properties")).expect("read"),
            "x=2\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let mode = std::fs::metadata(dir.path().join("a.properties"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}
