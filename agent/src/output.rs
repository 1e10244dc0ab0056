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

#[cfg(test)]
mod tests {
    use super::*;

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
