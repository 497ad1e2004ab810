//! Grouping of filesystem names into patterns, so one loop that creates a new uniquely
//! named entry per iteration is one site, not one site per iteration.
//!
//! Every path component is grouped the same way (a random directory like `/tmp/tmp8d2k1/`
//! groups too): runs of digits become `N` (`data-0001.txt` -> `data-N.txt`), and a token
//! that looks random (letters and digits interleaved, or irregular letter case, as
//! mkstemp's `XXXXXX` produces) becomes as many `X`. Python's tempfile names (`tmp` and 8
//! characters of `[a-z0-9_]`) are recognized whole, since their alphabet includes the `_`
//! that otherwise separates tokens.
//!
//! A pattern is a name for a site, never an input to a verdict: a rare random token that
//! happens to look like a word only splits off a small site of its own.

/// The pattern of `path`: each component grouped, separators kept.
pub(crate) fn pattern(path: &str) -> String {
    path.split('/').map(component).collect::<Vec<_>>().join("/")
}

/// Python's `tempfile` random part: 8 characters of lowercase letters, digits and `_`.
const PYTHON_RANDOM_LEN: usize = 8;

fn python_random(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'
}

/// One path component.
fn component(name: &str) -> String {
        // `tmp` + 8 random characters, then the end or a suffix that starts elsewhere
    // (`tmpab3x_9k`, `tmpab3x_9k.json`). A shorter run (examples and older Pythons) counts
    // when it has a digit or `_`, which a plain word after `tmp` rarely has.
    if let Some(rest) = name.strip_prefix("tmp") {
        let run = rest.bytes().take_while(|&c| python_random(c)).count();
        let random = &rest[..run];
        let marked = random.bytes().any(|c| c.is_ascii_digit() || c == b'_');
        if run == PYTHON_RANDOM_LEN || ((6..PYTHON_RANDOM_LEN).contains(&run) && marked) {
            return format!("tmp{}{}", "X".repeat(PYTHON_RANDOM_LEN), tokens(&rest[run..]));
        }
    }
    tokens(name)
}

/// Groups each alphanumeric run of `text`, keeping everything between runs.
fn tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            token.push(c);
        } else {
            out.push_str(&token_pattern(&token));
            token.clear();
            out.push(c);
        }
    }
    out.push_str(&token_pattern(&token));
    out
}

/// A run of ASCII letters and digits: digits become `N`, a word followed by a number keeps
/// its word (`file12` -> `fileN`), anything random-looking becomes `X`s.
fn token_pattern(token: &str) -> String {
    if token.is_empty() {
        return String::new();
    }
    let digits = token.bytes().filter(u8::is_ascii_digit).count();
    if digits == token.len() {
        return "N".to_string();
    }
    if digits == 0 {
        return if irregular_case(token) {
            "X".repeat(token.len())
        } else {
            token.to_string()
        };
    }
    // Letters then digits: a word and a counter, when the word reads as one.
    let word_len = token.bytes().take_while(u8::is_ascii_alphabetic).count();
    let word = &token[..word_len];
    let counter_follows = token[word_len..].bytes().all(|c| c.is_ascii_digit());
    if counter_follows && word_len >= 1 && !irregular_case(word) {
        return format!("{word}N");
    }
    "X".repeat(token.len())
}

/// Letter case no word has: an uppercase letter after a lowercase one, or after the
/// first character with lowercase letters around (`XaBcDe`, `aBCdef`; not `Makefile`,
/// `README`, `data`).
fn irregular_case(word: &str) -> bool {
    let lower = word.bytes().any(|c| c.is_ascii_lowercase());
    let upper_after_first = word.bytes().skip(1).any(|c| c.is_ascii_uppercase());
    lower && upper_after_first && word.len() >= 4
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn mkstemp_suffixes_group() {
        assert_eq!(pattern("/tmp/app-Xa81Zq.tmp"), "/tmp/app-XXXXXX.tmp");
        assert_eq!(pattern("/tmp/app-k2P0dd.tmp"), "/tmp/app-XXXXXX.tmp");
        assert_eq!(pattern("/tmp/app-AbCdEf.tmp"), "/tmp/app-XXXXXX.tmp");
        assert_eq!(pattern("/tmp/appQz8k1P"), "/tmp/XXXXXXXXX");
        assert_eq!(pattern("/tmp/appQzzkaP"), "/tmp/XXXXXXXXX");
    }

    #[test]
    fn python_tempfile_names_group() {
        assert_eq!(pattern("/tmp/tmpab3x_9k"), "/tmp/tmpXXXXXXXX");
        assert_eq!(pattern("/tmp/tmp_k2abcde"), "/tmp/tmpXXXXXXXX");
        assert_eq!(pattern("/tmp/tmpk2abcdeq"), "/tmp/tmpXXXXXXXX");
        assert_eq!(pattern("/tmp/tmpqwertyui"), "/tmp/tmpXXXXXXXX");
        assert_eq!(pattern("/tmp/tmpab3x_9k.json"), "/tmp/tmpXXXXXXXX.json");
        // Not 8 random characters: a plain name.
        assert_eq!(pattern("/tmp/tmpfiles"), "/tmp/tmpfiles");
    }

    #[test]
    fn counters_and_dates_group() {
        assert_eq!(pattern("/data/data-0001.txt"), "/data/data-N.txt");
        assert_eq!(pattern("/data/data-0002.txt"), "/data/data-N.txt");
        assert_eq!(
            pattern("/var/log/app-2024-01-15.log"),
            "/var/log/app-N-N-N.log"
        );
        assert_eq!(pattern("/tmp/job12/out"), "/tmp/jobN/out");
        assert_eq!(pattern("/tmp/job7/out"), "/tmp/jobN/out");
    }

    #[test]
    fn plain_names_stay() {
        for plain in [
            "/etc/passwd",
            "/home/u/Makefile",
            "/srv/README.md",
            "out/archive.tar.gz",
            "/",
            ".",
        ] {
            assert_eq!(pattern(plain), plain);
        }
    }

    #[test]
    fn random_directories_group_too() {
        assert_eq!(pattern("/tmp/tmp8d2k1/f.txt"), "/tmp/XXXXXXXX/f.txt");
        assert_eq!(pattern("/tmp/tmp3a9z0/f.txt"), "/tmp/XXXXXXXX/f.txt");
        assert_eq!(pattern("/tmp/tmpab3x_9k/part-3"), "/tmp/tmpXXXXXXXX/part-N");
    }
}
