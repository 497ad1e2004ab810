use std::io::Write;

use super::*;
use crate::stacks::frame::FrameKind;

fn module() -> Arc<str> {
    Arc::from("perf-7.map")
}

#[test]
fn a_line_is_start_size_and_the_rest_as_the_name() {
    assert_eq!(
        parse_line("7f43c37e4a80 378 JS:~leakyOpen /tmp/node leak.js:3:19"),
        Some(Entry {
            start: 0x7f43_c37e_4a80,
            size: 0x378,
            name: "JS:~leakyOpen /tmp/node leak.js:3:19".into(),
        })
    );
    assert_eq!(
        parse_line("0x1000 0x10 py::f:/a.py\r").map(|e| (e.start, e.size, e.name)),
        Some((0x1000, 0x10, "py::f:/a.py".into()))
    );
    for junk in ["", "7f00", "7f00 10", "zz 10 f", "7f00 zz f"] {
        assert_eq!(parse_line(junk), None, "{junk:?}");
    }
}

#[test]
fn entries_in_any_order_name_the_addresses_they_cover() {
    let mut entries = Entries::default();
    entries.add_lines(
        "3000 100 JS:^third /a.js:3:1\n\
         1000 100 JS:~first /a.js:1:1\n\
         2000 0 JS:~empty /a.js:9:1\n\
         not a line\n\
         2000 80 JS:*second /a.js:2:1\n",
        &module(),
    );
    assert_eq!(entries.len(), 3);
    let name = |addr| entries.find(addr).map(|f| f.function.to_string());
    assert_eq!(name(0x1000).as_deref(), Some("first"));
    assert_eq!(name(0x10ff).as_deref(), Some("first"));
    assert_eq!(name(0x1100), None);
    assert_eq!(name(0x2040).as_deref(), Some("second"));
    assert_eq!(name(0x2080), None);
    assert_eq!(name(0x3000).as_deref(), Some("third"));
    assert_eq!(name(0xfff), None);
    assert_eq!(name(u64::MAX), None);
}

#[test]
fn a_size_zero_entry_names_nothing() {
    let mut entries = Entries::default();
    entries.add_lines("1000 0 JS:~empty /a.js:9:1\n", &module());
    assert_eq!(entries.len(), 0);
    assert!(entries.find(0x1000).is_none());
}

#[test]
fn code_logged_again_at_the_same_place_takes_the_later_name() {
    let mut entries = Entries::default();
    entries.add_lines("1000 100 JS:~old /a.js:1:1\n", &module());
    entries.add_lines("1000 80 JS:~new /a.js:2:1\n", &module());
    assert_eq!(&*entries.find(0x1010).unwrap().function, "new");
    // A short entry inside a longer one does not hide the longer one past its end.
    entries.add_lines("1020 10 JS:~inner /a.js:3:1\n", &module());
    assert_eq!(&*entries.find(0x1024).unwrap().function, "inner");
    assert_eq!(&*entries.find(0x1040).unwrap().function, "new");
}

#[test]
fn a_map_is_read_on_as_it_grows_whole_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perf-4242.map");
    let mut file = std::fs::File::create(&path).unwrap();
    write!(file, "1000 100 JS:~first /a.js:1:1\n2000 100 JS:~sec").unwrap();
    let mut map = PerfMap::open(&path, None).unwrap();
    assert_eq!(map.module(), "perf-4242.map");
    let first = map.find(0x1010).unwrap();
    assert_eq!(&*first.function, "first");
    assert_eq!(&*first.module, "perf-4242.map");
    assert_eq!(first.kind, FrameKind::User);
    // The second line is not whole yet.
    assert_eq!(map.find(0x2010), None);
    write!(
        file,
        "ond /a.js:2:1\n3000 10 Builtin:ArrayBufferConstructor\n"
    )
    .unwrap();
    assert_eq!(&*map.find(0x2010).unwrap().function, "second");
    let builtin = map.find(0x3001).unwrap();
    assert_eq!(builtin.kind, FrameKind::Runtime);
    assert_eq!(map.find(0x5000), None);
    // Written anew (a new program in the same process): read from the start.
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "5000 10 JS:~after /b.js:1:1").unwrap();
    assert_eq!(&*map.find(0x5001).unwrap().function, "after");
    assert_eq!(map.find(0x1010), None);
}

#[test]
fn a_symbolic_link_or_a_directory_is_no_map() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "1000 100 JS:~f /a.js:1:1\n").unwrap();
    let link = dir.path().join("perf-1.map");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(PerfMap::open(&link, None).is_none());
    assert!(PerfMap::open(dir.path(), None).is_none());
    assert!(PerfMap::open(&dir.path().join("perf-2.map"), None).is_none());
}

/// Written by the process's user or by root, never by a third user (a map planted in /tmp
/// for a pid another user's process will have).
#[test]
fn a_map_of_another_user_is_not_read() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perf-3.map");
    std::fs::write(&path, "1000 100 JS:~f /a.js:1:1\n").unwrap();
    // As root (the integration tests' user), the map is given to a user of its own.
    if std::fs::metadata(&path).unwrap().uid() == 0 {
        std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
        assert!(PerfMap::open(&path, Some(4242)).is_some());
        assert!(PerfMap::open(&path, Some(4243)).is_none());
        assert!(PerfMap::open(&path, Some(0)).is_none());
        // A process whose user is unknown (gone): read.
        assert!(PerfMap::open(&path, None).is_some());
    }
    let owner = std::fs::metadata(&path).unwrap().uid();
    assert!(PerfMap::open(&path, Some(owner)).is_some());
}
