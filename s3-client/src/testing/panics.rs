//! Keeping test output readable when a [`ChaosStore`](crate::ChaosStore) panics on purpose.

use std::sync::Once;

/// The start of every panic message a `ChaosStore` injects.
pub const INJECTED_PANIC_PREFIX: &str = "ChaosStore: injected panic";

/// Installs (once per process) a panic hook that stays silent for panics a
/// [`ChaosStore`](crate::ChaosStore) injected and hands every other panic to the hook that
/// was there before, so a chaos run with thousands of injected panics prints only real ones.
pub fn quiet_injected_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|message| message.starts_with(INJECTED_PANIC_PREFIX));
            if !injected {
                previous(info);
            }
        }));
    });
}
