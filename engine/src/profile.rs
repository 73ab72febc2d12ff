//! Per-op timing of a tape: forward time (the compute between one recorded op
//! and the next is charged to the op recorded at its end, so model glue such
//! as building masks lands on the following op), backward time per node, and
//! FLOPs for the matrix ops, grouped by op kind and by scope (e.g. a layer).

use std::collections::BTreeMap;
use std::time::Instant;

/// Accumulated cost of one (scope, op) pair.
#[derive(Clone, Debug, Default)]
pub struct OpStats {
    pub calls: usize,
    pub forward_s: f64,
    pub backward_s: f64,
    /// Matmul FLOPs of the forward pass (backward does twice as many).
    pub forward_flops: f64,
    /// Bytes the forward pass read and wrote (inputs + output, f32), a lower
    /// bound on memory traffic; backward moves about twice as much.
    pub forward_bytes: f64,
}

impl OpStats {
    pub fn total_s(&self) -> f64 {
        self.forward_s + self.backward_s
    }
}

/// Timing state of a profiling tape.
#[derive(Debug)]
pub struct Profiler {
    last: Instant,
    scope: String,
    /// (scope, op) -> stats.
    pub stats: BTreeMap<(String, &'static str), OpStats>,
}

impl Default for Profiler {
    fn default() -> Self {
        Profiler::new()
    }
}

impl Profiler {
    pub fn new() -> Profiler {
        Profiler {
            last: Instant::now(),
            scope: String::new(),
            stats: BTreeMap::new(),
        }
    }

    /// Start charging time from now (e.g. right before the forward pass).
    pub fn restart_clock(&mut self) {
        self.last = Instant::now();
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn set_scope(&mut self, scope: &str) {
        self.scope.clear();
        self.scope.push_str(scope);
    }

    /// Charge the time since the last event to a forward op in the current scope.
    pub fn forward_event(&mut self, op: &'static str, flops: f64, bytes: f64) -> String {
        let now = Instant::now();
        let s = self.stats.entry((self.scope.clone(), op)).or_default();
        s.calls += 1;
        s.forward_s += (now - self.last).as_secs_f64();
        s.forward_flops += flops;
        s.forward_bytes += bytes;
        self.last = now;
        self.scope.clone()
    }

    /// Charge a backward duration to an op recorded in `scope`.
    pub fn backward_event(&mut self, scope: &str, op: &'static str, seconds: f64) {
        self.stats
            .entry((scope.to_string(), op))
            .or_default()
            .backward_s += seconds;
    }

    /// Sum of stats by op kind, largest total first.
    pub fn by_op(&self) -> Vec<(&'static str, OpStats)> {
        let mut m: BTreeMap<&'static str, OpStats> = BTreeMap::new();
        for ((_, op), s) in &self.stats {
            add_into(m.entry(op).or_default(), s);
        }
        sorted(m.into_iter().collect())
    }

    /// Sum of stats by scope, largest total first.
    pub fn by_scope(&self) -> Vec<(String, OpStats)> {
        let mut m: BTreeMap<String, OpStats> = BTreeMap::new();
        for ((scope, _), s) in &self.stats {
            add_into(m.entry(scope.clone()).or_default(), s);
        }
        sorted(m.into_iter().collect())
    }
}

fn add_into(a: &mut OpStats, b: &OpStats) {
    a.calls += b.calls;
    a.forward_s += b.forward_s;
    a.backward_s += b.backward_s;
    a.forward_flops += b.forward_flops;
    a.forward_bytes += b.forward_bytes;
}

fn sorted<K>(mut v: Vec<(K, OpStats)>) -> Vec<(K, OpStats)> {
    v.sort_by(|a, b| b.1.total_s().total_cmp(&a.1.total_s()));
    v
}
