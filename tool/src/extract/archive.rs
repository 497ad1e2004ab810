//! The archive that is extracted over and over: built in memory from entries (the report's
//! `a.txt` = "hello", `b.txt` = "world" by default, or `--file NAME=CONTENT`), or read from
//! `--archive PATH`. Also what a correct extraction must leave behind, for the final check.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{Cursor, Read},
    path::{Component, Path, PathBuf},
};

use super::{ExtractError, inject::INJECTED_FD_FILE_NAME};

/// One regular file of the in-memory archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ArchiveEntry {
    /// Relative path inside the extraction directory; may contain '/' for subdirectories.
    pub(crate) name: String,
    pub(crate) content: String,
}

impl ArchiveEntry {
    pub(crate) fn new(name: impl Into<String>, content: impl Into<String>) -> Self {
        ArchiveEntry {
            name: name.into(),
            content: content.into(),
        }
    }
}

/// The original report's archive: two tiny files, so that extraction itself allocates little
/// and any growth stands out.
pub(crate) fn default_entries() -> Vec<ArchiveEntry> {
    vec![
        ArchiveEntry::new("a.txt", "hello"),
        ArchiveEntry::new("b.txt", "world"),
    ]
}

/// Parses one `--file NAME=CONTENT` spec. The first '=' splits, so CONTENT may contain '='.
pub(crate) fn parse_file_spec(spec: &str) -> Result<ArchiveEntry, ExtractError> {
    let invalid = |reason: String| ExtractError::InvalidFileSpec {
        spec: spec.to_owned(),
        reason,
    };
    let (name, content) = spec
        .split_once('=')
        .ok_or_else(|| invalid("expected NAME=CONTENT, e.g. --file a.txt=hello".to_owned()))?;
    check_entry_name(name).map_err(invalid)?;
    Ok(ArchiveEntry::new(name, content))
}

/// Rejects names that would not extract to exactly one file inside the extraction directory.
/// The tar crate would strip a leading '/' and silently skip '..' entries; refusing them here
/// keeps "what you asked for" and "what was extracted" the same thing.
fn check_entry_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("NAME is empty".to_owned());
    }
    if name.contains('\0') {
        return Err("NAME contains a NUL byte".to_owned());
    }
    let path = Path::new(name);
    if path.has_root() {
        return Err(format!(
            "NAME '{name}' is absolute; it must be relative to the extraction directory"
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "NAME '{name}' contains '..', which would escape the extraction directory"
        ));
    }
    if name.ends_with('/') {
        return Err(format!("NAME '{name}' ends with '/', so it is not a file"));
    }
    let normalized = normalize_entry_path(path).map_err(|reason| format!("NAME {reason}"))?;
    if normalized.as_os_str().is_empty() {
        return Err(format!("NAME '{name}' names no file"));
    }
    if normalized == Path::new(INJECTED_FD_FILE_NAME) {
        return Err(format!(
            "NAME '{name}' is reserved for the file that --inject-leak fd opens"
        ));
    }
    Ok(())
}

/// Builds the tar bytes for `entries`: regular files, mode 0644, mtime 0, so the same entries
/// always give the same bytes.
pub(crate) fn build_archive(entries: &[ArchiveEntry]) -> Result<Vec<u8>, ExtractError> {
    let mut seen = BTreeSet::new();
    for entry in entries {
        check_entry_name(&entry.name).map_err(|reason| ExtractError::InvalidFileSpec {
            spec: format!("{}={}", entry.name, entry.content),
            reason,
        })?;
        let normalized = normalize_entry_path(Path::new(&entry.name))
            .expect("check_entry_name accepted the name");
        if !seen.insert(normalized) {
            return Err(ExtractError::DuplicateEntry {
                name: entry.name.clone(),
            });
        }
    }

    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(entry.content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder
            .append_data(&mut header, &entry.name, entry.content.as_bytes())
            .map_err(ExtractError::BuildArchive)?;
    }
    builder.into_inner().map_err(ExtractError::BuildArchive)
}

/// Reads `--archive PATH` (or the worker's copy of the bytes) and checks that it is a tar
/// archive that extracts to at least one entry, so a wrong file fails before the loop starts,
/// with a message about the file rather than about iteration 0.
pub(crate) fn read_archive_file(path: &Path) -> Result<Vec<u8>, ExtractError> {
    let bytes = fs::read(path).map_err(|source| ExtractError::ReadArchive {
        path: path.to_owned(),
        source,
    })?;
    expected_contents(&bytes, &path.display().to_string())?;
    Ok(bytes)
}

/// What a correct extraction of an archive leaves in the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExpectedContents {
    /// Regular files by relative path. A later entry of the same name wins, as in extraction.
    pub(crate) files: BTreeMap<PathBuf, Vec<u8>>,
    pub(crate) dirs: BTreeSet<PathBuf>,
}

/// Reads every entry of the tar `bytes` and records what extraction must produce. This is
/// also the validation of an archive: corrupt headers, truncated data, no entries at all and
/// entries that would escape the directory are all errors. `origin` names the bytes in errors.
pub(crate) fn expected_contents(
    bytes: &[u8],
    origin: &str,
) -> Result<ExpectedContents, ExtractError> {
    let invalid = |reason: String| ExtractError::InvalidArchive {
        origin: origin.to_owned(),
        reason,
    };
    let mut archive = tar::Archive::new(Cursor::new(bytes));
    let mut expected = ExpectedContents::default();
    let mut entry_count = 0usize;
    for entry in archive.entries().map_err(|e| invalid(e.to_string()))? {
        let mut entry = entry.map_err(|e| invalid(e.to_string()))?;
        entry_count += 1;
        let raw_path = entry
            .path()
            .map_err(|e| invalid(e.to_string()))?
            .into_owned();
        let path =
            normalize_entry_path(&raw_path).map_err(|reason| invalid(format!("entry {reason}")))?;
        if path.as_os_str().is_empty() {
            // "./" and similar: the extraction directory itself.
            continue;
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let declared = entry.size();
                let mut content = Vec::with_capacity(declared.min(1 << 20) as usize);
                entry
                    .read_to_end(&mut content)
                    .map_err(|e| invalid(format!("entry '{}': {e}", raw_path.display())))?;
                // A short read is not an error in the tar crate; it means the archive was cut off.
                if content.len() as u64 != declared {
                    return Err(invalid(format!(
                        "entry '{}' is truncated: the header says {declared} bytes, the archive holds {}",
                        raw_path.display(),
                        content.len()
                    )));
                }
                expected.dirs.remove(&path);
                expected.files.insert(path, content);
            }
            tar::EntryType::Directory => {
                expected.files.remove(&path);
                expected.dirs.insert(path);
            }
            // Links, devices and fifos are extracted but not checked: their "content" is not
            // something a leak hunt cares about.
            _ => {}
        }
    }
    if entry_count == 0 {
        return Err(invalid("it has no entries".to_owned()));
    }
    Ok(expected)
}

/// The relative path an entry extracts to: root, prefix and '.' components dropped (the tar
/// crate drops them too), '..' refused (the tar crate would silently skip the entry).
fn normalize_entry_path(path: &Path) -> Result<PathBuf, String> {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => normalized.push(part),
            Component::ParentDir => {
                return Err(format!(
                    "'{}' contains '..', which would escape the extraction directory",
                    path.display()
                ));
            }
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
        }
    }
    Ok(normalized)
}

impl ExpectedContents {
    /// Compares `dir` with what the archive should have produced; every difference is listed,
    /// not only the first, so one run shows the whole picture.
    pub(crate) fn verify(&self, dir: &Path) -> Result<(), ExtractError> {
        let mut mismatches = Vec::new();
        for (path, want) in &self.files {
            let full = dir.join(path);
            match fs::read(&full) {
                Ok(got) if got == *want => {}
                Ok(got) => mismatches.push(format!(
                    "{}: expected {} bytes \"{}\", found {} bytes \"{}\"",
                    path.display(),
                    want.len(),
                    preview(want),
                    got.len(),
                    preview(&got)
                )),
                Err(e) => mismatches.push(format!("{}: {e}", path.display())),
            }
        }
        for path in &self.dirs {
            if !dir.join(path).is_dir() {
                mismatches.push(format!("{}/: expected a directory", path.display()));
            }
        }
        if mismatches.is_empty() {
            Ok(())
        } else {
            Err(ExtractError::Verify { mismatches })
        }
    }
}

/// The start of a file's content, escaped, for a one-line mismatch message.
fn preview(bytes: &[u8]) -> String {
    const LIMIT: usize = 32;
    let shown = &bytes[..bytes.len().min(LIMIT)];
    let mut text = shown.escape_ascii().to_string();
    if bytes.len() > LIMIT {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_archive_round_trips_through_extraction() {
        let bytes = build_archive(&default_entries()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(Cursor::new(&bytes))
            .unpack(dir.path())
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("b.txt")).unwrap(),
            "world"
        );

        let expected = expected_contents(&bytes, "default").unwrap();
        assert_eq!(expected.files.len(), 2);
        expected.verify(dir.path()).unwrap();
    }

    #[test]
    fn same_entries_give_the_same_bytes() {
        let first = build_archive(&default_entries()).unwrap();
        let second = build_archive(&default_entries()).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn file_specs_with_subdirectories_and_equals_in_content_parse() {
        let entry = parse_file_spec("dir/c.txt=x=1").unwrap();
        assert_eq!(entry, ArchiveEntry::new("dir/c.txt", "x=1"));
        let empty = parse_file_spec("empty.txt=").unwrap();
        assert_eq!(empty.content, "");

        let bytes = build_archive(&[entry, empty]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(Cursor::new(&bytes))
            .unpack(dir.path())
            .unwrap();
        expected_contents(&bytes, "specs")
            .unwrap()
            .verify(dir.path())
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("dir/c.txt")).unwrap(),
            "x=1"
        );
    }

    #[test]
    fn bad_file_specs_are_refused_with_the_reason() {
        let cases = [
            ("a.txt", "expected NAME=CONTENT"),
            ("=hello", "NAME is empty"),
            ("/etc/passwd=x", "absolute"),
            ("../up.txt=x", ".."),
            ("dir/../../up.txt=x", ".."),
            ("dir/=x", "ends with '/'"),
            ("./=x", "ends with '/'"),
            (".=x", "names no file"),
            (".leakscope-injected-fd=x", "reserved"),
        ];
        for (spec, reason) in cases {
            let err = parse_file_spec(spec).unwrap_err();
            assert!(
                matches!(err, ExtractError::InvalidFileSpec { .. }),
                "{spec}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(reason), "{spec}: {message}");
            assert!(message.contains(spec), "{spec}: {message}");
            assert_eq!(err.exit_status(), crate::exit_code::USAGE);
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let entries = [
            ArchiveEntry::new("a.txt", "1"),
            ArchiveEntry::new("./a.txt", "2"),
        ];
        let err = build_archive(&entries).unwrap_err();
        assert!(
            matches!(err, ExtractError::DuplicateEntry { ref name } if name == "./a.txt"),
            "{err:?}"
        );
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let garbage = vec![0x5a; 1024];
        let err = expected_contents(&garbage, "garbage").unwrap_err();
        assert!(
            matches!(err, ExtractError::InvalidArchive { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("garbage is not a usable tar archive")
        );

        let short = b"definitely not a tar file".to_vec();
        assert!(matches!(
            expected_contents(&short, "short"),
            Err(ExtractError::InvalidArchive { .. })
        ));

        assert!(matches!(
            expected_contents(&[], "empty"),
            Err(ExtractError::InvalidArchive { ref reason, .. }) if reason.contains("no entries")
        ));
    }

    #[test]
    fn a_truncated_archive_is_detected() {
        let content = "x".repeat(2000);
        let bytes = build_archive(&[ArchiveEntry::new("big.txt", content)]).unwrap();
        // Keep the header and part of the data only.
        let err = expected_contents(&bytes[..512 + 700], "cut").unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn reading_an_archive_file_validates_it() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.tar");
        fs::write(&good, build_archive(&default_entries()).unwrap()).unwrap();
        assert_eq!(
            read_archive_file(&good).unwrap(),
            build_archive(&default_entries()).unwrap()
        );

        let bad = dir.path().join("bad.tar");
        fs::write(&bad, vec![0x42; 600]).unwrap();
        let err = read_archive_file(&bad).unwrap_err();
        assert!(
            matches!(err, ExtractError::InvalidArchive { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("bad.tar"), "{err}");
        assert_eq!(err.exit_status(), crate::exit_code::FAILURE);

        let missing = dir.path().join("missing.tar");
        let err = read_archive_file(&missing).unwrap_err();
        assert!(matches!(err, ExtractError::ReadArchive { .. }), "{err:?}");

        let err = read_archive_file(dir.path()).unwrap_err();
        assert!(matches!(err, ExtractError::ReadArchive { .. }), "{err:?}");
    }

    #[test]
    fn verification_lists_every_mismatch() {
        let bytes = build_archive(&default_entries()).unwrap();
        let expected = expected_contents(&bytes, "default").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), "HELLO").unwrap();
        let err = expected.verify(dir.path()).unwrap_err();
        let ExtractError::Verify { mismatches } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(mismatches.len(), 2, "{mismatches:?}");
        assert!(mismatches[0].contains("expected 5 bytes \"hello\", found 5 bytes \"HELLO\""));
        assert!(mismatches[1].starts_with("b.txt: "));
    }
}
