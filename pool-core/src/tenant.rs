//! Tenants: who a task is for, and how the slots of one priority level are shared between
//! them.
//!
//! A task names its tenant with [`TaskOptions::tenant`](crate::TaskOptions::tenant); tasks
//! that name none share one tenant of their own. Within a priority level, the tenants with
//! tasks waiting take turns — deficit round robin with a cost of one per task started: in
//! each round a tenant starts up to its weight in tasks, then the next tenant's turn comes.
//! So a saturated pool starts (and, for tasks alike, completes) tasks in proportion to the
//! weights; a tenant with nothing waiting leaves the round and its share goes to the others;
//! a tenant that starts waiting joins the end of the round, so its first task starts within
//! one round. Between levels, priorities and aging decide as before (a level's age is the
//! age of the task it would start next), so fair share never starves a task that aging
//! would not.
//!
//! Why deficit round robin and not virtual-time weighted fair queueing: the cost of a task
//! (how long it will hold its slot) is unknown when it starts, so both schedulers would
//! charge one unit per task, and then they give the same shares; round robin does it in
//! O(1) per dispatch with integer counters, where WFQ keeps a virtual clock per level whose
//! tags must be re-based for tenants that come back from idle, and a heap of tenants
//! (O(log T)). Round robin's price is burstiness: a tenant of weight `w` starts up to `w`
//! tasks back to back; over any whole round the shares are exact.
//!
//! A tenant may also have a limit of its own ([`TenantConfig::max_in_flight`]): at the limit
//! its tasks wait, without holding up other tenants' tasks.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The key of a tenant: any string (a customer id, a transfer id, a bucket).
///
/// Cheap to clone (one `Arc`).
///
/// ```
/// use pool_core::Tenant;
/// let acme = Tenant::from("acme");
/// assert_eq!(acme.as_str(), "acme");
/// assert_eq!(acme, Tenant::from(String::from("acme")));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

impl Tenant {
    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Tenant {
    fn from(key: &str) -> Self {
        Tenant(Arc::from(key))
    }
}

impl From<String> for Tenant {
    fn from(key: String) -> Self {
        Tenant(Arc::from(key))
    }
}

impl From<Arc<str>> for Tenant {
    fn from(key: Arc<str>) -> Self {
        Tenant(key)
    }
}

impl From<&Tenant> for Tenant {
    fn from(tenant: &Tenant) -> Self {
        tenant.clone()
    }
}

impl Borrow<str> for Tenant {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Tenant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Tenant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Tenant::from)
    }
}

/// How a tenant shares the pool: its weight, and optionally a limit of its own.
///
/// Given per tenant with [`PoolBuilder::tenant`](crate::PoolBuilder::tenant); tenants not
/// named there (and tasks without a tenant) take
/// [`PoolBuilder::tenant_defaults`](crate::PoolBuilder::tenant_defaults), by default weight 1
/// and no limit of their own.
///
/// ```
/// use pool_core::TenantConfig;
/// let gold = TenantConfig::new().weight(5).max_in_flight(8);
/// assert_eq!(gold.weight_value(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantConfig {
    pub(crate) weight: u32,
    pub(crate) max_in_flight: Option<usize>,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            weight: 1,
            max_in_flight: None,
        }
    }
}

impl TenantConfig {
    /// Weight 1, no limit of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tasks this tenant starts per round, against the other tenants' weights in the same
    /// priority level. Default 1. Must be at least 1 (0 is a
    /// [`ConfigError`](crate::ConfigError) at `build()`); `u32::MAX` works (the others then
    /// get one task per four billion of this tenant's while it keeps tasks waiting).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Most tasks of this tenant running at once, whatever the pool's limit. Default: none.
    /// Must be at least 1 (0 is a [`ConfigError`](crate::ConfigError) at `build()`);
    /// `usize::MAX` is no limit.
    pub fn max_in_flight(mut self, tasks: usize) -> Self {
        self.max_in_flight = Some(tasks);
        self
    }

    /// The weight.
    pub fn weight_value(&self) -> u32 {
        self.weight
    }

    /// The limit of its own, if any.
    pub fn max_in_flight_value(&self) -> Option<usize> {
        self.max_in_flight
    }
}

/// One tenant's share of a pool now, from [`Pool::tenants`](crate::Pool::tenants).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TenantStats {
    /// The tenant; `None` for tasks that name none.
    pub tenant: Option<Tenant>,
    /// Its weight.
    pub weight: u32,
    /// Its limit of its own, if any.
    pub max_in_flight: Option<usize>,
    /// Its tasks waiting in the queue.
    pub queued: usize,
    /// Its tasks holding a slot (running an attempt, or waiting for admission).
    pub in_flight: usize,
}
