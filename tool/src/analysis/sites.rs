//! Where the retained resources came from: resources acquired during the iterations and
//! still held at the last boundary, grouped by site, the most-leaking first.

use std::collections::{HashMap, HashSet};

use super::scales;
use super::trend::{self, Verdict};
use crate::iterations::Iterations;
use crate::ledger::records::{Origin, RecordId, Records};
use crate::ledger::sites::{SiteId, Sites};
use crate::ledger::{ByteChange, NO_RECORD};

/// How many sites a class reports.
pub(crate) const MAX_SITES: usize = 10;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Site {
    pub(crate) site: SiteId,
    /// The bytes an mremap resized this site's mappings to, each (on average over the
    /// retained ones), when one did (the site itself names the first size).
    pub(crate) resized_to: Option<u64>,
    /// Retained resources from this site.
    pub(crate) leaked: u64,
    pub(crate) leaked_per_iteration: f64,
    /// Bytes they still held at the last boundary (mappings only).
    pub(crate) bytes_leaked: Option<u64>,
    /// Growth of those bytes per iteration (mappings only): a mapping grown by mremap
    /// leaks bytes while its count stays one.
    pub(crate) bytes_leaked_per_iteration: Option<f64>,
    /// The trend of this site's retained count: "leak" if it kept growing, "plateau" for a
    /// bounded cache.
    pub(crate) verdict: Verdict,
    /// Of `leaked`, those recorded without a stack (past `--stack-rate`, or while the ring
    /// was a quarter full), counted here because this is the one site they differ from only by
    /// the stack.
    pub(crate) without_stack: u64,
}

/// Calls recorded without their stack belong to the one stacked site that differs from
/// them only by the stack: by site id, the stacked owner of each stackless site that has
/// exactly one among `retained`. With two or more candidates the stackless site stays
/// apart, as it is: nothing says which of them it was.
pub(crate) fn stack_owners(
    sites: &Sites,
    retained: impl Iterator<Item = SiteId>,
) -> HashMap<SiteId, SiteId> {
    let mut candidates: HashMap<SiteId, Vec<SiteId>> = HashMap::new();
    for site in retained {
        if let Some(bare) = sites.without_stack(site) {
            let owners = candidates.entry(bare).or_default();
            if !owners.contains(&site) {
                owners.push(site);
            }
        }
    }
    candidates
        .into_iter()
        .filter_map(|(bare, owners)| (owners.len() == 1).then(|| (bare, owners[0])))
        .collect()
}

/// Whether a record was retained across iterations: acquired from the first boundary on,
/// before the last one, and not released before the last one.
pub(crate) fn retained(born_ns: u64, released_ns: u64, iterations: &Iterations) -> bool {
    match (iterations.first(), iterations.last()) {
        (Some(first), Some(last)) => born_ns >= first && born_ns < last && released_ns >= last,
        _ => false,
    }
}

/// What every site of a class is judged with.
pub(crate) struct Judging<'a> {
    /// Why no verdict can be trusted (lost events, no convincing loop).
    pub(crate) doubt: Option<&'a str>,
    /// When the class ran into its limit.
    pub(crate) limit_hit: Option<&'a super::limits::LimitHit>,
}

/// What a mapping site's bytes are judged from.
pub(crate) struct SiteBytes<'a> {
    /// Every change of mapped bytes, in time order.
    pub(crate) changes: &'a [ByteChange],
    /// Each record's live bytes at the last boundary.
    pub(crate) at_last_boundary: &'a HashMap<RecordId, u64>,
    /// Records an mremap resized in place.
    pub(crate) resized: &'a HashSet<RecordId>,
    /// How the class's bytes are judged.
    pub(crate) scale: trend::Scale,
}

/// Groups retained records by site. `site_bytes` (for mappings) judges each site's bytes
/// as well as its count.
pub(crate) fn retained_sites(
    records: &Records,
    sites: &Sites,
    iterations: &Iterations,
    site_bytes: Option<&SiteBytes>,
    judging: &Judging,
) -> Vec<Site> {
    let doubt = judging.doubt;
    let bytes = site_bytes.map(|b| b.at_last_boundary);
    let intervals = iterations.count().saturating_sub(1);
    if intervals == 0 {
        return Vec::new();
    }
    let mut by_site: HashMap<SiteId, (Vec<u64>, u64)> = HashMap::new();
    let mut members: HashMap<SiteId, Vec<RecordId>> = HashMap::new();
    let mut without_stack: HashMap<SiteId, u64> = HashMap::new();
    let is_retained = |record: &crate::ledger::records::Record| {
        // A mapping from before the iterations that mremap grows during them is where the
        // leaked bytes are, although the mapping itself is older than the loop.
        let grown = site_bytes.is_some_and(|b| b.resized.contains(&record.id))
            && iterations
                .last()
                .is_some_and(|last| record.released_ns >= last && record.born_ns < last);
        record.origin != Origin::Seeded
            && (retained(record.born_ns, record.released_ns, iterations) || grown)
    };
    let owners = stack_owners(
        sites,
        records
            .all()
            .iter()
            .filter(|r| is_retained(r))
            .map(|r| r.site),
    );
    for record in records.all() {
        let id = record.id;
        if is_retained(record) {
            let site = match owners.get(&record.site) {
                Some(&owner) => {
                    *without_stack.entry(owner).or_default() += 1;
                    owner
                }
                None => record.site,
            };
            let entry = by_site.entry(site).or_default();
            entry.0.push(record.born_ns);
            entry.1 += bytes.and_then(|b| b.get(&id)).copied().unwrap_or(0);
            if site_bytes.is_some() {
                members.entry(site).or_default().push(id);
            }
        }
    }
    // Rank first and judge only the sites shown: a run leaking a uniquely named file per
    // iteration has as many sites as iterations.
    let mut ranked: Vec<(SiteId, Vec<u64>, u64)> = by_site
        .into_iter()
        .map(|(site, (births, bytes))| (site, births, bytes))
        .collect();
    ranked.sort_by(|a, b| {
        (b.1.len().cmp(&a.1.len()))
            .then(b.2.cmp(&a.2))
            .then_with(|| sites.key(a.0).cmp(sites.key(b.0)))
    });
    ranked.truncate(MAX_SITES);
    ranked
        .into_iter()
        .map(|(site, mut births, bytes_of_site)| {
            births.sort_unstable();
            // Retained count by boundary: a bounded cache levels off, a leak keeps rising.
            let cumulative: Vec<f64> = iterations
                .boundaries
                .iter()
                .map(|&b| births.partition_point(|&t| t < b) as f64)
                .collect();
            // A site that grew until the class hit its limit is judged as the class is: a
            // leak at the rate it grew, not a plateau.
            let sampling = trend::Sampling::of(iterations);
            let plain = trend::judge_sampled(&cumulative, &scales::COUNT, doubt, sampling);
            let count = match judging.limit_hit {
                Some(hit) => {
                    super::limits::judge_pinned(&cumulative, &scales::COUNT, hit, &plain, doubt)
                }
                None => plain,
            };
            let count_verdict = count.verdict;
            let pinned_rate = (judging.limit_hit.is_some() && count.verdict == Verdict::Leak)
                .then_some(count.rate);
            let mut resized_to = None;
            let (bytes_rate, verdict) = match site_bytes {
                Some(judged) => {
                    let ids = members.get(&site).map_or(&[][..], Vec::as_slice);
                    // Per mapping: a site of 500 mappings each shrunk to 4 KiB was resized
                    // to 4 KiB, not to their 2 MiB total.
                    if ids.iter().any(|id| judged.resized.contains(id)) {
                        resized_to = Some(bytes_of_site / (births.len() as u64).max(1));
                    }
                    let series = site_byte_series(judged.changes, ids, &iterations.boundaries);
                    // Pinned like the count: bytes that grew until the limit leak at the
                    // rate they grew, not spread over the iterations that failed.
                    let plain = trend::judge_sampled(&series, &judged.scale, doubt, sampling);
                    let judgement = match judging.limit_hit {
                        Some(hit) => {
                            super::limits::judge_pinned(&series, &judged.scale, hit, &plain, doubt)
                        }
                        None => plain,
                    };
                    let rate = if judgement.verdict == Verdict::Leak {
                        judgement.rate
                    } else {
                        bytes_of_site as f64 / intervals as f64
                    };
                    (Some(rate), count_verdict.worst(judgement.verdict))
                }
                None => (None, count_verdict),
            };
            Site {
                site,
                resized_to,
                leaked: births.len() as u64,
                leaked_per_iteration: pinned_rate.unwrap_or(births.len() as f64 / intervals as f64),
                bytes_leaked: bytes.map(|_| bytes_of_site),
                bytes_leaked_per_iteration: bytes_rate,
                verdict,
                without_stack: without_stack.get(&site).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// The live bytes of `records` just before each boundary.
fn site_byte_series(changes: &[ByteChange], records: &[RecordId], boundaries: &[u64]) -> Vec<f64> {
    let wanted: HashSet<RecordId> = records.iter().copied().collect();
    let mine: Vec<ByteChange> = changes
        .iter()
        .filter(|c| wanted.contains(&c.record))
        .copied()
        .collect();
    super::series::byte_totals(&mine, boundaries)
}

/// Each mapping record's live bytes just before `at`.
pub(crate) fn bytes_by_record(changes: &[ByteChange], at: u64) -> HashMap<RecordId, u64> {
    let mut totals: HashMap<RecordId, i64> = HashMap::new();
    for change in changes
        .iter()
        .filter(|c| c.time_ns < at && c.record != NO_RECORD)
    {
        *totals.entry(change.record).or_default() += change.bytes;
    }
    totals
        .into_iter()
        .filter(|&(_, bytes)| bytes > 0)
        .map(|(id, bytes)| (id, bytes as u64))
        .collect()
}

#[cfg(test)]
mod stack_owner_tests {
    use super::*;
    use crate::ledger::sites::{Backing, MappingSite, SiteKey};
    use crate::stacks::Frame;

    fn mapping(stack: Option<u32>) -> SiteKey {
        SiteKey::Mapping(MappingSite {
            backing: Backing::Anon,
            len: 65536,
            prot: 3,
            shared: false,
            stack,
        })
    }

    #[test]
    fn a_call_without_its_stack_joins_the_one_site_it_differs_from_only_by_the_stack() {
        let mut sites = Sites::default();
        let leak = sites.intern_stack(Some(&[Frame::named("leak_big")]));
        let stacked = sites.intern(mapping(leak));
        let bare = sites.intern(mapping(None));
        let brk_stack = sites.intern_stack(Some(&[Frame::named("grow")]));
        let brk = sites.intern(SiteKey::Brk { stack: brk_stack });
        let owners = stack_owners(&sites, [stacked, bare, brk, stacked].into_iter());
        assert_eq!(owners, HashMap::from([(bare, stacked)]));
    }

    #[test]
    fn with_two_stacked_candidates_a_call_without_its_stack_stays_apart() {
        let mut sites = Sites::default();
        let one = sites.intern_stack(Some(&[Frame::named("one")]));
        let two = sites.intern_stack(Some(&[Frame::named("two")]));
        let first = sites.intern(mapping(one));
        let second = sites.intern(mapping(two));
        sites.intern(mapping(None));
        assert!(stack_owners(&sites, [first, second].into_iter()).is_empty());
    }
}
