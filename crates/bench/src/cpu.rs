//! Where the CPU went during the measured phase, from Linux's `/proc`.
//!
//! The machine this runs on is small and shared: other work may take CPU
//! while a benchmark runs, and the generator itself competes with the
//! servers. Reading the machine's busy time, the generator's own CPU time
//! and that of the server processes (`--pids`) at the start and end of the
//! measured phase says how much of the machine each had, how much went to
//! other work (noise), and how many CPU microseconds the servers spent per
//! request, a figure that noise disturbs far less than throughput.
//! Elsewhere than Linux every figure is simply absent.

use serde::Serialize;

/// Clock ticks per second of `/proc` CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU counters at one instant.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Busy and total ticks of the whole machine (all cores).
    machine: Option<(u64, u64)>,
    /// This process's user + system ticks.
    own: Option<u64>,
    /// Each watched process's user + system ticks.
    pids: Vec<Option<u64>>,
}

fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn process_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of a process in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Snapshot {
    /// Reads the counters now.
    pub fn take(pids: &[u32]) -> Snapshot {
        Snapshot {
            machine: machine_ticks(),
            own: process_ticks("self"),
            pids: pids.iter().map(|p| process_ticks(&p.to_string())).collect(),
        }
    }
}

/// CPU use over the measured phase, in cores (1.0 = one core busy all the time).
#[derive(Serialize, Clone, Debug, Default)]
pub struct CpuUse {
    /// Cores the machine has.
    pub cores: usize,
    /// Cores busy on anything.
    pub machine_busy: Option<f64>,
    /// Cores the load generator used.
    pub generator: Option<f64>,
    /// Cores each watched server process used (in `--pids` order).
    pub servers: Vec<Option<f64>>,
    /// Busy cores not accounted to the generator or the servers: other work
    /// on the machine, i.e. noise in the measurement.
    pub other: Option<f64>,
    /// Server CPU time per successful request, microseconds.
    pub server_cpu_us_per_op: Option<f64>,
    /// Generator CPU time per successful request, microseconds.
    pub generator_cpu_us_per_op: Option<f64>,
    /// Resident memory of each watched process at the end, KiB.
    pub servers_rss_kib: Vec<Option<u64>>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Turns two snapshots `elapsed_s` apart, over which `ops` requests
/// succeeded, into a [`CpuUse`].
pub fn usage(start: &Snapshot, end: &Snapshot, elapsed_s: f64, ops: u64, pids: &[u32]) -> CpuUse {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut out = CpuUse {
        cores,
        servers_rss_kib: pids.iter().map(|p| rss_kib(*p)).collect(),
        ..CpuUse::default()
    };
    if elapsed_s <= 0.0 {
        return out;
    }
    let secs = |a: Option<u64>, b: Option<u64>| -> Option<f64> {
        Some(b?.checked_sub(a?)? as f64 / TICKS_PER_S)
    };
    let machine_busy_s = match (start.machine, end.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            // Busy share of all ticks, times the core count, over the phase.
            Some((b1 - b0) as f64 / (t1 - t0) as f64 * cores as f64 * elapsed_s)
        }
        _ => None,
    };
    let generator_s = secs(start.own, end.own);
    let server_s: Vec<Option<f64>> = start
        .pids
        .iter()
        .zip(end.pids.iter())
        .map(|(a, b)| secs(*a, *b))
        .collect();
    let servers_total: Option<f64> = if server_s.is_empty() {
        None
    } else {
        server_s.iter().copied().sum()
    };
    out.machine_busy = machine_busy_s.map(|s| round3(s / elapsed_s));
    out.generator = generator_s.map(|s| round3(s / elapsed_s));
    out.servers = server_s
        .iter()
        .map(|s| s.map(|s| round3(s / elapsed_s)))
        .collect();
    out.other = match (machine_busy_s, generator_s) {
        (Some(m), Some(g)) => Some(round3(
            ((m - g - servers_total.unwrap_or(0.0)) / elapsed_s).max(0.0),
        )),
        _ => None,
    };
    if ops > 0 {
        let per_op = |s: f64| (s * 1e6 / ops as f64 * 10.0).round() / 10.0;
        out.server_cpu_us_per_op = servers_total.map(per_op);
        out.generator_cpu_us_per_op = generator_s.map(per_op);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_computes_shares() {
        let me = std::process::id();
        let a = Snapshot::take(&[me]);
        // Burn a little CPU so the counters move.
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(200) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let b = Snapshot::take(&[me]);
        let u = usage(&a, &b, 0.2, 1000, &[me]);
        if cfg!(target_os = "linux") {
            assert!(u.machine_busy.is_some());
            assert!(u.generator.is_some());
            assert!(u.servers_rss_kib[0].unwrap() > 0);
            assert!(u.other.unwrap() >= 0.0);
        }
        let none = usage(&a, &b, 0.0, 0, &[]);
        assert!(none.machine_busy.is_none());
    }
}
