//! `leakscope completions SHELL` and the man pages: each script is accepted by its own
//! shell's parser, and each page renders with `man -l`. (`cargo xtask test` installs zsh,
//! fish and man-db when they are missing.)

use std::process::{Command, Output};

use leakscope_tests::leakscope;
use rstest::rstest;

fn run(command: &mut Command) -> Output {
    command.output().expect("cannot run the command")
}

#[rstest]
#[case::bash("bash", &["-n"])]
#[case::zsh("zsh", &["-n"])]
#[case::fish("fish", &["--no-execute"])]
fn the_completion_script_parses_in_its_shell(#[case] shell: &str, #[case] check: &[&str]) {
    let generated = run(Command::new(leakscope()).args(["completions", shell]));
    assert!(generated.status.success(), "{generated:?}");
    let script = String::from_utf8(generated.stdout).unwrap();
    for word in ["attach", "extract", "iteration-symbol", "heap"] {
        assert!(script.contains(word), "{shell}: no {word} in\n{script}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("leakscope.{shell}"));
    std::fs::write(&path, &script).unwrap();
    let parsed = run(Command::new(shell).args(check).arg(&path));
    assert!(
        parsed.status.success(),
        "{shell} rejects the script: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
}

#[test]
fn an_unknown_shell_is_bad_usage() {
    let output = run(Command::new(leakscope()).args(["completions", "tcsh"]));
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bash"), "the choices are listed: {stderr}");
}

#[rstest]
#[case::main("leakscope", "leakscope run")]
#[case::run("leakscope-run", "--iteration-symbol")]
#[case::attach("leakscope-attach", "--pid")]
#[case::extract("leakscope-extract", "--inject-leak")]
fn each_man_page_renders(#[case] page: &str, #[case] expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let written = run(Command::new(leakscope()).arg("man").arg(dir.path()));
    assert!(written.status.success(), "{written:?}");
    let path = dir.path().join(format!("{page}.1"));
    let rendered = run(Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(&path)
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C"));
    assert!(rendered.status.success(), "{rendered:?}");
    let text = String::from_utf8_lossy(&rendered.stdout);
    for section in ["NAME", "SYNOPSIS", "OPTIONS"] {
        assert!(text.contains(section), "{page}: no {section} in\n{text}");
    }
    // man hyphenates and may break lines: compare without those.
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(expected),
        "{page}: no `{expected}` in\n{text}"
    );
}
