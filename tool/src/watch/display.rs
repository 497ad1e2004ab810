//! Where the text blocks go: stderr. On a terminal the block redraws in place (cursor up
//! over the previous block, clear to the end of the screen); otherwise each block is
//! appended, so a log keeps every interval.

use std::io::{IsTerminal as _, Write as _};

#[derive(Debug)]
pub(crate) struct Display {
    in_place: bool,
    /// Terminal rows of the block drawn last (redrawn over next time).
    drawn: usize,
}

impl Display {
    pub(crate) fn stderr() -> Self {
        Display {
            in_place: std::io::stderr().is_terminal(),
            drawn: 0,
        }
    }

    pub(crate) fn show(&mut self, lines: &[String]) {
        // Read at each draw: the terminal may have been resized.
        let columns = console::Term::stderr()
            .size_checked()
            .map_or(0, |(_, columns)| usize::from(columns));
        let text = self.frame(lines, columns);
        // A closed stderr must not stop tracing.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    /// The bytes to write for `lines`, given what was drawn before. `columns`: the
    /// terminal's width (0: unknown), so that a line the terminal wrapped is moved over
    /// as the rows it took.
    fn frame(&mut self, lines: &[String], columns: usize) -> String {
        let mut out = String::new();
        if self.in_place && self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A\r\x1b[J", self.drawn));
        }
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        self.drawn = lines.iter().map(|line| rows(line, columns)).sum();
        out
    }
}

/// Terminal rows `line` takes at `columns` wide.
fn rows(line: &str, columns: usize) -> usize {
    let width = console::measure_text_width(line);
    if columns == 0 || width == 0 {
        1
    } else {
        width.div_ceil(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_redraws_over_the_last_block_and_a_log_appends() {
        let block = ["head".to_string(), "  fd".to_string()];
        let mut tty = Display {
            in_place: true,
            drawn: 0,
        };
        assert_eq!(tty.frame(&block, 80), "head\n  fd\n");
        assert_eq!(tty.frame(&block, 80), "\x1b[2A\r\x1b[Jhead\n  fd\n");
        // A 10-column terminal wrapped the 12-character header into two rows.
        let long = ["leakscope 12".to_string(), "  fd".to_string()];
        tty.frame(&long, 10);
        assert!(tty.frame(&long, 10).starts_with("\x1b[3A"));
        let mut log = Display {
            in_place: false,
            drawn: 0,
        };
        log.frame(&block, 80);
        assert_eq!(log.frame(&block, 80), "head\n  fd\n");
    }
}
