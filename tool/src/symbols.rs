//! Checks an `--iteration-symbol` before attaching, so a typo gets "did you mean" instead
//! of a bare attach error.

use std::path::Path;

use object::{Object, ObjectSymbol, SymbolKind};
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum SymbolError {
    #[error("cannot read {binary}: {reason}")]
    Unreadable { binary: String, reason: String },
    #[error("{binary} has no function `{symbol}`{}", suggestions(.near))]
    NotFound {
        binary: String,
        symbol: String,
        near: Vec<String>,
    },
}

impl SymbolError {
    /// A symbol that cannot be checked or found is the user's argument.
    pub(crate) fn exit_status(&self) -> u8 {
        crate::exit_code::USAGE
    }
}

fn suggestions(near: &[String]) -> String {
    if near.is_empty() {
        "; is it stripped, or the symbol in a shared library? (use BINARY:SYMBOL)".into()
    } else {
        format!("; near matches: {}", near.join(", "))
    }
}

/// Succeeds when `binary` defines function `symbol` (in .symtab or .dynsym).
pub(crate) fn check_function(binary: &Path, symbol: &str) -> Result<(), SymbolError> {
    let unreadable = |reason: String| SymbolError::Unreadable {
        binary: binary.display().to_string(),
        reason,
    };
    let data = std::fs::read(binary).map_err(|e| unreadable(e.to_string()))?;
    let file = object::File::parse(&*data).map_err(|e| unreadable(e.to_string()))?;
    let names: Vec<String> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    if names.iter().any(|name| name == symbol) {
        return Ok(());
    }
    Err(SymbolError::NotFound {
        binary: binary.display().to_string(),
        symbol: symbol.into(),
        near: near_matches(symbol, &names),
    })
}

/// Up to five names that contain the request or are a few edits away from it.
fn near_matches(symbol: &str, names: &[String]) -> Vec<String> {
    let wanted = symbol.to_lowercase();
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let distance = strsim::levenshtein(&wanted, &lower);
            if lower.contains(&wanted) {
                Some((0, name))
            } else if distance <= wanted.len().div_ceil(3) {
                Some((distance, name))
            } else {
                None
            }
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.len().cmp(&b.1.len())));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(5)
        .map(|(_, name)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_matches_prefer_containment_then_distance() {
        let names: Vec<String> = [
            "process_request",
            "process_requests_loop",
            "main",
            "proces_request",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let near = near_matches("process_request", &names);
        assert_eq!(near[0], "process_request");
        assert!(near.contains(&"proces_request".to_string()));
        assert!(!near.contains(&"main".to_string()));
    }

    #[test]
    fn finds_libc_function_and_suggests_for_typo() {
        let libc = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("libc");
        check_function(libc, "malloc").unwrap();
        let err = check_function(libc, "mallocc").unwrap_err().to_string();
        assert!(
            err.contains("near matches") && err.contains("malloc"),
            "{err}"
        );
    }
}
