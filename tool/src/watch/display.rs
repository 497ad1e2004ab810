//! Where the text blocks go: stderr. On a terminal the block redraws in place (cursor up
//! over the previous block, clear to the end of the screen); otherwise each block is
//! appended, so a log keeps every interval.

use std::io::{IsTerminal as _, Write as _};

#[derive(Debug)]
pub(crate) struct Display {
    in_place: bool,
    /// Lines of the block drawn last (redrawn over next time).
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
        let text = self.frame(lines);
        // A closed stderr must not stop tracing.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    /// The bytes to write for `lines`, given what was drawn before.
    fn frame(&mut self, lines: &[String]) -> String {
        let mut out = String::new();
        if self.in_place && self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A\r\x1b[J", self.drawn));
        }
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        self.drawn = lines.len();
        out
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
        assert_eq!(tty.frame(&block), "head\n  fd\n");
        assert_eq!(tty.frame(&block), "\x1b[2A\r\x1b[Jhead\n  fd\n");
        let mut log = Display {
            in_place: false,
            drawn: 0,
        };
        log.frame(&block);
        assert_eq!(log.frame(&block), "head\n  fd\n");
    }
}
