//! `--html` and `--svg` in a real browser (written below).
