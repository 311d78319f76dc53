//! The figures of a run, for people: the same numbers as the JSON report,
//! with a few examples of each problem found.

use std::fmt::Write;

use crate::check::{Report, Violation};

/// How many examples of each kind of problem are printed.
const SHOWN: usize = 10;

/// Renders the report as text.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "== dynkv-chaos report{}",
        r.seed.map(|x| format!(" (seed {x})")).unwrap_or_default()
    );
    let _ = writeln!(s, "operations         ok      fail   unknown");
    let mut total = (0, 0, 0);
    for (kind, c) in &r.ops {
        let _ = writeln!(s, "  {kind:<12} {:>8} {:>8} {:>8}", c.ok, c.fail, c.unknown);
        total = (total.0 + c.ok, total.1 + c.fail, total.2 + c.unknown);
    }
    let _ = writeln!(
        s,
        "  {:<12} {:>8} {:>8} {:>8}",
        "all", total.0, total.1, total.2
    );
    let faults: Vec<String> = r.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        s,
        "faults injected    {}{}",
        faults.join(", "),
        if r.faults_failed > 0 {
            format!(" ({} actions failed)", r.faults_failed)
        } else {
            String::new()
        }
    );
    if r.commits.accepted + r.commits.refused > 0 || r.faults_during_handoff > 0 {
        let by_kind: Vec<String> = r
            .faults_during_handoff_by_kind
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "membership         commits accepted {}, refused {} (a refused racing commit is expected); faults during handoff {}{}",
            r.commits.accepted,
            r.commits.refused,
            r.faults_during_handoff,
            if by_kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_kind.join(", "))
            }
        );
        for e in &r.commits.refusals {
            let _ = writeln!(s, "    refused {e}");
        }
    }
    if !r.disk_full_answers.is_empty() {
        let a: Vec<String> = r
            .disk_full_answers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            s,
            "disk-full answers  (through the full node) {}",
            a.join(", ")
        );
    }
    let w = &r.writes;
    let _ = writeln!(
        s,
        "acknowledged writes {}{}: {} present, {} superseded ({} only by a delete of unknown outcome); unknown-outcome writes {}, {} of them present",
        w.acknowledged,
        if r.min_w > 1 {
            format!(" (W >= {})", r.min_w)
        } else {
            String::new()
        },
        w.present,
        w.superseded,
        w.excused_by_unconfirmed_delete,
        w.unknown,
        w.unknown_present
    );
    match &r.reap {
        Some(p) => {
            let _ = writeln!(
                s,
                "reaping            grace {} ms, settle {} ms, a pass every {} ms: {} keys reaped by the end; {} acknowledged writes' dots reaped with their tombstone ({} puts removed only by a delete of unknown outcome)",
                p.grace_ms,
                p.settle_ms,
                p.interval_ms,
                r.keys_reaped,
                w.reaped,
                w.reaped_by_unconfirmed_delete
            );
        }
        None => {
            let _ = writeln!(s, "reaping            off");
        }
    }
    if !r.crashes.is_empty() {
        let _ = writeln!(s, "NODE CRASHES       {}", r.crashes.len());
        examples(&mut s, &r.crashes);
    }
    let _ = writeln!(s, "LOST WRITES        {}", w.lost);
    examples(&mut s, &r.lost_writes);
    let _ = writeln!(
        s,
        "RESURRECTIONS      {} (values removed by a delete: {}; keys whose history ends in a delete covering every value: {})",
        r.resurrections.len(),
        r.deleted_values_checked,
        r.keys_checked_for_resurrection
    );
    examples(&mut s, &r.resurrections);
    let c = &r.convergence;
    let _ = writeln!(
        s,
        "CONVERGENCE        {} of {} keys: {}",
        if c.converged && c.diverged.is_empty() {
            c.keys
        } else {
            c.keys.saturating_sub(c.diverged.len().max(1) as u64)
        },
        c.keys,
        match (c.converged, c.time_ms) {
            (true, Some(t)) if c.polls <= 1 => {
                format!("converged {t} ms after healing (by the first poll)")
            }
            (true, Some(t)) => format!("converged {t} ms after healing ({} polls)", c.polls),
            _ => format!("NOT converged within {} ms", c.bound_ms),
        }
    );
    examples(&mut s, &c.diverged);
    let sb = &r.siblings;
    let hist: Vec<String> = sb
        .histogram
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let _ = writeln!(
        s,
        "siblings           keys with values {}, deleted {}, max {} per key, tombstones {}, keys by sibling count [{}]",
        sb.keys_with_values,
        sb.keys_deleted,
        sb.max,
        sb.tombstones,
        hist.join(" ")
    );
    let _ = writeln!(s, "SIBLING VIOLATIONS {}", sb.violations.len());
    examples(&mut s, &sb.violations);
    let q = &r.read_your_quorum;
    let _ = writeln!(
        s,
        "read-your-quorum   strict: {} violations of {} pairs; sloppy: {} of {} (expected, counted apart){}",
        q.strict_violations,
        q.strict_checked,
        q.sloppy_violations,
        q.sloppy_checked,
        if q.reaped_accepted > 0 {
            format!("; {} misses accepted as after reaping", q.reaped_accepted)
        } else {
            String::new()
        }
    );
    examples(&mut s, &q.examples);
    let g = &r.ring;
    if g.checked {
        let _ = writeln!(
            s,
            "RING AGREEMENT     {} of {} running members: version {}, [{}]",
            if g.agreed {
                "agreed by all".to_string()
            } else {
                format!("{} disagree", g.disagreements.len())
            },
            g.nodes,
            g.version.map_or("?".to_string(), |v| v.to_string()),
            g.members.join(", ")
        );
        examples(&mut s, &g.disagreements);
    }
    if let Some(f) = &r.feed {
        let errors: Vec<String> = f.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "CHANGE FEED        {} events; {} acknowledged writes: {} missing, {} duplicated, {} wrong values; {} gaps (410); caught up: {}; {} requests, {} node switches, errors: [{}]",
            f.events,
            f.acknowledged,
            f.missing.len(),
            f.duplicates.len(),
            f.wrong_values.len(),
            f.expired.len(),
            f.drained,
            f.polls,
            f.switches,
            errors.join(", ")
        );
        examples(&mut s, &f.missing);
        examples(&mut s, &f.duplicates);
        examples(&mut s, &f.wrong_values);
        for e in f.expired.iter().take(SHOWN) {
            let _ = writeln!(s, "    410 {e}");
        }
    }
    let _ = writeln!(
        s,
        "VERDICT            {}",
        if r.passed {
            "PASS".to_string()
        } else {
            format!("FAIL: {}", r.failures.join("; "))
        }
    );
    s
}

fn examples(s: &mut String, list: &[Violation]) {
    for v in list.iter().take(SHOWN) {
        let _ = writeln!(
            s,
            "    {} {}: {}",
            v.key,
            v.op.as_deref().unwrap_or(""),
            v.detail
        );
    }
    if list.len() > SHOWN {
        let _ = writeln!(s, "    ... and {} more", list.len() - SHOWN);
    }
}
