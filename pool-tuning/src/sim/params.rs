//! The simulated backend's parameters, their changes over time, and the capacity they allow.

use serde::{Deserialize, Serialize};

use super::latency::LatencyModel;

/// How a simulated server says "slow down".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleStatus {
    /// S3's `503 SlowDown`: no Retry-After.
    #[default]
    SlowDown,
    /// HTTP `429 Too Many Requests`, with `Retry-After` when `retry_after_ms` is set.
    TooManyRequests,
}

/// The simulated backend at one moment. Every field has a default; `0` turns an optional
/// mechanism off.
///
/// A request goes through these steps, in order: a background error (load-independent, each
/// share on its own), a hang (no answer at all: only the client's timeout ends it, and it
/// holds server capacity until then), the rate cap's token bucket (answered `throttle` after
/// `throttle_latency_ms`), the connection limit (beyond `max_in_flight` a request gets no
/// answer), then service: `base · X` with `X` from `latency`, plus, past the knee, a wait in
/// the server's queue of `base · E[X] · overload_slope · ((n − knee) / knee)^overload_exponent`
/// for `n` requests held. With slope and exponent 1 that is a FIFO queue in front of `knee`
/// servers: every request waits the same, the tail stays the request's own (it is not
/// stretched by the load), and throughput past the knee stays flat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerParams {
    /// Service time at no load, in ms (the scale of `latency`). Default 20.
    pub base_latency_ms: f64,
    /// The distribution of service times around the base. Default uniform ± 5 %.
    pub latency: LatencyModel,
    /// Requests in service before they slow each other down. Default 64.
    pub knee: f64,
    /// How steeply latency grows past the knee. Default 1 (with exponent 1, throughput stays
    /// flat past the knee: pure queueing).
    pub overload_slope: f64,
    /// Shape of the growth past the knee. Default 1; above 1 throughput falls past the knee.
    pub overload_exponent: f64,
    /// Connection limit: a request arriving with this many in service gets no answer (the
    /// client's timeout ends it). Default 0 (none).
    pub max_in_flight: f64,
    /// Requests per second the server accepts; above, it throttles. Default 0 (no cap).
    pub rate_cap_per_s: f64,
    /// Burst the cap's token bucket allows, in seconds of the rate. Default 0.05.
    pub burst_s: f64,
    /// What the cap answers. Default `slow_down` (503).
    pub throttle: ThrottleStatus,
    /// How long a throttle takes to arrive, in ms. Default 5.
    pub throttle_latency_ms: f64,
    /// `Retry-After` on 429 answers, in ms. Default 0 (none).
    pub retry_after_ms: f64,
    /// Share of requests answered 503 SlowDown whatever the load. Default 0.
    pub background_slow_down: f64,
    /// Share answered 429 whatever the load. Default 0.
    pub background_too_many: f64,
    /// Share answered 500 Internal Error. Default 0.
    pub background_internal_error: f64,
    /// Share whose connection is reset. Default 0.
    pub background_reset: f64,
    /// How long background errors take to arrive, in ms. Default 5.
    pub error_latency_ms: f64,
    /// Share of requests that never get an answer (the client's timeout ends them; they hold
    /// server capacity until it fires). Default 0.
    pub hang_share: f64,
    /// Memory share in use with nothing in flight. Default 0.3.
    pub memory_base: f64,
    /// Memory share each attempt in flight adds. Default 0.
    pub memory_per_request: f64,
}

impl Default for ServerParams {
    fn default() -> Self {
        Self {
            base_latency_ms: 20.0,
            latency: LatencyModel::default(),
            knee: 64.0,
            overload_slope: 1.0,
            overload_exponent: 1.0,
            max_in_flight: 0.0,
            rate_cap_per_s: 0.0,
            burst_s: 0.05,
            throttle: ThrottleStatus::SlowDown,
            throttle_latency_ms: 5.0,
            retry_after_ms: 0.0,
            background_slow_down: 0.0,
            background_too_many: 0.0,
            background_internal_error: 0.0,
            background_reset: 0.0,
            error_latency_ms: 5.0,
            hang_share: 0.0,
            memory_base: 0.3,
            memory_per_request: 0.0,
        }
    }
}

/// What the best fixed limit achieves with some parameters.
///
/// Only limits that keep the load-caused failures (requests the load pushed past the
/// timeout) within [`GOAL_OVERLOAD`](super::GOAL_OVERLOAD) count: past the knee, letting
/// the slowest requests time out can raise the success rate of the rest, but no one would
/// call that capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Capacity {
    /// Successful requests per second, in steady state.
    pub ops_per_s: f64,
    /// The smallest limit within 1 % of that: the best fixed limit (the fewest requests in
    /// flight, hence the lowest latency, for the throughput; just below a rate cap rather
    /// than on its edge).
    pub best_limit: usize,
}

/// A closed loop's steady state at one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SteadyState {
    successes_per_s: f64,
    /// The rate the limit offers, as a share of the rate cap (0 without a cap).
    cap_share: f64,
    /// Requests the server holds (served and hanging).
    held: f64,
    /// Share of attempts the load pushed past the timeout.
    load_failures: f64,
}

impl ServerParams {
    /// The wait in the server's queue with `in_service` requests held, in seconds.
    pub fn queue_wait_s(&self, in_service: f64) -> f64 {
        let excess = (in_service - self.knee).max(0.0) / self.knee;
        if excess == 0.0 {
            return 0.0;
        }
        let service_s = self.base_latency_ms / 1_000.0 * self.latency.mean();
        service_s * self.overload_slope * excess.powf(self.overload_exponent)
    }

    fn background_error_share(&self) -> f64 {
        self.background_slow_down
            + self.background_too_many
            + self.background_internal_error
            + self.background_reset
    }

    /// The steady-state success rate of a closed loop keeping `limit` attempts in flight
    /// against this server, with per-attempt timeout `timeout_s` (infinite for none).
    ///
    /// Each attempt holds its slot for: an error's latency (background errors), the timeout
    /// (hangs, and served requests slower than it), or its service time. The requests the
    /// server holds (served and hanging) set the load factor, which sets the service time: a
    /// fixed point, found by iteration. A rate cap bounds served successes at the cap times
    /// the share that beat the timeout.
    pub fn success_rate(&self, limit: usize, timeout_s: f64) -> f64 {
        self.steady_state(limit as f64, timeout_s).successes_per_s
    }

    fn steady_state(&self, limit: f64, timeout_s: f64) -> SteadyState {
        let errors = self.background_error_share();
        let hangs = self.hang_share;
        let served = (1.0 - errors - hangs).max(0.0);
        let base = self.base_latency_ms / 1_000.0;
        let error_slot = self.error_latency_ms / 1_000.0;
        if hangs > 0.0 && !timeout_s.is_finite() {
            // Every slot ends up hanging forever.
            return SteadyState {
                successes_per_s: 0.0,
                cap_share: 0.0,
                held: limit,
                load_failures: 0.0,
            };
        }
        let unloaded_in_time = self.latency.truncated(base, timeout_s).1;
        let mut in_service = limit * served;
        let mut state = SteadyState {
            successes_per_s: 0.0,
            cap_share: 0.0,
            held: in_service,
            load_failures: 0.0,
        };
        for _ in 0..30 {
            let wait = self.queue_wait_s(in_service);
            let (served_slot, in_time) = if wait >= timeout_s {
                (timeout_s, 0.0)
            } else {
                let (slot, in_time) = self.latency.truncated(base, timeout_s - wait);
                (wait + slot, in_time)
            };
            let hang_slot = if hangs > 0.0 { timeout_s } else { 0.0 };
            let slot = errors * error_slot + hangs * hang_slot + served * served_slot;
            if slot <= 0.0 {
                break;
            }
            let held = limit * (hangs * hang_slot + served * served_slot) / slot;
            let offered = limit * served / slot;
            let cap = self.rate_cap_per_s;
            let (successes, cap_share) = if cap > 0.0 {
                ((offered * in_time).min(cap * in_time), offered / cap)
            } else {
                (offered * in_time, 0.0)
            };
            state = SteadyState {
                successes_per_s: successes,
                cap_share,
                held,
                load_failures: served * (unloaded_in_time - in_time).max(0.0),
            };
            // Damped: the map can oscillate past the knee.
            let next = 0.5 * in_service + 0.5 * held;
            if (next - in_service).abs() < 1e-6 * (1.0 + in_service) {
                break;
            }
            in_service = next;
        }
        state
    }

    /// The best any fixed limit in `1..=max_limit` achieves (see [`Capacity`]). Limits that
    /// overload the server in steady state are not considered: past a connection limit the
    /// requests beyond it only wait for their timeout, and a limit offering more than 99 %
    /// of a rate cap sits on the token bucket's edge, where every burst is throttled (which
    /// costs a slot for the throttle's latency, up to seconds).
    pub fn capacity(&self, max_limit: usize, timeout_s: f64) -> Capacity {
        let rates: Vec<(usize, f64)> = (1..=max_limit.max(1))
            .map(|limit| (limit, self.steady_state(limit as f64, timeout_s)))
            .take_while(|(_, state)| {
                let connections =
                    self.max_in_flight <= 0.0 || state.held <= self.max_in_flight + 1e-9;
                connections
                    && state.load_failures <= super::GOAL_OVERLOAD
                    && state.cap_share <= 0.99
            })
            .map(|(limit, state)| (limit, state.successes_per_s))
            .collect();
        let best = rates.iter().map(|r| r.1).fold(0.0, f64::max);
        let best_limit = rates
            .iter()
            .find(|(_, rate)| *rate >= 0.99 * best)
            .map_or(1, |r| r.0);
        Capacity {
            ops_per_s: best,
            best_limit,
        }
    }

    /// `None` if every value is usable, else what is wrong.
    pub(crate) fn problem(&self) -> Option<String> {
        let positive = [
            ("base_latency_ms", self.base_latency_ms),
            ("knee", self.knee),
            ("overload_exponent", self.overload_exponent),
            ("burst_s", self.burst_s),
            ("throttle_latency_ms", self.throttle_latency_ms),
            ("error_latency_ms", self.error_latency_ms),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Some(format!("{field} must be a positive number (got {value})"));
            }
        }
        let non_negative = [
            ("overload_slope", self.overload_slope),
            ("max_in_flight", self.max_in_flight),
            ("rate_cap_per_s", self.rate_cap_per_s),
            ("retry_after_ms", self.retry_after_ms),
            ("memory_base", self.memory_base),
            ("memory_per_request", self.memory_per_request),
        ];
        for (field, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Some(format!("{field} must be a number ≥ 0 (got {value})"));
            }
        }
        let shares = [
            ("background_slow_down", self.background_slow_down),
            ("background_too_many", self.background_too_many),
            ("background_internal_error", self.background_internal_error),
            ("background_reset", self.background_reset),
            ("hang_share", self.hang_share),
        ];
        for (field, value) in shares {
            if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
                return Some(format!("{field} must be in [0, 1] (got {value})"));
            }
        }
        if self.background_error_share() + self.hang_share > 1.0 {
            return Some("background shares and hang_share add up to more than 1".to_owned());
        }
        self.latency.problem()
    }

    /// These parameters with `patch` (a table of fields) applied, `fraction` of the way:
    /// numbers move in proportion, anything else switches at once.
    pub(crate) fn patched(
        &self,
        patch: &toml::Table,
        fraction: f64,
    ) -> Result<ServerParams, String> {
        let mut table = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        blend(&mut table, patch, fraction);
        table
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())
    }
}

/// Moves `into` towards `patch`: numbers by `fraction`, tables key by key, the rest at once.
fn blend(into: &mut toml::Table, patch: &toml::Table, fraction: f64) {
    for (key, target) in patch {
        let Some(current) = into.get_mut(key) else {
            into.insert(key.clone(), target.clone());
            continue;
        };
        match (number(current), number(target)) {
            (Some(from), Some(to)) => {
                *current = toml::Value::Float(from + (to - from) * fraction);
            }
            _ => match (current.as_table_mut(), target.as_table()) {
                // A distribution of the same kind morphs; of another kind, it switches.
                (Some(current), Some(target)) if current.get("kind") == target.get("kind") => {
                    blend(current, target, fraction);
                }
                _ => *current = target.clone(),
            },
        }
    }
}

fn number(value: &toml::Value) -> Option<f64> {
    match value {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_past_the_knee_caps_capacity_at_knee_over_base() {
        let server = ServerParams {
            latency: LatencyModel::Uniform { jitter: 0.0 },
            ..ServerParams::default()
        };
        let capacity = server.capacity(1_000, 2.0);
        assert!((capacity.ops_per_s - 3_200.0).abs() < 1e-6, "{capacity:?}");
        assert_eq!(capacity.best_limit, 64);
        // With fewer slots than the knee, the slots are the limit.
        assert!((server.capacity(32, 2.0).ops_per_s - 1_600.0).abs() < 1e-6);
    }

    #[test]
    fn rate_cap_bounds_capacity_and_sets_the_best_limit() {
        let server = ServerParams {
            knee: 1_000.0,
            rate_cap_per_s: 3_500.0,
            latency: LatencyModel::Uniform { jitter: 0.0 },
            ..ServerParams::default()
        };
        let capacity = server.capacity(1_000, 2.0);
        // 3,500/s × 20 ms = 70 in flight would sit on the cap: 69 is the best fixed limit.
        assert_eq!(capacity.best_limit, 69);
        assert!((capacity.ops_per_s - 3_450.0).abs() < 1e-6, "{capacity:?}");
    }

    #[test]
    fn background_errors_and_hangs_cost_what_their_slots_hold() {
        let clean = ServerParams {
            knee: 10_000.0,
            latency: LatencyModel::Uniform { jitter: 0.0 },
            ..ServerParams::default()
        };
        let noisy = ServerParams {
            background_slow_down: 0.01,
            hang_share: 0.001,
            ..clean
        };
        // 100 slots: clean 5,000/s. Noisy: 1 % answered in 5 ms and 0.1 % held 2 s.
        let slot = 0.01 * 0.005 + 0.001 * 2.0 + 0.989 * 0.020;
        let expected = 100.0 * 0.989 / slot;
        assert!((clean.success_rate(100, 2.0) - 5_000.0).abs() < 1e-6);
        assert!((noisy.success_rate(100, 2.0) - expected).abs() < 1e-6);
    }

    #[test]
    fn a_heavy_tail_waits_in_the_queue_like_everyone_else() {
        // 5 % of requests take 40× longer. Past the knee every request waits the same in
        // the queue; the tail is not stretched by the load, so the best limit is the knee
        // and pushing far past it (slow requests then time out) gains nothing.
        let server = ServerParams {
            base_latency_ms: 10.0,
            latency: LatencyModel::Bimodal {
                slow_share: 0.05,
                slow_factor: 40.0,
                jitter: 0.0,
            },
            ..ServerParams::default()
        };
        let capacity = server.capacity(1_000, 2.0);
        assert_eq!(capacity.best_limit, 64, "{capacity:?}");
        assert!(
            (capacity.ops_per_s - 64.0 / 0.0295).abs() < 1.0,
            "{capacity:?}"
        );
        assert!(server.success_rate(1_000, 2.0) < capacity.ops_per_s);
    }

    #[test]
    fn a_connection_limit_bounds_the_useful_limits() {
        let server = ServerParams {
            knee: 10_000.0,
            max_in_flight: 48.0,
            latency: LatencyModel::Uniform { jitter: 0.0 },
            ..ServerParams::default()
        };
        let capacity = server.capacity(1_000, 2.0);
        assert_eq!(capacity.best_limit, 48);
        assert!((capacity.ops_per_s - 2_400.0).abs() < 1e-6);
    }

    #[test]
    fn patches_move_numbers_in_proportion_and_switch_the_rest() {
        let server = ServerParams::default();
        let patch: toml::Table = toml::from_str(
            "knee = 32\nthrottle = \"too_many_requests\"\nlatency = { kind = \"uniform\", jitter = 0.25 }",
        )
        .unwrap();
        let half = server.patched(&patch, 0.5).unwrap();
        assert_eq!(half.knee, 48.0);
        assert_eq!(half.throttle, ThrottleStatus::TooManyRequests);
        let LatencyModel::Uniform { jitter } = half.latency else {
            panic!("still uniform: {:?}", half.latency);
        };
        assert!((jitter - 0.15).abs() < 1e-12);
        let other_kind: toml::Table =
            toml::from_str("latency = { kind = \"pareto\", alpha = 2.0 }").unwrap();
        assert_eq!(
            server.patched(&other_kind, 0.1).unwrap().latency,
            LatencyModel::Pareto { alpha: 2.0 }
        );
        let typo: toml::Table = toml::from_str("kne = 3").unwrap();
        assert!(server.patched(&typo, 1.0).is_err());
    }
}
