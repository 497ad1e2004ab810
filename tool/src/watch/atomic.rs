//! The `--metrics` file: checked before tracing starts (a typo must not cost the run), then
//! replaced atomically at each write, so a reader (node_exporter's textfile collector)
//! never sees half a file: write `FILE.tmp` in the same directory, fsync, rename over FILE.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::exit_code::UsageError;

#[derive(Clone, Debug)]
pub(crate) struct MetricsFile {
    path: PathBuf,
    tmp: PathBuf,
}

impl MetricsFile {
    /// Checks that FILE's directory takes the temporary file (created, then removed again),
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
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let file = MetricsFile {
            path: path.to_path_buf(),
            tmp: PathBuf::from(tmp),
        };
        file.create_tmp().map_err(refused)?;
        let _ = std::fs::remove_file(&file.tmp);
        Ok(file)
    }

    /// A fresh `FILE.tmp`. Made with O_EXCL after removing any old one, so a symlink
    /// someone planted there is never followed: leakscope runs as root, and a metrics
    /// directory may be writable by others.
    fn create_tmp(&self) -> std::io::Result<File> {
        match std::fs::remove_file(&self.tmp) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.tmp)
    }

    /// Replaces FILE with `contents` in one step.
    pub(crate) fn write(&self, contents: &str) -> anyhow::Result<()> {
        let written = self.create_tmp().and_then(|mut file| {
            file.write_all(contents.as_bytes())?;
            file.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&self.tmp, &self.path))
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
