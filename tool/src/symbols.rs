//! Checks an `--iteration-symbol` before attaching, so a typo gets "did you mean" instead
//! of a bare attach error, and finds the symbol a C++ or Rust function's plain name stands
//! for (`handle_request` for `_Z14handle_requesti`, `server::handle` for
//! `_ZN6server6handle17h0123456789abcdefE`).

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
    #[error("`{symbol}` names {} functions in {binary}: {}; pass one of their symbols", .matches.len(), listed(.matches))]
    Ambiguous {
        binary: String,
        symbol: String,
        /// (demangled, symbol) of each.
        matches: Vec<(String, String)>,
    },
}

fn listed(matches: &[(String, String)]) -> String {
    matches
        .iter()
        .map(|(demangled, symbol)| format!("{demangled} ({symbol})"))
        .collect::<Vec<_>>()
        .join(", ")
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

/// The symbol to attach to for function `symbol` of `binary` (in .symtab or .dynsym):
/// `symbol` itself when defined, else the one C++ or Rust function whose demangled name is
/// `symbol` or ends in `::symbol` (with or without its parameters, for C++).
pub(crate) fn resolve_function(binary: &Path, symbol: &str) -> Result<String, SymbolError> {
    let unreadable = |reason: String| SymbolError::Unreadable {
        binary: binary.display().to_string(),
        reason,
    };
    let data = std::fs::read(binary).map_err(|e| unreadable(e.to_string()))?;
    let file = object::File::parse(&*data).map_err(|e| unreadable(e.to_string()))?;
    let mut names: Vec<String> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    if names.iter().any(|name| name == symbol) {
        return Ok(symbol.to_string());
    }
    names.sort_unstable();
    names.dedup();
    let mut matches: Vec<(String, String)> = names
        .iter()
        .filter_map(|name| demangled_match(name, symbol).map(|d| (d, name.clone())))
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0).1),
        0 => Err(SymbolError::NotFound {
            binary: binary.display().to_string(),
            symbol: symbol.into(),
            near: near_matches(symbol, &names),
        }),
        _ => Err(SymbolError::Ambiguous {
            binary: binary.display().to_string(),
            symbol: symbol.into(),
            matches,
        }),
    }
}

/// The demangled name of `mangled` when it is the function `wanted` names: the whole name,
/// or its last `::` parts, with or without a C++ function's parameters. Compiler clones
/// (`.cold`, `.isra.0`) are not functions of their own.
fn demangled_match(mangled: &str, wanted: &str) -> Option<String> {
    if mangled.contains('.') {
        return None;
    }
    let names_it = |name: &str| name == wanted || name.ends_with(&format!("::{wanted}"));
    if let Ok(rust) = rustc_demangle::try_demangle(mangled) {
        let path = format!("{rust:#}");
        return names_it(&path).then_some(path);
    }
    let cpp = cpp_demangle::Symbol::new(mangled).ok()?;
    let full = cpp.demangle().ok()?;
    let bare = cpp
        .demangle_with_options(&cpp_demangle::DemangleOptions::new().no_params())
        .ok()?;
    (names_it(&bare) || names_it(&full)).then_some(full)
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
        assert_eq!(resolve_function(libc, "malloc").unwrap(), "malloc");
        let err = resolve_function(libc, "mallocc").unwrap_err().to_string();
        assert!(
            err.contains("near matches") && err.contains("malloc"),
            "{err}"
        );
    }

    #[test]
    fn cpp_functions_match_by_their_demangled_names() {
        let m = |mangled: &str, wanted: &str| demangled_match(mangled, wanted);
        assert_eq!(
            m("_Z14handle_requesti", "handle_request").as_deref(),
            Some("handle_request(int)")
        );
        assert!(m("_Z14handle_requesti", "handle_request(int)").is_some());
        assert!(m("_ZN6server7Handler6handleEv", "Handler::handle").is_some());
        assert!(m("_ZN6server7Handler6handleEv", "handle").is_some());
        assert!(m("_ZN6server7Handler6handleEv", "dle").is_none());
        // A compiler's clone is not a function of its own.
        assert!(m("_Z14handle_requesti.cold", "handle_request").is_none());
    }

    /// Rust: the path without its hash, or its last parts.
    #[test]
    fn rust_functions_match_by_their_paths() {
        let me = std::env::current_exe().unwrap();
        let symbol = resolve_function(&me, "symbols::tests::a_function_to_find").unwrap();
        assert_ne!(symbol, "symbols::tests::a_function_to_find");
        assert_eq!(
            demangled_match(&symbol, "a_function_to_find").as_deref(),
            Some("leakscope::symbols::tests::a_function_to_find")
        );
        a_function_to_find(1);
    }

    #[inline(never)]
    fn a_function_to_find(x: u64) -> u64 {
        std::hint::black_box(x + 1)
    }
}
