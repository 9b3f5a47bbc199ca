//! [`ByteBudget`]: the bytes a client's transfers may hold in memory at once.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget accounting unit: permits are KiB, so a `u32` request covers 4 TiB.
const UNIT: u64 = 1024;

/// A weighted cap on the bytes in flight across a client's transfers: a part or range takes
/// its size from the budget before it is read or requested and gives it back once written
/// out, so memory is bounded by the budget rather than by parts × size. A part waits for
/// budget (backpressure) and never fails for lack of it; one larger than the whole budget
/// waits until it has the whole budget to itself.
///
/// Fair: requests are served in the order they were made, so a large part is not starved
/// by a stream of small ones.
#[derive(Clone)]
pub(crate) struct ByteBudget {
    semaphore: Arc<Semaphore>,
    units: u32,
}

impl ByteBudget {
    /// A budget of `bytes` (at least 1 KiB, at most 4 TiB).
    pub(crate) fn new(bytes: u64) -> Self {
        let units = bytes.div_ceil(UNIT).clamp(1, u64::from(u32::MAX)) as u32;
        ByteBudget {
            semaphore: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// The default: a quarter of this machine's memory, at most 1 GiB (256 MiB where the
    /// memory cannot be read).
    pub(crate) fn default_bytes() -> u64 {
        const GIB: u64 = 1024 * 1024 * 1024;
        total_memory().map_or(GIB / 4, |total| (total / 4).min(GIB))
    }

    /// The budget in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Bytes not taken now.
    pub(crate) fn available(&self) -> u64 {
        self.semaphore.available_permits() as u64 * UNIT
    }

    /// Waits until `bytes` (capped at the whole budget) are free and takes them until the
    /// permit is dropped.
    pub(crate) async fn acquire(&self, bytes: u64) -> OwnedSemaphorePermit {
        Arc::clone(&self.semaphore)
            .acquire_many_owned(self.units_for(bytes))
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// Takes `bytes` (capped at the whole budget) if they are free now, without waiting: a
    /// read that can do without them (a small body read whole rather than streamed) asks
    /// this way. Bytes owed to a waiting part are not free.
    pub(crate) fn try_acquire(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.semaphore)
            .try_acquire_many_owned(self.units_for(bytes))
            .ok()
    }

    /// The units that hold `bytes`: at least one, at most the whole budget.
    fn units_for(&self, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, u64::from(self.units)) as u32
    }
}

impl ByteBudget {
    /// Gives back what `permit` holds beyond `bytes` (a part that came out shorter than
    /// the budget taken for it).
    pub(crate) fn shrink(permit: &mut OwnedSemaphorePermit, bytes: u64) {
        let keep = bytes.div_ceil(UNIT).max(1);
        let held = permit.num_permits() as u64;
        if held > keep {
            drop(permit.split((held - keep) as usize));
        }
    }
}

impl fmt::Debug for ByteBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteBudget")
            .field("bytes", &self.bytes())
            .field("available", &self.available())
            .finish()
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn total_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_part_waits_for_budget_and_gets_it_when_freed() {
        let budget = ByteBudget::new(10 * 1024);
        let first = budget.acquire(8 * 1024).await;
        let second = tokio::spawn({
            let budget = budget.clone();
            async move { budget.acquire(4 * 1024).await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        drop(first);
        let _second = second.await.unwrap();
        assert_eq!(budget.available(), 6 * 1024);
    }

    #[tokio::test]
    async fn a_part_above_the_budget_takes_the_whole_budget() {
        let budget = ByteBudget::new(4 * 1024);
        let big = budget.acquire(u64::MAX).await;
        assert_eq!(budget.available(), 0);
        drop(big);
        assert_eq!(budget.available(), 4 * 1024);
    }

    #[tokio::test]
    async fn a_short_part_gives_back_the_budget_it_does_not_use() {
        let budget = ByteBudget::new(64 * 1024);
        let mut permit = budget.acquire(32 * 1024).await;
        ByteBudget::shrink(&mut permit, 1_000);
        assert_eq!(budget.available(), 63 * 1024);
        ByteBudget::shrink(&mut permit, 0);
        assert_eq!(
            budget.available(),
            63 * 1024,
            "at least one unit stays taken"
        );
        drop(permit);
        assert_eq!(budget.available(), 64 * 1024);
    }

    #[test]
    fn extremes_are_clamped() {
        assert_eq!(ByteBudget::new(0).bytes(), 1024);
        assert_eq!(ByteBudget::new(1).bytes(), 1024);
        assert_eq!(
            ByteBudget::new(u64::MAX).bytes(),
            u64::from(u32::MAX) * 1024
        );
        let default = ByteBudget::default_bytes();
        assert!(default > 0 && default <= 1024 * 1024 * 1024);
    }
}
