//! Reducing a report to what two ways of tracing the same workload must agree on (folded
//! or kept records, paired or unpaired opens): every count, verdict, rate, site and
//! lifetime in iterations; not times, which differ from run to run.

use std::path::Path;

use serde_json::Value;

use crate::Traced;

/// What must come out the same: everything but times. Sites are named by their resource
/// (see [`resource_of`]).
pub fn essentials(traced: &Traced) -> Value {
    let report = &traced.report;
    let mut classes = serde_json::Map::new();
    for (name, judged) in report["classes"].as_object().unwrap() {
        let mut kept = serde_json::Map::new();
        for key in [
            "verdict",
            "acquired",
            "released",
            "live_at_end",
            "live_at_exit",
            "leaked_per_iteration",
            "bytes_leaked_per_iteration",
            "live_bytes_at_end",
            "failures",
            "lifetime_iterations",
        ] {
            kept.insert(key.into(), rounded(&judged[key]));
        }
        // How many lifetimes were measured; their nanoseconds differ from run to run.
        kept.insert("lifetimes".into(), judged["lifetime_ns"]["count"].clone());
        let sites: Vec<Value> = judged["sites"]
            .as_array()
            .map(|sites| {
                sites
                    .iter()
                    .map(|s| {
                        serde_json::json!([resource_of(&s["site"]), s["leaked"], s["verdict"]])
                    })
                    .collect()
            })
            .unwrap_or_default();
        kept.insert("sites".into(), sites.into());
        classes.insert(name.clone(), kept.into());
    }
    serde_json::json!({
        "iterations": report["iterations"]["count"],
        "counts": report["counts"],
        "unknown_releases": report["unknown_releases"],
        "classes": classes,
    })
}

/// Rates to 4 significant digits: sizes on disk are sampled at times that differ from
/// run to run.
pub fn rounded(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => format!("{:.3e}", n.as_f64().unwrap()).into(),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), rounded(v))).collect(),
        Value::Array(items) => items.iter().map(rounded).collect(),
        _ => value.clone(),
    }
}

/// A site's resource without its stack: how far a stack walk gets, and whether a libc
/// frame is named yet, varies from run to run.
pub fn resource_of(site: &Value) -> Value {
    let text = site.as_str().unwrap_or_default();
    text.split(" ← ").next().unwrap_or_default().into()
}

/// Without resident memory, which is sampled and differs from run to run (its verdict is
/// asserted by the diagnosis tests).
pub fn without_rss(mut essentials: Value) -> Value {
    essentials["classes"].as_object_mut().unwrap().remove("rss");
    essentials
}

/// `text` with the temporary directory `dir` named `DIR`, however a site's name pattern
/// rewrote its random name (`.tmpab3Xy` may read `.tmpabNXy` or `.XXXXXXXX`): every
/// directory beside it is named so.
pub fn without_dir(text: &str, dir: &Path) -> String {
    without_dirs_under(
        text,
        dir.parent().expect("a temporary directory has a parent"),
    )
}

/// `text` with every directory directly under `parent` (a run's temporary directory,
/// however a site's name pattern rewrote its random name) named `DIR`.
pub fn without_dirs_under(text: &str, parent: &Path) -> String {
    let prefix = format!("{}/", parent.to_str().unwrap().trim_end_matches('/'));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        out.push_str(&rest[..at]);
        out.push_str("DIR");
        let name = &rest[at + prefix.len()..];
        let end = name.find(['/', '"']).unwrap_or(name.len());
        rest = &name[end..];
    }
    out.push_str(rest);
    out
}

/// An `extract` report reduced for comparison, with the bytes of its files live at the end
/// apart: the workspace's random name is written `DIR` however a site's pattern rewrote
/// it, and the bytes are read while the worker's last files may still be written (compare
/// them within a tolerance).
pub fn comparable_extract(traced: &Traced) -> (String, f64) {
    let mut essentials = without_rss(essentials(traced));
    let bytes = essentials["classes"]["files"]["live_bytes_at_end"].take();
    let text = without_dirs_under(&essentials.to_string(), Path::new("/tmp"));
    (text, bytes.as_f64().unwrap_or(0.0))
}

/// Two runs of `extract` agree: see [`comparable_extract`]; the bytes within 0.1 %.
pub fn assert_same_extract(a: &Traced, b: &Traced) {
    let ((a, a_bytes), (b, b_bytes)) = (comparable_extract(a), comparable_extract(b));
    assert_same_text(&a, &b);
    assert!(
        (a_bytes - b_bytes).abs() <= 0.001 * b_bytes.max(a_bytes),
        "{a_bytes} / {b_bytes}"
    );
}

/// The built-in job with a temporary file leaked every iteration (its files live from one
/// extraction to the next), run as is and with `env`: the two reports must agree (see
/// [`assert_same_extract`]). Returns the first run.
pub fn extract_unchanged_by(env: &[(&str, &Path)]) -> Traced {
    let options = [
        "--rounds",
        "1",
        "--iterations",
        "500",
        "--inject-leak",
        "tempfile",
    ];
    let no_command: [&str; 0] = [];
    let plain = crate::leakscope_json("extract", &options, &no_command);
    let other = crate::leakscope_json_with_env("extract", &options, &no_command, env);
    assert_eq!(plain.report["lost_events"], 0, "{}", plain.stderr());
    assert_same_extract(&plain, &other);
    plain
}

/// leakscope's own peak resident set (`self.peak_rss_bytes`, VmHWM) is at most `mib` MiB.
pub fn assert_peak_rss_within(traced: &Traced, mib: u64) {
    let peak = traced.report["self"]["peak_rss_bytes"]
        .as_u64()
        .expect("VmHWM read");
    assert!(
        peak <= mib << 20,
        "leakscope's peak RSS was {} MiB",
        peak >> 20
    );
}

/// `a == b`, or a panic that shows where they part (reports reduced to one line are long).
pub fn assert_same_text(a: &str, b: &str) {
    let Some(at) = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((at, _), _)| at)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
    else {
        return;
    };
    let around = |text: &str| {
        let from = text.floor_char_boundary(at.saturating_sub(300));
        let to = text.ceil_char_boundary((at + 200).min(text.len()));
        text[from..to].to_string()
    };
    panic!(
        "they part at byte {at}:\n{}\n---- and ----\n{}",
        around(a),
        around(b)
    );
}
