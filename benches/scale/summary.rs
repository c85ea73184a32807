//! What `scale` measured, and how it is printed: lines for people, or one JSON object.

use std::time::Duration;

/// Everything `scale` measured, printed at the end.
#[derive(Default)]
pub struct Summary {
    pub tokens: u64,
    pub schedule_build_s: f64,
    pub schedule_heap_bytes: usize,
    pub schedule_rss_bytes: u64,
    pub reschedule_ns_per_token: f64,
    pub preload_s: f64,
    pub ready_s: f64,
    pub ready_cpu_s: f64,
    pub rss_ready: u64,
    pub rss_after_load: u64,
    pub cleanup_dry_run_s: Option<f64>,
    pub cleanup_probe: Probe,
    /// One `status` request (token counts by state), on the store's thread.
    pub status_s: f64,
    pub refresh_ready_s: f64,
    pub refresh_scheduled_s: f64,
    /// Finds by another client while the refresher loaded its schedule.
    pub schedule_load_probe: Probe,
    pub refresh_rss: u64,
    /// VmRSS, refresher on, with the store's cache of tokens by id full.
    pub refresh_rss_cache_full: u64,
    /// One `delete_tokens` of every token, with the refresher's schedule full.
    pub delete_all_s: f64,
    pub delete_all_probe: Probe,
}

/// The slowest of the finds another client made while some work ran, and how many.
#[derive(Debug, Default, Clone, Copy)]
pub struct Probe {
    pub worst: Duration,
    pub finds: u64,
}

pub fn print_summary(s: &Summary, json: bool) {
    let n = s.tokens as f64;
    let mb = |b: u64| b as f64 / 1e6;
    let per_token = |b: i64| b as f64 / n;
    let daemon_delta = s.refresh_rss as i64 - s.rss_ready as i64;
    if json {
        println!(
            "{{\"system\": \"tokend\", \"tokens\": {}, \"schedule_build_s\": {:.3}, \
             \"schedule_heap_bytes_per_token\": {:.1}, \"schedule_rss_bytes_per_token\": {:.1}, \
             \"reschedule_ns_per_token\": {:.0}, \"preload_s\": {:.2}, \"ready_s\": {:.3}, \
             \"ready_cpu_s\": {:.2}, \"rss_ready_mb\": {:.1}, \"rss_after_load_mb\": {:.1}, \
             \"cleanup_dry_run_s\": {}, \"cleanup_worst_find_ms\": {:.1}, \"status_s\": {:.3}, \"refresh_ready_s\": {:.3}, \
             \"refresh_scheduled_s\": {:.3}, \"schedule_load_worst_find_ms\": {:.1}, \"refresh_rss_mb\": {:.1}, \"refresh_rss_bytes_per_token\": {:.1}, \
             \"refresh_rss_cache_full_mb\": {:.1}, \"delete_all_s\": {:.3}, \"delete_all_worst_find_ms\": {:.1}}}",
            s.tokens,
            s.schedule_build_s,
            per_token(s.schedule_heap_bytes as i64),
            per_token(s.schedule_rss_bytes as i64),
            s.reschedule_ns_per_token,
            s.preload_s,
            s.ready_s,
            s.ready_cpu_s,
            mb(s.rss_ready),
            mb(s.rss_after_load),
            s.cleanup_dry_run_s
                .map_or("null".to_owned(), |v| format!("{v:.3}")),
            s.cleanup_probe.worst.as_secs_f64() * 1e3,
            s.status_s,
            s.refresh_ready_s,
            s.refresh_scheduled_s,
            s.schedule_load_probe.worst.as_secs_f64() * 1e3,
            mb(s.refresh_rss),
            per_token(daemon_delta),
            mb(s.refresh_rss_cache_full),
            s.delete_all_s,
            s.delete_all_probe.worst.as_secs_f64() * 1e3,
        );
        return;
    }
    println!("tokens                                   {}", s.tokens);
    println!(
        "schedule build (deadline + set, all)     {:.3} s ({:.0} ns per token)",
        s.schedule_build_s,
        s.schedule_build_s * 1e9 / n
    );
    println!(
        "schedule memory, heap bytes counted      {:.1} MB ({:.1} B per token)",
        mb(s.schedule_heap_bytes as u64),
        per_token(s.schedule_heap_bytes as i64)
    );
    println!(
        "schedule memory, VmRSS growth            {:.1} MB ({:.1} B per token)",
        mb(s.schedule_rss_bytes),
        per_token(s.schedule_rss_bytes as i64)
    );
    println!(
        "reschedule (set on a scheduled id)       {:.0} ns per token",
        s.reschedule_ns_per_token
    );
    println!(
        "preload (straight into SQLite)           {:.1} s",
        s.preload_s
    );
    println!(
        "daemon, refresher off: ready            {:.3} s (CPU {:.2} s), VmRSS {:.1} MB; after the load {:.1} MB",
        s.ready_s,
        s.ready_cpu_s,
        mb(s.rss_ready),
        mb(s.rss_after_load)
    );
    if let Some(c) = s.cleanup_dry_run_s {
        println!("dry-run cleanup over every token         {c:.3} s");
        print_probe("a find during that pass", s.cleanup_probe);
    }
    println!(
        "status (token counts by state)           {:.1} ms",
        s.status_s * 1e3
    );
    println!(
        "daemon, refresher on: ready             {:.3} s, all scheduled at {:.3} s, VmRSS {:.1} MB ({:+.1} B per token over refresher off)",
        s.refresh_ready_s,
        s.refresh_scheduled_s,
        mb(s.refresh_rss),
        per_token(daemon_delta)
    );
    print_probe("a find while the schedule loaded", s.schedule_load_probe);
    println!(
        "VmRSS with the cache of tokens by id full {:.1} MB",
        mb(s.refresh_rss_cache_full)
    );
    println!(
        "delete_tokens (every token)              {:.3} s",
        s.delete_all_s
    );
    print_probe("a find during that delete", s.delete_all_probe);
}

fn print_probe(what: &str, p: Probe) {
    println!(
        "{what:<41}{:.1} ms (the slowest of {} finds)",
        p.worst.as_secs_f64() * 1e3,
        p.finds
    );
}
