//! What one run measured, and the three ways it is printed: a JSON line (the
//! alternatives' own, key for key), a line for people, and a stderr note of the cores
//! each side used.

use std::time::Duration;

use super::drive::Spec;

/// What one run measured.
pub struct Outcome {
    pub spec: Spec,
    /// Successful replies read inside the window.
    pub ops: u64,
    pub window: Duration,
    /// Their latencies in nanoseconds, ascending.
    pub latencies: Vec<u64>,
    pub errors: u64,
    pub misses: u64,
    pub first_error: Option<String>,
    /// CPU seconds used inside the window by the server (the daemon, or this process for
    /// `echo`), by this load generator, and by the whole machine.
    pub daemon_cpu: f64,
    pub loadgen_cpu: f64,
    pub machine_cpu: f64,
    /// CPU seconds all tasks ran inside the window, when the cgroup counter is readable.
    pub tasks_cpu: Option<f64>,
}

impl Outcome {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    /// Nearest-rank percentile in µs, as `common.py`'s `percentile`.
    pub fn percentile_us(&self, p: f64) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1] as f64 / 1000.0
    }

    /// The alternatives' JSON line, key for key and in their order.
    pub fn json(&self) -> String {
        format!(
            "{{\"system\": \"{}\", \"op\": \"{}\", \"tokens\": {}, \"clients\": {}, \"ops\": {}, \
             \"seconds\": {:.3}, \"ops_per_sec\": {:.1}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}}}",
            self.spec.system,
            self.spec.op.name(),
            self.spec.tokens,
            self.spec.clients,
            self.ops,
            self.window.as_secs_f64(),
            self.ops_per_sec(),
            self.percentile_us(50.0),
            self.percentile_us(99.0),
            self.percentile_us(99.9),
        )
    }

    /// A line for people.
    pub fn line(&self) -> String {
        format!(
            "{:<6} {:<16} tokens={:<8} clients={:<3} pipeline={:<3} ops={:<8} {:>10.1} ops/s  p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs",
            self.spec.system,
            self.spec.op.name(),
            self.spec.tokens,
            self.spec.clients,
            self.spec.pipeline,
            self.ops,
            self.ops_per_sec(),
            self.percentile_us(50.0),
            self.percentile_us(99.0),
            self.percentile_us(99.9),
        )
    }

    /// The conditions of the run, for stderr: the cores used by the server, by this
    /// generator, by other processes (others' builds on this shared machine: a figure
    /// taken while they ran is disturbed), and busy but charged to no task (interrupts,
    /// context switches, idle entry and exit, time the hypervisor took: it grows with
    /// wake-ups). The last two come from the root cgroup's CPU counter and the CPUs' idle
    /// counters; without the cgroup counter they are reported as one.
    pub fn note(&self) -> String {
        let secs = self.window.as_secs_f64();
        // The echo server runs in this process: its CPU is in the generator's.
        let server = if self.spec.system == "echo" {
            0.0
        } else {
            self.daemon_cpu
        };
        let ours = server + self.loadgen_cpu;
        let others = match self.tasks_cpu {
            Some(all) => format!(
                "other processes {:.2}, uncharged {:.2}",
                (all - ours).max(0.0) / secs,
                (self.machine_cpu - all).max(0.0) / secs
            ),
            None => format!(
                "other processes and uncharged {:.2}",
                (self.machine_cpu - ours).max(0.0) / secs
            ),
        };
        let mut note = format!(
            "# {} {} clients={} pipeline={}: errors {}; misses {}; cores used: server {:.2}, \
             load generator {:.2}, {others} (of {}); loadavg1 {}",
            self.spec.system,
            self.spec.op.name(),
            self.spec.clients,
            self.spec.pipeline,
            self.errors,
            self.misses,
            server / secs,
            self.loadgen_cpu / secs,
            cpus(),
            super::loadavg(),
        );
        if let Some(e) = &self.first_error {
            note.push_str("; first error: ");
            note.push_str(e);
        }
        note
    }
}

/// The machine's CPUs (not this process's share of them: `taskset` may narrow that).
pub(super) fn cpus() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}
