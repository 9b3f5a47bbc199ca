//! Per tenant (see pool-core's `tenant` module): tasks served and the p99 of their queue
//! wait, from finished tasks; beside each tenant's tasks queued and in flight, read from the
//! pool when a snapshot is taken.
//!
//! Only tasks that name a tenant are kept here (the pool-wide figures cover the others). The
//! queue-wait histogram of a tenant covers the current and the previous period of
//! [`MetricsConfig::history`](crate::MetricsConfig::history), so its p99 reflects recent
//! traffic. At most [`MetricsConfig::tenant_capacity`](crate::MetricsConfig::tenant_capacity)
//! tenants are kept by name; the tasks of the others are counted together under
//! [`OTHER_TENANTS`]. One lock for the whole book, taken once per finished tenant task.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pool_core::{Tenant, TenantStats};
use serde::{Deserialize, Serialize};

use crate::latency::HistogramTemplate;

/// The name under which tenants past the capacity are counted together.
pub const OTHER_TENANTS: &str = "*";

/// One tenant's figures in a snapshot ([`LiveStats::tenants`](crate::LiveStats::tenants)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantSnapshot {
    /// The tenant's key, or [`OTHER_TENANTS`].
    pub tenant: String,
    /// Its tasks that resolved (any outcome), since the collector started.
    pub served: u64,
    /// Tasks behind `queue_wait_p99_us` (finished in the last one to two history periods).
    pub queue_wait_count: u64,
    /// 99th percentile of their queue wait, in microseconds (0 with none).
    pub queue_wait_p99_us: u64,
    /// Its tasks queued now, as the pool says (`None` without a pool, or once it forgot the
    /// tenant, having nothing of it queued or running).
    pub queued: Option<usize>,
    /// Its tasks holding a slot now, as the pool says.
    pub in_flight: Option<usize>,
}

struct Tally {
    served: u64,
    /// Queue waits (µs) of the period that started at `period_start`, and of the one before.
    current: Histogram<u64>,
    previous: Histogram<u64>,
    period_start: Instant,
}

impl Tally {
    fn new(template: &HistogramTemplate, at: Instant) -> Self {
        Self {
            served: 0,
            current: template.empty(),
            previous: template.empty(),
            period_start: at,
        }
    }

    /// Moves the periods on to the one holding `at`.
    fn roll(&mut self, at: Instant, period: Duration) {
        let elapsed = at.saturating_duration_since(self.period_start);
        if elapsed < period {
            return;
        }
        let periods = elapsed.as_nanos() / period.as_nanos().max(1);
        if periods == 1 {
            std::mem::swap(&mut self.previous, &mut self.current);
        } else {
            self.previous.reset();
        }
        self.current.reset();
        let skipped = u32::try_from(periods).unwrap_or(u32::MAX);
        self.period_start = period
            .checked_mul(skipped)
            .and_then(|span| self.period_start.checked_add(span))
            .unwrap_or(at);
    }

    fn record(&mut self, at: Instant, queue_wait: Duration, period: Duration) {
        self.roll(at, period);
        self.served += 1;
        let micros = u64::try_from(queue_wait.as_micros()).unwrap_or(u64::MAX);
        if self.current.record(micros).is_err() {
            self.current.saturating_record(micros);
        }
    }

    fn snapshot(&mut self, tenant: String, now: Instant, period: Duration) -> TenantSnapshot {
        self.roll(now, period);
        let mut waits = self.previous.clone();
        // Histograms of one template always add (see `Latencies::merge`).
        let _ = waits.add(&self.current);
        TenantSnapshot {
            tenant,
            served: self.served,
            queue_wait_count: waits.len(),
            queue_wait_p99_us: if waits.is_empty() {
                0
            } else {
                waits.value_at_quantile(0.99)
            },
            queued: None,
            in_flight: None,
        }
    }
}

#[derive(Default)]
struct Book {
    tenants: HashMap<Tenant, Tally>,
    other: Option<Tally>,
}

/// The per-tenant figures of one collector.
pub(crate) struct TenantBook {
    capacity: usize,
    period: Duration,
    book: Mutex<Book>,
}

impl TenantBook {
    pub(crate) fn new(capacity: usize, period: Duration) -> Self {
        Self {
            capacity,
            period,
            book: Mutex::new(Book::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a finished task of `tenant`.
    pub(crate) fn record(
        &self,
        tenant: &Tenant,
        at: Instant,
        queue_wait: Duration,
        template: &HistogramTemplate,
    ) {
        let mut book = self.lock();
        let book = &mut *book;
        let named = book.tenants.contains_key(tenant) || book.tenants.len() < self.capacity;
        let tally = if named {
            book.tenants
                .entry(tenant.clone())
                .or_insert_with(|| Tally::new(template, at))
        } else {
            book.other.get_or_insert_with(|| Tally::new(template, at))
        };
        tally.record(at, queue_wait, self.period);
    }

    /// Every tenant's figures at `now`, with the counts `pool` gives for the tenants it knows
    /// (tenants it knows that finished nothing yet are listed too), sorted by name, the
    /// tenants past the capacity last.
    pub(crate) fn snapshot(&self, now: Instant, pool: &[TenantStats]) -> Vec<TenantSnapshot> {
        let mut book = self.lock();
        let book = &mut *book;
        let mut tenants: HashMap<String, TenantSnapshot> = book
            .tenants
            .iter_mut()
            .map(|(tenant, tally)| {
                let name = tenant.to_string();
                (name.clone(), tally.snapshot(name, now, self.period))
            })
            .collect();
        let mut other = book
            .other
            .as_mut()
            .map(|tally| tally.snapshot(OTHER_TENANTS.to_owned(), now, self.period));
        for stats in pool {
            let Some(tenant) = &stats.tenant else {
                continue;
            };
            let room = tenants.len() < self.capacity;
            let snapshot = match tenants.get_mut(tenant.as_str()) {
                Some(snapshot) => snapshot,
                None if room => tenants
                    .entry(tenant.to_string())
                    .or_insert_with(|| unseen(tenant.to_string())),
                None => other.get_or_insert_with(|| unseen(OTHER_TENANTS.to_owned())),
            };
            snapshot.queued = Some(snapshot.queued.unwrap_or(0) + stats.queued);
            snapshot.in_flight = Some(snapshot.in_flight.unwrap_or(0) + stats.in_flight);
        }
        let mut tenants: Vec<TenantSnapshot> = tenants.into_values().collect();
        tenants.sort_unstable_by(|a, b| a.tenant.cmp(&b.tenant));
        tenants.extend(other);
        tenants
    }
}

/// A tenant the pool knows that has finished nothing yet.
fn unseen(tenant: String) -> TenantSnapshot {
    TenantSnapshot {
        tenant,
        served: 0,
        queue_wait_count: 0,
        queue_wait_p99_us: 0,
        queued: None,
        in_flight: None,
    }
}
