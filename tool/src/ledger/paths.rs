//! Path resolution for open-family calls.
//!
//! Paths are resolved lexically (no filesystem access: the traced process's view of the
//! filesystem may differ from ours, and it may be gone by the time we look). That makes
//! `..` after a symlink imprecise, which is acceptable for naming sites and matching
//! `--iteration-path` substrings.

/// Joins `path` onto `base` (a directory) unless it is already absolute, then normalizes.
/// Without a base a relative path stays relative: an honest "we don't know where".
pub(crate) fn resolve(path: &str, base: Option<&str>) -> String {
    match base {
        Some(dir) if !path.starts_with('/') && !path.is_empty() => {
            normalize(&format!("{dir}/{path}"))
        }
        _ => normalize(path),
    }
}

/// Removes empty and `.` components and folds `..` into its parent where one is known.
pub(crate) fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    // Most paths are normal already: the reader normalizes every opened path.
    let inner = if absolute { &path[1..] } else { path };
    if !inner.is_empty()
        && inner
            .split('/')
            .all(|part| !matches!(part, "" | "." | ".."))
    {
        return path.to_owned();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `/..` is `/`; a relative path keeps its leading `..`.
                _ if absolute => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_ignore_the_base() {
        assert_eq!(resolve("/etc/passwd", Some("/home/u")), "/etc/passwd");
    }

    #[test]
    fn relative_paths_join_the_base() {
        assert_eq!(resolve("a.txt", Some("/tmp/x")), "/tmp/x/a.txt");
        assert_eq!(resolve("./sub/../b.txt", Some("/tmp/x/")), "/tmp/x/b.txt");
        assert_eq!(resolve("../../../..", Some("/tmp")), "/");
    }

    #[test]
    fn unknown_base_keeps_the_path_relative() {
        assert_eq!(resolve("./a//b.txt", None), "a/b.txt");
        assert_eq!(resolve("../a", None), "../a");
        assert_eq!(resolve(".", None), ".");
    }

    #[test]
    fn normal_paths_come_back_unchanged_and_others_are_cleaned() {
        for normal in ["/tmp/x/a.txt", "a/b", "/a", "..a/b.", ".hidden/x"] {
            assert_eq!(normalize(normal), normal);
        }
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("/tmp/"), "/tmp");
        assert_eq!(normalize("/tmp/./a"), "/tmp/a");
        assert_eq!(normalize("a/.."), ".");
        assert_eq!(normalize(""), ".");
    }
}
