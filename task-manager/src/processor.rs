//! What a run does to each item.

use std::future::Future;

/// What a run does to each item: a closure `Fn(Item) -> Fut` whose future resolves to a
/// `Result`, called once per attempt with a clone of the item (so a failed attempt can be
/// retried).
///
/// Every such closure is one, so callers pass closures and never name this trait; it exists
/// so that each run method says "a processor" with one bound instead of four (closure,
/// future, value, error — each `Send + 'static`). Like pool-core's
/// [`MakeAttempt`](pool_core::MakeAttempt), the value and the error are associated types.
/// `Fn` is its supertrait, which is what lets a closure's argument type be inferred from
/// the items (`|n| async move { n * 2 }`), and why it is implemented for closures (and
/// functions) only.
pub trait Processor<Item>:
    Fn(Item) -> <Self as Processor<Item>>::Attempt + Send + Sync + 'static
{
    /// What a successful attempt gives.
    type Ok: Send + 'static;
    /// What a failed attempt gives.
    type Error: Send + 'static;
    /// One attempt on one item.
    type Attempt: Future<Output = Result<Self::Ok, Self::Error>> + Send + 'static;
}

impl<Item, F, Fut, T, E> Processor<Item> for F
where
    F: Fn(Item) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Ok = T;
    type Error = E;
    type Attempt = Fut;
}
