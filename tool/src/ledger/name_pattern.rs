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

use std::collections::HashMap;
use std::sync::Arc;

/// Patterns as a run hands them out: names of one shape (the same separators and token
/// lengths) share the pattern of the most random-looking of them, so the rare mkstemp
/// suffix that reads like a word (`abcdef`) joins the loop's `XXXXXX` site instead of
/// splitting off. Names of one shape without random parts stay apart
/// (`alpha.txt`, `gamma.txt`). When the first names of a shape all read like words
/// (`job-FSVN12` from Node's mkdtemp), the pattern they got is superseded by the first
/// random-looking one: see [`Grouping::take_superseded`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Grouping {
    by_shape: HashMap<String, Arc<str>>,
    /// Patterns handed out to names whose random part was all digits (`leak-123456`, read
    /// as a counter: `leak-N`), by the random shape they would have (`leak-#6`).
    all_digits: HashMap<String, Arc<str>>,
    superseded: Vec<Superseded>,
}

/// A pattern handed out for names of one shape, replaced by a more random-looking one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Superseded {
    pub(crate) old: Arc<str>,
    pub(crate) new: Arc<str>,
    shape: String,
}

impl Superseded {
    /// Whether `path`, which has pattern `old`, is of the shape that was regrouped (a name
    /// of another shape may share the old pattern: `job-ABCD5` and `job-ABCD10`).
    pub(crate) fn covers(&self, path: &str) -> bool {
        shape(path) == self.shape || random_shape(path) == self.shape
    }
}

impl Grouping {
    /// Patterns superseded since the last call: names already given `old` should move to
    /// `new` so the loop that made them is one site.
    pub(crate) fn take_superseded(&mut self) -> Vec<Superseded> {
        std::mem::take(&mut self.superseded)
    }

    pub(crate) fn pattern(&mut self, path: &str) -> Arc<str> {
        let mine = pattern(path);
        // Judged on the name alone: a random directory above (a test's `/tmp/.tmpAb12Cd/`)
        // makes every pattern under it random-looking, whatever the name.
        let randomness = |p: &str| {
            let name = p.rsplit('/').next().unwrap_or(p);
            name.bytes().filter(|&c| c == b'X').count()
        };
        // A random part that came out all digits (mkstemp's `123456`, 1 name in ~55,000)
        // reads as a counter: it joins the random site of its length when there is one.
        let digits_shape = random_shape(path);
        if randomness(&mine) == 0 && digits_shape != shape(path) {
            match self.by_shape.get(&digits_shape) {
                Some(known) if randomness(known) > 0 => return known.clone(),
                _ => {
                    let mine: Arc<str> = Arc::from(mine.as_str());
                    self.all_digits.insert(digits_shape, mine);
                }
            }
        }
        match self.by_shape.get(&shape(path)) {
            Some(known) if known.as_ref() == mine => known.clone(),
            Some(known) if randomness(known) >= randomness(&mine) && randomness(known) > 0 => {
                known.clone()
            }
            Some(_) if randomness(&mine) == 0 => Arc::from(mine),
            _ => {
                let mine: Arc<str> = Arc::from(mine);
                let shape = shape(path);
                if randomness(&mine) > 0
                    && let Some(old) = self.all_digits.remove(&shape)
                {
                    self.superseded.push(Superseded {
                        old,
                        new: mine.clone(),
                        shape: shape.clone(),
                    });
                }
                if let Some(old) = self.by_shape.insert(shape.clone(), mine.clone()) {
                    self.superseded.push(Superseded {
                        old,
                        new: mine.clone(),
                        shape,
                    });
                }
                mine
            }
        }
    }
}

/// The shape of `path`: digits as `N`, every other token of 5 or more characters as its
/// length, shorter tokens as their pattern.
fn shape(path: &str) -> String {
    shape_of(path, false)
}

/// The shape `path` has if its runs of 5 or more digits are random parts, not counters.
fn random_shape(path: &str) -> String {
    shape_of(path, true)
}

fn shape_of(path: &str, long_digits_random: bool) -> String {
    path.split('/')
        .map(|name| {
            if python_name(name).is_some() {
                return component(name);
            }
            let mut out = String::new();
            for_words(name, &mut out, |word, out| {
                // Any word Python's alphabet could have made has the random shape, so a
                // random part that happens to read as snake_case (`abc_defg`) joins the
                // loop's site; alone, such a name keeps its own pattern.
                if python_shaped(word) {
                    out.push_str(&format!("#{}", word.len()));
                    return;
                }
                for token in split_tokens(word) {
                    match token {
                        Ok(token)
                            if token.bytes().all(|c| c.is_ascii_digit())
                                && !(long_digits_random && token.len() >= 5) =>
                        {
                            out.push('N');
                        }
                        Ok(token) if token.len() >= 5 => out.push_str(&format!("#{}", token.len())),
                        Ok(token) => out.push_str(&token_pattern(token)),
                        Err(separator) => out.push(separator),
                    }
                }
            });
            out
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `name`'s alphanumeric runs (`Ok`) and the characters between them (`Err`).
fn split_tokens(name: &str) -> Vec<Result<&str, char>> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in name.char_indices() {
        if !c.is_ascii_alphanumeric() {
            if start < i {
                parts.push(Ok(&name[start..i]));
            }
            parts.push(Err(c));
            start = i + c.len_utf8();
        }
    }
    if start < name.len() {
        parts.push(Ok(&name[start..]));
    }
    parts
}

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
    match python_name(name) {
        Some(rest) => format!("tmp{}{}", "X".repeat(PYTHON_RANDOM_LEN), tokens(rest)),
        None => {
            let mut out = String::with_capacity(name.len());
            for_words(name, &mut out, |word, out| {
                if python_random_word(word) {
                    out.push_str(&"X".repeat(word.len()));
                } else {
                    out.push_str(&tokens(word));
                }
            });
            out
        }
    }
}

/// Calls `word` on each run of `[A-Za-z0-9_]` of `name` and copies the characters between
/// runs to `out`. Python's random part may hold `_`, which the token rules split on, so
/// it must be seen whole first (`leak-ab_3kd9x.txt` with `prefix="leak-"`).
fn for_words(name: &str, out: &mut String, mut word: impl FnMut(&str, &mut String)) {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut start = None;
    for (i, c) in name.char_indices() {
        match (is_word(c), start) {
            (true, None) => start = Some(i),
            (false, Some(from)) => {
                word(&name[from..i], out);
                start = None;
                out.push(c);
            }
            (false, None) => out.push(c),
            (true, Some(_)) => {}
        }
    }
    if let Some(from) = start {
        word(&name[from..], out);
    }
}

/// A whole word that is Python's 8 random characters of `[a-z0-9_]` after a prefix of the
/// caller's (`NamedTemporaryFile(prefix="leak-")`): it must carry a digit or `_` (an
/// 8-letter word rarely does), and not be a plain number (a counter, grouped as `N`).
/// snake_case words (`app_conf`: every part 3 letters or more) are left to the token rules.
fn python_random_word(word: &str) -> bool {
    let snake_case = word
        .split('_')
        .all(|part| part.len() >= 3 && part.bytes().all(|c| c.is_ascii_lowercase()));
    python_shaped(word) && !snake_case
}

/// 8 characters of Python's alphabet with a digit or `_`, not a plain number.
fn python_shaped(word: &str) -> bool {
    word.len() == PYTHON_RANDOM_LEN
        && word.bytes().all(python_random)
        && word.bytes().any(|c| c.is_ascii_digit() || c == b'_')
        && !word.bytes().all(|c| c.is_ascii_digit())
}

/// Python's `tmp` + 8 random characters, then the end or a suffix that starts elsewhere
/// (`tmpab3x_9k`, `tmpab3x_9k.json`): the suffix. A run of 7 counts when it has a digit or
/// `_`, which a plain word after `tmp` rarely has; 6 is C's mkdtemp (`tmpXXXXXX`), whose
/// alphabet has uppercase too: left to the token rules.
fn python_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("tmp")?;
    let run = rest.bytes().take_while(|&c| python_random(c)).count();
    let marked = rest[..run].bytes().any(|c| c.is_ascii_digit() || c == b'_');
    (run == PYTHON_RANDOM_LEN || (run == PYTHON_RANDOM_LEN - 1 && marked)).then(|| &rest[run..])
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
    if counter_follows && !irregular_case(word) {
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
    use super::{Grouping, pattern};

    #[test]
    fn a_word_like_first_name_is_superseded_by_the_first_random_one() {
        let mut grouping = Grouping::default();
        assert_eq!(&*grouping.pattern("/w/job-FSVN12"), "/w/job-FSVNN");
        assert!(grouping.take_superseded().is_empty());
        assert_eq!(&*grouping.pattern("/w/job-aQ3xZk"), "/w/job-XXXXXX");
        let superseded = grouping.take_superseded();
        assert_eq!(superseded.len(), 1);
        assert_eq!(&*superseded[0].old, "/w/job-FSVNN");
        assert_eq!(&*superseded[0].new, "/w/job-XXXXXX");
        assert!(superseded[0].covers("/w/job-FSVN12"));
        assert!(!superseded[0].covers("/w/job-FSVN1"), "another shape");
        assert!(grouping.take_superseded().is_empty(), "taken once");
    }

    #[test]
    fn under_a_random_directory_names_are_grouped_as_anywhere_else() {
        let mut grouping = Grouping::default();
        let dir = "/tmp/.tmpAb12Cd";
        let mut group = |name: &str| grouping.pattern(&format!("{dir}/{name}")).to_string();
        assert_eq!(group("leak-Xa81Zq"), "/tmp/.XXXXXXXXX/leak-XXXXXX");
        assert_eq!(group("leak-123456"), "/tmp/.XXXXXXXXX/leak-XXXXXX");
        assert_eq!(group("alpha.txt"), "/tmp/.XXXXXXXXX/alpha.txt");
        assert_eq!(group("gamma.txt"), "/tmp/.XXXXXXXXX/gamma.txt");
    }

    #[test]
    fn an_all_digit_random_suffix_joins_the_random_site() {
        let mut after = Grouping::default();
        assert_eq!(&*after.pattern("/t/leak-Xa81Zq"), "/t/leak-XXXXXX");
        assert_eq!(&*after.pattern("/t/leak-123456"), "/t/leak-XXXXXX");
        assert_eq!(
            &*after.pattern("/t/leak-7"),
            "/t/leak-N",
            "a short counter stays"
        );
        let mut before = Grouping::default();
        assert_eq!(&*before.pattern("/t/leak-123456"), "/t/leak-N");
        assert_eq!(&*before.pattern("/t/leak-Xa81Zq"), "/t/leak-XXXXXX");
        let superseded = before.take_superseded();
        assert_eq!(superseded.len(), 1, "{superseded:?}");
        assert_eq!(&*superseded[0].old, "/t/leak-N");
        assert!(superseded[0].covers("/t/leak-123456"));
        assert!(!superseded[0].covers("/t/leak-7"));
    }

    #[test]
    fn word_like_random_suffixes_join_the_random_ones() {
        let mut grouping = Grouping::default();
        let group = |g: &mut Grouping, p: &str| g.pattern(p).to_string();
        assert_eq!(
            group(&mut grouping, "/tmp/app-abcdef.tmp"),
            "/tmp/app-abcdef.tmp"
        );
        assert_eq!(
            group(&mut grouping, "/tmp/app-Xa81Zq.tmp"),
            "/tmp/app-XXXXXX.tmp"
        );
        assert_eq!(
            group(&mut grouping, "/tmp/app-qwerty.tmp"),
            "/tmp/app-XXXXXX.tmp"
        );
        assert_eq!(
            group(&mut grouping, "/tmp/app-abc123.tmp"),
            "/tmp/app-XXXXXX.tmp"
        );
        assert_eq!(group(&mut grouping, "/srv/alpha.txt"), "/srv/alpha.txt");
        assert_eq!(group(&mut grouping, "/srv/gamma.txt"), "/srv/gamma.txt");
    }

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
        // With a prefix of the caller's, the random part is still seen whole.
        assert_eq!(pattern("/tmp/x/leak-ab_3kd9x"), "/tmp/x/leak-XXXXXXXX");
        assert_eq!(
            pattern("/tmp/x/leak-_k2abcde.txt"),
            "/tmp/x/leak-XXXXXXXX.txt"
        );
        assert_eq!(pattern("/tmp/x/leak-k2abcd_9"), "/tmp/x/leak-XXXXXXXX");
        // An eight-digit counter stays a counter; a snake_case name stays itself.
        assert_eq!(pattern("/tmp/x/leak-00001234"), "/tmp/x/leak-N");
        assert_eq!(pattern("/srv/app_conf.toml"), "/srv/app_conf.toml");
        // Not 8 random characters: a plain name.
        assert_eq!(pattern("/tmp/tmpfiles"), "/tmp/tmpfiles");
    }

    #[test]
    fn python_names_with_a_prefix_are_one_site_whatever_their_letters() {
        let mut grouping = Grouping::default();
        let first = grouping.pattern("/tmp/x/leak-ab_3kd9x").to_string();
        for name in [
            "leak-qwertyui",
            "leak-k_abcdef",
            "leak-1_abcdef",
            "leak-abcdef_1",
        ] {
            assert_eq!(
                grouping.pattern(&format!("/tmp/x/{name}")).as_ref(),
                first,
                "{name}"
            );
        }
        assert_eq!(first, "/tmp/x/leak-XXXXXXXX");
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
