//! The simulated backend: a capacity knee, jitter, and an optional hard rate cap.

use super::scenario::ServerParams;

/// What the server does with one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Response {
    /// Served; it takes this many seconds.
    Served {
        /// Service time in seconds.
        latency_s: f64,
    },
    /// Refused with "503 SlowDown" (the rate cap's bucket was empty); the answer takes this
    /// many seconds.
    Throttled {
        /// Time to the 503, in seconds.
        latency_s: f64,
    },
}

/// A backend with a knee and a rate cap, in virtual time. Deterministic for a given seed.
///
/// ```
/// use pool_tuning::sim::{Response, ServerParams, SimServer};
/// let params = ServerParams { jitter: 0.0, ..ServerParams::default() }; // knee 64, 20 ms
/// let mut server = SimServer::new(params, 7);
/// assert_eq!(server.admit(0.0, 10), Response::Served { latency_s: 0.020 });
/// // Twice the knee in flight: twice the latency (requests queue).
/// assert_eq!(server.admit(0.0, 128), Response::Served { latency_s: 0.040 });
/// ```
#[derive(Debug, Clone)]
pub struct SimServer {
    params: ServerParams,
    rng: fastrand::Rng,
    tokens: f64,
    refilled_at_s: f64,
}

impl SimServer {
    /// A server with these parameters, its RNG seeded with `seed`, its token bucket full.
    pub fn new(params: ServerParams, seed: u64) -> Self {
        let mut server = Self {
            params,
            rng: fastrand::Rng::with_seed(seed),
            tokens: 0.0,
            refilled_at_s: 0.0,
        };
        server.tokens = server.burst();
        server
    }

    /// The current parameters.
    pub fn params(&self) -> &ServerParams {
        &self.params
    }

    /// Changes the parameters from now on (requests already admitted keep their latency).
    pub fn set_params(&mut self, params: ServerParams) {
        self.params = params;
        self.tokens = self.tokens.min(self.burst());
    }

    fn burst(&self) -> f64 {
        self.params
            .rate_cap_per_s
            .map_or(f64::INFINITY, |cap| (cap * self.params.burst_s).max(1.0))
    }

    /// A request arrives at `now_s` with `in_flight` requests in flight (itself included).
    pub fn admit(&mut self, now_s: f64, in_flight: usize) -> Response {
        let random = self.params.random_throttle_fraction;
        // Drawn only when set, so scenarios without it keep their random sequence.
        if random > 0.0 && self.rng.f64() < random {
            let latency_s = self.jittered(self.params.throttle_latency_ms / 1_000.0);
            return Response::Throttled { latency_s };
        }
        if let Some(cap) = self.params.rate_cap_per_s {
            let elapsed = (now_s - self.refilled_at_s).max(0.0);
            self.tokens = (self.tokens + elapsed * cap).min(self.burst());
            self.refilled_at_s = now_s;
            if self.tokens < 1.0 {
                let latency_s = self.jittered(self.params.throttle_latency_ms / 1_000.0);
                return Response::Throttled { latency_s };
            }
            self.tokens -= 1.0;
        }
        let latency_s = self.jittered(self.params.mean_latency_s(in_flight));
        Response::Served { latency_s }
    }

    fn jittered(&mut self, latency_s: f64) -> f64 {
        let jitter = self.params.jitter;
        if jitter == 0.0 {
            return latency_s;
        }
        let noise = (self.rng.f64() * 2.0 - 1.0) * jitter;
        latency_s * (1.0 + noise)
    }

    /// Share of memory in use with `in_flight` requests in flight.
    pub fn memory_fraction(&self, in_flight: usize) -> f64 {
        (self.params.memory_base + self.params.memory_per_request * in_flight as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(cap: f64) -> SimServer {
        let params = ServerParams {
            knee: 1_000.0,
            jitter: 0.0,
            rate_cap_per_s: Some(cap),
            burst_s: 0.01,
            ..ServerParams::default()
        };
        SimServer::new(params, 1)
    }

    #[test]
    fn rate_cap_throttles_past_the_burst_and_refills_with_time() {
        let mut server = capped(1_000.0); // burst 10
        let served = (0..15)
            .filter(|_| matches!(server.admit(0.0, 1), Response::Served { .. }))
            .count();
        assert_eq!(served, 10);
        // 5 ms later, 5 tokens are back.
        let served = (0..15)
            .filter(|_| matches!(server.admit(0.005, 1), Response::Served { .. }))
            .count();
        assert_eq!(served, 5);
    }

    #[test]
    fn jitter_stays_within_its_share_and_is_seeded() {
        let params = ServerParams {
            jitter: 0.3,
            ..ServerParams::default()
        };
        let run = |seed| {
            let mut server = SimServer::new(params, seed);
            (0..1_000)
                .map(|_| match server.admit(0.0, 1) {
                    Response::Served { latency_s } => latency_s,
                    Response::Throttled { .. } => unreachable!("no cap"),
                })
                .collect::<Vec<_>>()
        };
        let latencies = run(3);
        assert!(latencies.iter().all(|&l| (0.014..=0.026).contains(&l)));
        assert_eq!(latencies, run(3));
        assert_ne!(latencies, run(4));
    }
}
