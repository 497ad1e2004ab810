//! Completion scripts and man pages, generated from the clap definition the parser uses,
//! so they never disagree with it. Neither needs privilege nor a kernel.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory as _;

use crate::cli::Cli;

/// The commands with a page of their own (`leakscope-run.1`, ...), besides `leakscope.1`.
const PAGED_COMMANDS: &[(&str, &str, &str)] = &[
    ("run", "leakscope-run", "leakscope run"),
    ("attach", "leakscope-attach", "leakscope attach"),
    ("extract", "leakscope-extract", "leakscope extract"),
    (
        "completions",
        "leakscope-completions",
        "leakscope completions",
    ),
];

/// Writes `shell`'s completion script for leakscope to `out`.
pub(crate) fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "leakscope", out);
}

/// Writes `leakscope.1` and a page per command into `dir` (created if missing); returns
/// the files written.
pub(crate) fn man_pages(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let command = Cli::command();
    let mut written = Vec::new();
    // The page's name (`leakscope-run`), and the command as typed in its synopsis.
    let mut page = |name: &'static str, typed: &'static str, command: clap::Command| {
        let path = dir.join(format!("{name}.1"));
        let mut roff = Vec::new();
        clap_mangen::Man::new(command.name(name).bin_name(typed)).render(&mut roff)?;
        std::fs::write(&path, roff)?;
        written.push(path);
        Ok::<(), std::io::Error>(())
    };
    for &(sub, name, typed) in PAGED_COMMANDS {
        let sub_command = command
            .find_subcommand(sub)
            .expect("every paged command exists")
            .clone();
        page(name, typed, sub_command)?;
    }
    page("leakscope", "leakscope", command)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_that_knows_the_commands_and_options() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::Elvish,
            clap_complete::Shell::PowerShell,
        ] {
            let mut script = Vec::new();
            completions(shell, &mut script);
            let script = String::from_utf8(script).unwrap();
            // Fish names a long option without its dashes (`-l heap`).
            for word in ["attach", "extract", "iteration-symbol", "stack-rate"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }

    #[test]
    fn man_pages_are_written_for_the_tool_and_each_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = man_pages(dir.path()).unwrap();
        assert_eq!(written.len(), PAGED_COMMANDS.len() + 1);
        let main = std::fs::read_to_string(dir.path().join("leakscope.1")).unwrap();
        assert!(
            main.starts_with(".ie") || main.contains(".TH leakscope"),
            "{main}"
        );
        let run = std::fs::read_to_string(dir.path().join("leakscope-run.1")).unwrap();
        assert!(run.contains("iteration\\-symbol"), "{run}");
    }
}
