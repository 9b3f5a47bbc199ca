//! What wakes waiting attempts when a task is aborted by its handle or the pool is stopped
//! with `stop_now`, and a runner's registration for it, kept from one attempt to the next.
//!
//! Every interrupt wakes every registered runner, which then reads what came (the
//! `stopped_now` flag, the engine's count of aborts and its task's state). A registration
//! with a tokio [`Notify`] takes the notify's lock twice (in, then out), and that lock is
//! one line shared by every runner on every thread: registered afresh by each waiting
//! attempt, it cost two crossings of that line per attempt and ~250 instructions. A runner
//! instead registers once, when its first attempt waits, and stays registered while it has
//! work: a later attempt only reads the count of interrupts sent, and registers again only
//! if one was sent since (its registration may have been used up), or if it is polled with
//! another waker.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Waker};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::sync::AtomicU64;

/// The engine's interrupt: a [`Notify`] and the count of what was sent through it.
#[derive(Debug, Default)]
pub(super) struct Interrupt {
    notify: Notify,
    /// Bumped once before and once after each [`Interrupt::send`]'s wake-up: odd while one
    /// is under way. A registration made at an even count that still reads the same has
    /// seen no wake-up since it was made, so it is still in the notify's list.
    sent: AtomicU64,
}

impl Interrupt {
    /// Wakes every registered runner (and every wait for admission, see
    /// [`Interrupt::notified`]). What it tells them (a flag, a count, a task's state) must be
    /// written before: a runner reads it after it has checked its registration.
    pub(super) fn send(&self) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
        self.sent.fetch_add(1, Ordering::SeqCst);
    }

    /// A one-off wait for the next interrupt (a wait for admission, rare).
    pub(super) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

/// A runner's registration with the engine's [`Interrupt`], kept across its attempts
/// (see the module's docs). Dropped when the runner parks for want of work, so an idle
/// pool is registered nowhere.
#[derive(Default)]
pub(super) struct InterruptWatch<'e> {
    /// The registration, the count of interrupts read just before it was made, and the
    /// waker it wakes.
    registered: Option<(Pin<Box<Notified<'e>>>, u64, Waker)>,
}

impl<'e> InterruptWatch<'e> {
    /// Makes sure the next interrupt wakes `cx`'s waker: registers (again) unless the
    /// registration kept from an earlier attempt still stands. Call it before reading what
    /// an interrupt tells: anything sent after that read wakes the waker.
    pub(super) fn watch(&mut self, interrupt: &'e Interrupt, cx: &mut Context<'_>) {
        loop {
            if let Some((_, sent, waker)) = &self.registered {
                if sent % 2 == 0
                    && *sent == interrupt.sent.load(Ordering::SeqCst)
                    && waker.will_wake(cx.waker())
                {
                    return;
                }
            }
            // The old registration leaves the notify's list before the new one enters.
            self.registered = None;
            // Read before the registration is made: an interrupt sent after this read
            // changes the count, whether or not it woke the registration.
            let sent = interrupt.sent.load(Ordering::SeqCst);
            let mut notified = Box::pin(interrupt.notify.notified());
            if notified.as_mut().poll(cx).is_pending() {
                self.registered = Some((notified, sent, cx.waker().clone()));
                return;
            }
            // An interrupt came between the read and the registration: register again.
        }
    }

    /// Leaves the notify's list (a runner that parks).
    pub(super) fn stop(&mut self) {
        self.registered = None;
    }
}

#[cfg(all(test, not(shuttle)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// One registration serves many checks; each interrupt wakes it once and makes the next
    /// check register again, so the interrupt after that wakes it too.
    #[test]
    fn a_kept_registration_is_woken_by_every_interrupt() {
        let interrupt = Interrupt::default();
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let mut watch = InterruptWatch::default();
        watch.watch(&interrupt, &mut cx);
        let first = watch.registered.as_ref().map(|(n, _, _)| &**n as *const _);
        watch.watch(&interrupt, &mut cx);
        let again = watch.registered.as_ref().map(|(n, _, _)| &**n as *const _);
        assert_eq!(first, again, "no interrupt came: the registration stands");
        for woken in 1..=3 {
            interrupt.send();
            assert_eq!(counter.0.load(Ordering::SeqCst), woken);
            // Without registering again, the next interrupt would find nobody.
            watch.watch(&interrupt, &mut cx);
        }
        watch.stop();
        interrupt.send();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            3,
            "a stopped watch is not woken"
        );
    }

    /// Polled with another waker, the watch registers that one.
    #[test]
    fn a_new_waker_is_registered() {
        let interrupt = Interrupt::default();
        let (one, two) = (
            Arc::new(Counter(AtomicUsize::new(0))),
            Arc::new(Counter(AtomicUsize::new(0))),
        );
        let mut watch = InterruptWatch::default();
        let waker = Waker::from(Arc::clone(&one));
        watch.watch(&interrupt, &mut Context::from_waker(&waker));
        let waker = Waker::from(Arc::clone(&two));
        watch.watch(&interrupt, &mut Context::from_waker(&waker));
        interrupt.send();
        assert_eq!(one.0.load(Ordering::SeqCst), 0);
        assert_eq!(two.0.load(Ordering::SeqCst), 1);
    }
}
