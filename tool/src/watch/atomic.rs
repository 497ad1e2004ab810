//! The `--metrics` file: checked before tracing starts (a typo must not cost the run), then
//! replaced atomically at each write, so a reader (node_exporter's textfile collector)
//! never sees half a file: write a temporary file in the same directory, fsync, rename it
//! over FILE. The temporary file gets a fresh random name (a name someone planted, say a
//! symlink, is never opened: leakscope runs as root and a metrics directory may be writable
//! by others) and is removed again when a write fails half way.

use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use tempfile::NamedTempFile;

use crate::exit_code::UsageError;

#[derive(Clone, Debug)]
pub(crate) struct MetricsFile {
    path: PathBuf,
    dir: PathBuf,
}

impl MetricsFile {
    /// Checks that FILE's directory takes a temporary file (created, then removed again),
    /// so a bad directory is a usage error before anything runs.
    pub(crate) fn open(path: &Path) -> Result<Self, UsageError> {
        let refused = |error: std::io::Error| {
            UsageError(format!(
                "--metrics {}: cannot write the metrics there: {error}",
                path.display()
            ))
        };
        if path.file_name().is_none() || path.is_dir() {
            return Err(refused(std::io::Error::other("not a file name")));
        }
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = MetricsFile {
            path: path.to_path_buf(),
            dir,
        };
        file.temporary().map_err(refused)?; // dropped: removed at once
        Ok(file)
    }

    /// A new temporary file next to FILE, so the rename stays on one filesystem. Readable
    /// by all (less the umask), as a plainly created file would be: the collector that
    /// publishes it (node_exporter) does not run as root.
    fn temporary(&self) -> std::io::Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix(".leakscope-metrics-")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(&self.dir)
    }

    /// Replaces FILE with `contents` in one step.
    pub(crate) fn write(&self, contents: &str) -> anyhow::Result<()> {
        let written = self.temporary().and_then(|mut file| {
            file.write_all(contents.as_bytes())?;
            file.as_file().sync_all()?;
            Ok(file)
        });
        written
            .and_then(|file| file.persist(&self.path).map_err(|error| error.error))
            .map(drop)
            .with_context(|| format!("cannot write the metrics to {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_planted_as_the_temporary_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let metrics = dir.path().join("leakscope.prom");
        std::os::unix::fs::symlink(&victim, dir.path().join("leakscope.prom.tmp")).unwrap();
        let file = MetricsFile::open(&metrics).unwrap();
        file.write("leakscope_final 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(
            std::fs::read_to_string(&metrics).unwrap(),
            "leakscope_final 1\n"
        );
    }

    #[test]
    fn a_bad_directory_is_refused_up_front() {
        let error = MetricsFile::open(Path::new("/nonexistent-dir/leakscope.prom")).unwrap_err();
        assert!(
            error.0.contains("/nonexistent-dir/leakscope.prom"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(
            MetricsFile::open(dir.path()).is_err(),
            "a directory is not a file"
        );
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leakscope.prom");
        let file = MetricsFile::open(&path).unwrap();
        std::fs::create_dir(&path).unwrap(); // the rename over it fails
        assert!(file.write("a 1\n").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("leakscope.prom")]);
    }

    #[test]
    fn the_file_is_readable_by_the_collector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leakscope.prom");
        MetricsFile::open(&path).unwrap().write("a 1\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o044, 0o044, "group and others may read: {mode:o}");
    }

    #[test]
    fn each_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leakscope.prom");
        let file = MetricsFile::open(&path).unwrap();
        assert!(
            !path.exists(),
            "nothing is written before the first interval"
        );
        file.write("a 1\n").unwrap();
        file.write("b 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("leakscope.prom")]);
    }
}
