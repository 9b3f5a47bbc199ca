//! The tenants the engine knows now: each one's lane of the queue, its weight and limit, and
//! its tasks queued and in flight (see [`crate::tenant`] for how they share the slots).
//!
//! A tenant is known while it has tasks queued or holding a slot, and forgotten (its lane id
//! free for another) once it has neither, so a pool that sees a new tenant per user does
//! not grow with the users it has ever seen. A task in retry backoff or deferred keeps its
//! tenant's key, not its lane, and is placed again when it comes back. Tasks that name no
//! tenant have the lane [`LaneId::DEFAULT`], always known.

use std::collections::HashMap;

use slab::Slab;

use crate::queue::LaneId;
use crate::tenant::{Tenant, TenantConfig, TenantStats};

/// The tenants' settings from the builder.
#[derive(Debug, Clone, Default)]
pub(crate) struct TenantSettings {
    pub(crate) configured: HashMap<Tenant, TenantConfig>,
    /// For tenants not configured, and tasks without a tenant.
    pub(crate) defaults: TenantConfig,
}

impl TenantSettings {
    fn config(&self, tenant: Option<&Tenant>) -> TenantConfig {
        tenant
            .and_then(|tenant| self.configured.get(tenant))
            .copied()
            .unwrap_or(self.defaults)
    }
}

#[derive(Debug)]
struct Entry {
    tenant: Option<Tenant>,
    weight: u32,
    /// `usize::MAX` for none.
    max_in_flight: usize,
    queued: usize,
    in_flight: usize,
}

impl Entry {
    fn new(tenant: Option<Tenant>, config: TenantConfig) -> Self {
        Self {
            tenant,
            weight: config.weight.max(1),
            max_in_flight: config.max_in_flight.unwrap_or(usize::MAX),
            queued: 0,
            in_flight: 0,
        }
    }
}

#[derive(Debug)]
pub(super) struct Tenants {
    settings: TenantSettings,
    ids: HashMap<Tenant, LaneId>,
    /// By lane id; the entry of tasks without a tenant is at [`LaneId::DEFAULT`] for good.
    entries: Slab<Entry>,
}

impl Tenants {
    pub(super) fn new(settings: TenantSettings) -> Self {
        let mut entries = Slab::new();
        let default = entries.insert(Entry::new(None, settings.defaults));
        debug_assert_eq!(default, LaneId::DEFAULT.0 as usize);
        Self {
            settings,
            ids: HashMap::new(),
            entries,
        }
    }

    /// The lane of `tenant`'s tasks and its weight, making the tenant known if it is not.
    #[inline]
    pub(super) fn lane(&mut self, tenant: Option<&Tenant>) -> (LaneId, u32) {
        match tenant {
            None => (LaneId::DEFAULT, self.entries[0].weight),
            Some(tenant) => self.tenant_lane(tenant),
        }
    }

    /// [`lane`](Self::lane) of a named tenant.
    fn tenant_lane(&mut self, tenant: &Tenant) -> (LaneId, u32) {
        let lane = match self.ids.get(tenant) {
            Some(lane) => *lane,
            None => {
                let config = self.settings.config(Some(tenant));
                let index = self
                    .entries
                    .insert(Entry::new(Some(tenant.clone()), config));
                let lane = LaneId(u32::try_from(index).expect("fewer than 2^32 tenants at once"));
                self.ids.insert(tenant.clone(), lane);
                lane
            }
        };
        (lane, self.entries[lane.0 as usize].weight)
    }

    /// Whether a task of `lane` may start: its tenant is below its own limit.
    #[inline]
    pub(super) fn may_start(&self, lane: LaneId) -> bool {
        self.entries
            .get(lane.0 as usize)
            .is_none_or(|entry| entry.in_flight < entry.max_in_flight)
    }

    #[inline]
    fn entry(&mut self, lane: LaneId) -> Option<&mut Entry> {
        self.entries.get_mut(lane.0 as usize)
    }

    /// A task of `lane` entered the queue.
    #[inline]
    pub(super) fn queued(&mut self, lane: LaneId) {
        if let Some(entry) = self.entry(lane) {
            entry.queued += 1;
        }
    }

    /// A task of `lane` left the queue without starting (cancelled, expired).
    pub(super) fn unqueued(&mut self, lane: LaneId) {
        if let Some(entry) = self.entry(lane) {
            entry.queued = entry.queued.saturating_sub(1);
        }
        self.forget_if_idle(lane);
    }

    /// A task of `lane` left the queue with a slot.
    #[inline]
    pub(super) fn started(&mut self, lane: LaneId) {
        if let Some(entry) = self.entry(lane) {
            entry.queued = entry.queued.saturating_sub(1);
            entry.in_flight += 1;
        }
    }

    /// A task of `lane` gave its slot back.
    #[inline]
    pub(super) fn slot_freed(&mut self, lane: LaneId) {
        if let Some(entry) = self.entry(lane) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
        self.forget_if_idle(lane);
    }

    /// The queue was emptied (the pool stopped).
    pub(super) fn queue_drained(&mut self) {
        let lanes: Vec<LaneId> = self
            .entries
            .iter_mut()
            .map(|(index, entry)| {
                entry.queued = 0;
                LaneId(index as u32)
            })
            .collect();
        for lane in lanes {
            self.forget_if_idle(lane);
        }
    }

    /// Forgets the tenant of `lane` once it has nothing queued or in flight (the lane of
    /// tasks without one is kept).
    #[inline]
    fn forget_if_idle(&mut self, lane: LaneId) {
        if lane != LaneId::DEFAULT {
            self.forget_tenant_if_idle(lane);
        }
    }

    fn forget_tenant_if_idle(&mut self, lane: LaneId) {
        let index = lane.0 as usize;
        if self
            .entries
            .get(index)
            .is_some_and(|entry| entry.queued == 0 && entry.in_flight == 0)
        {
            let entry = self.entries.remove(index);
            if let Some(tenant) = entry.tenant {
                self.ids.remove(&tenant);
            }
        }
    }

    /// Every tenant known now (with tasks queued or in flight), and the tasks without one.
    pub(super) fn stats(&self) -> Vec<TenantStats> {
        self.entries
            .iter()
            .map(|(_, entry)| TenantStats {
                tenant: entry.tenant.clone(),
                weight: entry.weight,
                max_in_flight: (entry.max_in_flight != usize::MAX).then_some(entry.max_in_flight),
                queued: entry.queued,
                in_flight: entry.in_flight,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_known_while_it_has_work_and_its_lane_is_reused_after() {
        let mut settings = TenantSettings::default();
        settings.configured.insert(
            Tenant::from("gold"),
            TenantConfig::new().weight(5).max_in_flight(1),
        );
        let mut tenants = Tenants::new(settings);
        let gold = Tenant::from("gold");
        let (lane, weight) = tenants.lane(Some(&gold));
        assert_eq!(weight, 5);
        assert_ne!(lane, LaneId::DEFAULT);
        assert_eq!(tenants.lane(Some(&gold)).0, lane, "one lane per tenant");
        tenants.queued(lane);
        tenants.queued(lane);
        tenants.started(lane);
        assert!(!tenants.may_start(lane), "at its own limit of 1");
        assert!(tenants.may_start(LaneId::DEFAULT));
        tenants.slot_freed(lane);
        assert!(tenants.may_start(lane));
        tenants.unqueued(lane);
        assert_eq!(tenants.stats().len(), 1, "forgotten once idle");
        let (other, weight) = tenants.lane(Some(&Tenant::from("new")));
        assert_eq!(
            (other, weight),
            (lane, 1),
            "the lane id is free again; defaults apply"
        );
    }
}
