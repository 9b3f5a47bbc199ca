//! A task's one allocation and the thin pointers that share it — the only unsafe code in
//! pool-core, behind a small safe API.
//!
//! The allocation is a [`Header`] followed by the task. The header holds a pointer to the task
//! type's table of functions, one reference count and the count of attempts started (in the
//! four bytes the header would otherwise pad). Every reference is one pointer (8 bytes) to
//! that header:
//! - [`TaskRef`]: the engine's (queue slots, parked entries, jobs), the task as
//!   [`ErasedTask`];
//! - [`ResultRef`]: the caller's handle, the task as [`ResultSlot`] of its value and error.
//!
//! An attempt's future borrows its task (the runner holds the task's [`TaskRef`] while the
//! attempt runs): no reference is counted per attempt.
//!
//! `Arc<dyn ErasedTask>` was 16 bytes a reference, and its allocation carried a strong and a
//! weak count where one count does (nothing holds a task weakly). Where tokio's `RawTask`
//! keeps its state in the header and its functions in a static table, so does this module;
//! it knows nothing of what a task does.
//!
//! [`Storage`] is the other half: a task's fields stored flat, the fixed ones beside the ones
//! its lock guards, with a one-byte lock. A `Mutex<Body>` keeps the lock, the body and the
//! fixed fields in separate padded blocks; flat, a no-op task's cell packs into 56 bytes
//! with its header (a 64-byte malloc chunk; see the size tests in `cell.rs`).
//!
//! [`InlineFuture`] is the third: an attempt's future with its type hidden, stored in place
//! when small, else in its runner's [`AttemptBuffer`] — one allocation a runner keeps and
//! reuses, not one per attempt.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::cell::ResultSlot;
use crate::engine::job::ErasedTask;
use crate::sync::{lock_task, AtomicU32, TaskLock, TaskLockGuard};
use crate::task::TaskId;

/// More references than this to one task can only come from leaked clones: abort rather
/// than let the count wrap (as `Arc` does).
const MAX_REFS: u32 = u32::MAX / 2;

/// What the engine's side calls through a [`TaskRef`], for one task type `X`.
struct Vtable {
    /// The task as `&dyn ErasedTask`.
    erased: unsafe fn(NonNull<Header>) -> *const dyn ErasedTask,
    /// Drops the task and frees the allocation.
    drop: unsafe fn(NonNull<Header>),
}

/// The table of a task with a handle: the engine's table first, so that a pointer to this
/// is a pointer to that (`repr(C)`), then what the handle calls.
#[repr(C)]
struct ResultVtable<T, E> {
    task: Vtable,
    /// The task as `&dyn ResultSlot<T, E>`.
    slot: unsafe fn(NonNull<Header>) -> *const dyn ResultSlot<T, E>,
}

/// The start of every task's allocation.
#[repr(C)]
struct Header {
    /// Points to a `Vtable` — the `task` field of a `ResultVtable<T, E>` if the task was made
    /// by [`new_task`] with those `T` and `E` (the pointer then covers the whole table).
    vtable: NonNull<Vtable>,
    /// References alive; the allocation is freed when it reaches zero.
    refs: AtomicU32,
    /// Attempts started so far.
    attempts: AtomicU32,
}

/// A task's allocation: `repr(C)`, so a pointer to it is a pointer to its header.
#[repr(C)]
struct Alloc<X> {
    header: Header,
    task: X,
}

/// The table of functions for task type `X` (without a handle: tests' tasks).
#[cfg(test)]
fn vtable<X: ErasedTask>() -> &'static Vtable {
    &Vtable {
        erased: erased::<X>,
        drop: drop_alloc::<X>,
    }
}

/// The table of functions for task type `X` with a handle of `T` and `E`.
fn result_vtable<X, T, E>() -> &'static ResultVtable<T, E>
where
    X: ErasedTask + ResultSlot<T, E>,
    T: 'static,
    E: 'static,
{
    &ResultVtable {
        task: Vtable {
            erased: erased::<X>,
            drop: drop_alloc::<X>,
        },
        slot: slot::<X, T, E>,
    }
}

/// # Safety
/// `ptr` is the header of a live `Alloc<X>`.
unsafe fn erased<X: ErasedTask>(ptr: NonNull<Header>) -> *const dyn ErasedTask {
    // SAFETY: the caller's promise; the task lives as long as the allocation.
    let task: &X = unsafe { &(*ptr.cast::<Alloc<X>>().as_ptr()).task };
    task as *const X as *const dyn ErasedTask
}

/// # Safety
/// `ptr` is the header of a live `Alloc<X>`.
unsafe fn slot<X: ErasedTask + ResultSlot<T, E>, T, E>(
    ptr: NonNull<Header>,
) -> *const dyn ResultSlot<T, E> {
    // SAFETY: the caller's promise.
    let task: &X = unsafe { &(*ptr.cast::<Alloc<X>>().as_ptr()).task };
    task as *const X as *const dyn ResultSlot<T, E>
}

/// # Safety
/// `ptr` is the header of an `Alloc<X>` made by [`allocate`], whose count has just reached
/// zero: nothing else can reach it.
unsafe fn drop_alloc<X>(ptr: NonNull<Header>) {
    // SAFETY: it came from `Box::into_raw` of an `Alloc<X>` (in `allocate`), and no
    // reference is left to use it.
    drop(unsafe { Box::from_raw(ptr.cast::<Alloc<X>>().as_ptr()) });
}

/// Moves `task` into a new allocation with `refs` references.
fn allocate<X>(task: X, vtable: NonNull<Vtable>, refs: u32) -> NonNull<Header> {
    let alloc = Box::new(Alloc {
        header: Header {
            vtable,
            refs: AtomicU32::new(refs),
            attempts: AtomicU32::new(0),
        },
        task,
    });
    NonNull::from(Box::leak(alloc)).cast::<Header>()
}

/// # Safety
/// `ptr` is the header of a live allocation (the caller holds a reference).
unsafe fn header<'a>(ptr: NonNull<Header>) -> &'a Header {
    // SAFETY: the caller's promise; the header is never written through a `&mut`.
    unsafe { ptr.as_ref() }
}

/// Adds a reference.
///
/// # Safety
/// `ptr` is the header of a live allocation (the caller holds a reference).
unsafe fn retain(ptr: NonNull<Header>) {
    // SAFETY: the caller's promise.
    let header = unsafe { header(ptr) };
    // Relaxed, as `Arc::clone`: a new reference is made from one the caller holds, which
    // keeps the task alive meanwhile.
    if header.refs.fetch_add(1, Ordering::Relaxed) > MAX_REFS {
        std::process::abort();
    }
}

/// Lets go of a reference; the last one drops the task and frees its allocation.
///
/// # Safety
/// `ptr` is the header of a live allocation, and the caller gives up the reference it held.
unsafe fn release(ptr: NonNull<Header>) {
    // SAFETY: the caller's promise: its reference keeps the header alive until here.
    let header = unsafe { header(ptr) };
    // Release, then an acquiring load by the last one, as `Arc`'s drop: every use of the
    // task through other references happens before it is dropped.
    if header.refs.fetch_sub(1, Ordering::Release) != 1 {
        return;
    }
    let _ = header.refs.load(Ordering::Acquire);
    // SAFETY: the count reached zero: no reference is left, and the table is the one the
    // allocation was made with (`allocate`), whose `drop` matches its type.
    unsafe {
        let drop = header.vtable.as_ref().drop;
        drop(ptr);
    }
}

/// The engine's reference to a task: 8 bytes, derefs to [`ErasedTask`].
pub(crate) struct TaskRef {
    ptr: NonNull<Header>,
}

// SAFETY: the task behind it is an `ErasedTask`, which is `Send + Sync`; the count and the
// attempts are atomics.
unsafe impl Send for TaskRef {}
// SAFETY: as above.
unsafe impl Sync for TaskRef {}

impl TaskRef {
    /// `task` in an allocation of its own, without a handle.
    #[cfg(test)]
    pub(crate) fn new<X: ErasedTask>(task: X) -> Self {
        Self {
            ptr: allocate(task, NonNull::from(vtable::<X>()), 1),
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: this reference keeps the allocation alive.
        unsafe { header(self.ptr) }
    }

    /// Attempts started so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.header().attempts.load(Ordering::Acquire)
    }

    /// Counts a new attempt and returns its number (1 for the first). Only the holder of
    /// the task's job begins its attempts (one runner at a time, handed on through the
    /// engine's lock), so a load and a store count it: no read-modify-write per attempt.
    pub(crate) fn begin_attempt(&self) -> u32 {
        let attempts = &self.header().attempts;
        let attempt = attempts.load(Ordering::Relaxed).saturating_add(1);
        attempts.store(attempt, Ordering::Release);
        attempt
    }
}

impl Deref for TaskRef {
    type Target = dyn ErasedTask;

    fn deref(&self) -> &Self::Target {
        // SAFETY: the table is the allocation's own; the task lives as long as this
        // reference, which the returned borrow cannot outlive.
        unsafe {
            let erased = self.header().vtable.as_ref().erased;
            &*erased(self.ptr)
        }
    }
}

impl Clone for TaskRef {
    fn clone(&self) -> Self {
        // SAFETY: this reference keeps the allocation alive.
        unsafe { retain(self.ptr) };
        Self { ptr: self.ptr }
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: this reference is given up here, once.
        unsafe { release(self.ptr) }
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id())
            .field("priority", &self.priority())
            .field("attempts", &self.attempts())
            .finish_non_exhaustive()
    }
}

/// The handle's reference to its task: 8 bytes, the task as a [`ResultSlot`] of `T` and
/// `E`.
pub(crate) struct ResultRef<T, E> {
    ptr: NonNull<Header>,
    /// Only `T` and `E` values come out; the task's own type is hidden.
    _result: PhantomData<fn() -> (T, E)>,
}

// SAFETY: the task behind it is a `ResultSlot`, which is `Send + Sync`; the count and the
// attempts are atomics. The `T` and `E` it hands out move to whichever thread takes them, so
// they must be `Send` (a `Send + Sync` task holding them implies it; the bound says it here).
unsafe impl<T: Send, E: Send> Send for ResultRef<T, E> {}
// SAFETY: as above: a shared reference may take the value out, on any thread.
unsafe impl<T: Send, E: Send> Sync for ResultRef<T, E> {}

impl<T, E> ResultRef<T, E> {
    fn header(&self) -> &Header {
        // SAFETY: this reference keeps the allocation alive.
        unsafe { header(self.ptr) }
    }

    /// The task as its handle sees it, and the count of attempts it started.
    pub(crate) fn slot(&self) -> (&dyn ResultSlot<T, E>, &AtomicU32) {
        let header = self.header();
        // SAFETY: a `ResultRef<T, E>` is only made by `new_task` with a `ResultVtable<T, E>`
        // (the header's pointer to it covers the whole table); the task lives as long as
        // this reference, which the returned borrow cannot outlive.
        let slot = unsafe {
            let slot = header.vtable.cast::<ResultVtable<T, E>>().as_ref().slot;
            &*slot(self.ptr)
        };
        (slot, &header.attempts)
    }
}

impl<T, E> Drop for ResultRef<T, E> {
    fn drop(&mut self) {
        // SAFETY: this reference is given up here, once.
        unsafe { release(self.ptr) }
    }
}

/// A new task with its handle's reference: one allocation, two references.
pub(crate) fn new_task<X, T, E>(task: X) -> (TaskRef, ResultRef<T, E>)
where
    X: ErasedTask + ResultSlot<T, E>,
    T: 'static,
    E: 'static,
{
    let vtable = NonNull::from(result_vtable::<X, T, E>()).cast::<Vtable>();
    let ptr = allocate(task, vtable, 2);
    (
        TaskRef { ptr },
        ResultRef {
            ptr,
            _result: PhantomData,
        },
    )
}

/// A task's fields, stored flat so that they pack: the fixed ones (`id`, `priority`, its
/// classifier), read freely, and three that its one-byte lock guards (`P`, `K`, `L`: the
/// task's phase, its cold box and its last result).
pub(crate) struct Storage<C, P, K, L> {
    pub(crate) id: TaskId,
    pub(crate) priority: i32,
    pub(crate) classify: C,
    lock: TaskLock,
    phase: UnsafeCell<P>,
    cold: UnsafeCell<K>,
    last: UnsafeCell<L>,
}

// SAFETY: the guarded fields are only reached through a `Guard`, which holds the lock, so
// sharing the storage shares `P`, `K` and `L` only one thread at a time (as `Mutex<T>`
// needs `T: Send` to be `Sync`); the fixed fields are shared as they are.
unsafe impl<C: Sync, P: Send, K: Send, L: Send> Sync for Storage<C, P, K, L> {}

impl<C, P, K, L> Storage<C, P, K, L> {
    pub(crate) fn new(id: TaskId, priority: i32, classify: C, phase: P, cold: K, last: L) -> Self {
        Self {
            id,
            priority,
            classify,
            lock: TaskLock::default(),
            phase: UnsafeCell::new(phase),
            cold: UnsafeCell::new(cold),
            last: UnsafeCell::new(last),
        }
    }

    /// Takes the lock: the guarded fields through the guard until it drops.
    pub(crate) fn lock(&self) -> Guard<'_, C, P, K, L> {
        Guard {
            storage: self,
            _lock: lock_task(&self.lock),
        }
    }
}

/// The guarded fields of a [`Storage`], while its lock is held.
pub(crate) struct Guard<'a, C, P, K, L> {
    storage: &'a Storage<C, P, K, L>,
    _lock: TaskLockGuard<'a>,
}

impl<C, P, K, L> Guard<'_, C, P, K, L> {
    /// The three guarded fields.
    pub(crate) fn parts(&mut self) -> (&mut P, &mut K, &mut L) {
        let storage = self.storage;
        // SAFETY: this guard holds the lock, and the borrows are tied to `&mut self`: no
        // other reference to these fields exists while they live.
        unsafe {
            (
                &mut *storage.phase.get(),
                &mut *storage.cold.get(),
                &mut *storage.last.get(),
            )
        }
    }

    pub(crate) fn phase(&mut self) -> &mut P {
        self.parts().0
    }

    pub(crate) fn cold(&mut self) -> &mut K {
        self.parts().1
    }

    pub(crate) fn last(&mut self) -> &mut L {
        self.parts().2
    }
}

/// A task's cold box `K` or, while it has none, a weak reference to its sink `S` (what its
/// handle's `abort` must tell): one pointer, told apart by its lowest bit — set for the sink
/// (both pointees are aligned to 2 or more, which is checked at compile time). A plain task
/// thus reaches its pool without a field of its own, and its handle without one either.
pub(crate) struct ColdOrSink<K, S> {
    bits: NonNull<()>,
    _owns: PhantomData<(Box<K>, Weak<S>)>,
}

/// The tag of a [`ColdOrSink`] that holds the sink.
const SINK: usize = 1;

// SAFETY: it owns a `Box<K>` or a `Weak<S>`, which are `Send` when these bounds hold.
unsafe impl<K: Send, S: Send + Sync> Send for ColdOrSink<K, S> {}
// SAFETY: as above, for `Sync`.
unsafe impl<K: Sync, S: Send + Sync> Sync for ColdOrSink<K, S> {}

impl<K, S> ColdOrSink<K, S> {
    /// No cold box yet: `sink`, weakly.
    pub(crate) fn sink(sink: &Arc<S>) -> Self {
        const { assert!(std::mem::align_of::<S>() >= 2) };
        let raw = Weak::into_raw(Arc::downgrade(sink)).cast_mut().cast::<()>();
        let tagged = raw.map_addr(|addr| addr | SINK);
        Self {
            bits: NonNull::new(tagged).expect("a pointer with its low bit set is not null"),
            _owns: PhantomData,
        }
    }

    /// A cold box.
    pub(crate) fn cold(cold: Box<K>) -> Self {
        const { assert!(std::mem::align_of::<K>() >= 2) };
        Self {
            bits: NonNull::from(Box::leak(cold)).cast::<()>(),
            _owns: PhantomData,
        }
    }

    fn holds_sink(&self) -> bool {
        self.bits.as_ptr().addr() & SINK != 0
    }

    /// The sink's pointer, untagged (only when it holds the sink).
    fn sink_ptr(&self) -> *const S {
        self.bits.as_ptr().map_addr(|addr| addr & !SINK).cast::<S>()
    }

    /// The cold box, if there is one.
    pub(crate) fn get(&self) -> Option<&K> {
        if self.holds_sink() {
            return None;
        }
        // SAFETY: untagged, it is the box's pointer (from `cold`), owned by `self` and
        // borrowed no longer than `self` is.
        Some(unsafe { self.bits.cast::<K>().as_ref() })
    }

    /// The cold box, if there is one.
    pub(crate) fn get_mut(&mut self) -> Option<&mut K> {
        if self.holds_sink() {
            return None;
        }
        // SAFETY: as in `get`, borrowed mutably as `self` is.
        Some(unsafe { self.bits.cast::<K>().as_mut() })
    }

    /// The sink, if this holds it (no cold box yet) and it is still alive.
    pub(crate) fn upgrade_sink(&self) -> Option<Arc<S>> {
        if !self.holds_sink() {
            return None;
        }
        // SAFETY: tagged, it is `Weak::into_raw` of a weak reference this owns (from
        // `sink`); it is borrowed here, not taken (`ManuallyDrop`).
        let weak = std::mem::ManuallyDrop::new(unsafe { Weak::from_raw(self.sink_ptr()) });
        weak.upgrade()
    }

    /// The cold box, made first by `make` from the sink if there is none.
    pub(crate) fn get_or_insert_with(&mut self, make: impl FnOnce(Weak<S>) -> K) -> &mut K {
        if self.holds_sink() {
            // SAFETY: as in `upgrade_sink`: borrowed, and cloned for `make`; the one `self`
            // owns is dropped with it below (or kept, if `make` panics).
            let weak = Weak::clone(&std::mem::ManuallyDrop::new(unsafe {
                Weak::from_raw(self.sink_ptr())
            }));
            *self = Self::cold(Box::new(make(weak)));
        }
        self.get_mut().expect("a cold box was just made")
    }
}

impl<K, S> Drop for ColdOrSink<K, S> {
    fn drop(&mut self) {
        if self.holds_sink() {
            // SAFETY: as in `upgrade_sink`, taken once, here.
            drop(unsafe { Weak::from_raw(self.sink_ptr()) });
        } else {
            // SAFETY: untagged, it is the box's pointer (from `cold`), owned and dropped once.
            drop(unsafe { Box::from_raw(self.bits.cast::<K>().as_ptr()) });
        }
    }
}

/// Words an attempt's future may take to be stored in place rather than in its runner's
/// [`AttemptBuffer`].
const INLINE_WORDS: usize = 4;

/// Where a runner keeps the futures of its attempts that are too large to be stored in place:
/// one allocation, reused by every attempt whose future fits it and replaced by a larger one
/// when one does not. A runner runs one attempt at a time, so a pool's runners need as
/// many of these as run at once — not an allocation per attempt, as a box would be (a real
/// request's future is hundreds of bytes).
#[derive(Default)]
pub(crate) struct AttemptBuffer {
    /// The kept allocation and its layout; taken by the future stored in it while that
    /// future lives (a future leaked there keeps it: the buffer then makes another).
    kept: Option<(NonNull<u8>, Layout)>,
}

// SAFETY: it owns its allocation (bytes, nothing in them while kept here), as a
// `Box<[u8]>` would.
unsafe impl Send for AttemptBuffer {}

impl AttemptBuffer {
    /// Memory for a value of `layout` (not zero-sized), taken out of the buffer: the kept
    /// allocation if it fits, else a new one (the kept one freed).
    fn take(&mut self, layout: Layout) -> (NonNull<u8>, Layout) {
        if let Some((ptr, kept)) = self.kept.take() {
            if kept.size() >= layout.size() && kept.align() >= layout.align() {
                return (ptr, kept);
            }
            // SAFETY: allocated below with `kept`, and nothing lives in it while kept.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), kept) };
        }
        // SAFETY: `layout` is not zero-sized (a zero-sized future is stored in place).
        let ptr = unsafe { std::alloc::alloc(layout) };
        match NonNull::new(ptr) {
            Some(ptr) => (ptr, layout),
            None => std::alloc::handle_alloc_error(layout),
        }
    }

    /// The allocation of the future stored in it is free again.
    fn give_back(&mut self, memory: (NonNull<u8>, Layout)) {
        if let Some((ptr, layout)) = self.kept.replace(memory) {
            // SAFETY: allocated by `take` with `layout`, and nothing lives in it.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        }
    }

    /// The kept allocation's size, if there is one.
    #[cfg(test)]
    fn kept_size(&self) -> Option<usize> {
        self.kept.map(|(_, layout)| layout.size())
    }
}

impl Drop for AttemptBuffer {
    fn drop(&mut self) {
        if let Some((ptr, layout)) = self.kept.take() {
            // SAFETY: allocated by `take` with `layout`, and nothing lives in it.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        }
    }
}

/// The future of one attempt with its type hidden: stored in place when it is small (a quick
/// task's), in its runner's [`AttemptBuffer`] otherwise — no allocation per attempt either way.
/// It may borrow (its task, for `'a`). Once polled it stays where it is: it is `!Unpin` and
/// polled only through `Pin<&mut Self>`.
pub(crate) struct InlineFuture<'a, O: 'static> {
    inner: Inner<'a, O>,
    /// `Send` only as built by [`InlineFuture::new`] (from a `Send` future), never `Sync`.
    _not_auto: PhantomData<*const ()>,
    _pinned: std::marker::PhantomPinned,
}

enum Inner<'a, O: 'static> {
    /// The future's bytes, and the functions of its type.
    Inline {
        data: std::mem::MaybeUninit<[usize; INLINE_WORDS]>,
        vtable: &'static InlineVtable<O>,
        /// What the future borrows.
        _borrows: PhantomData<&'a ()>,
    },
    /// The future lives in `memory`, taken from `buffer` (given back when it is dropped).
    InBuffer {
        memory: (NonNull<u8>, Layout),
        vtable: &'static InlineVtable<O>,
        buffer: &'a mut AttemptBuffer,
    },
}

struct InlineVtable<O> {
    poll: unsafe fn(*mut (), &mut std::task::Context<'_>) -> std::task::Poll<O>,
    drop: unsafe fn(*mut ()),
}

fn inline_vtable<F>() -> &'static InlineVtable<F::Output>
where
    F: std::future::Future,
    F::Output: 'static,
{
    &InlineVtable {
        poll: poll_inline::<F>,
        drop: drop_inline::<F>,
    }
}

/// # Safety
/// `data` holds a live, pinned `F`.
unsafe fn poll_inline<F: std::future::Future>(
    data: *mut (),
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<F::Output> {
    // SAFETY: the caller's promise: the `F` is never moved while this `InlineFuture` lives.
    let future = unsafe { std::pin::Pin::new_unchecked(&mut *data.cast::<F>()) };
    future.poll(cx)
}

/// # Safety
/// `data` holds a live `F`, dropped here once.
unsafe fn drop_inline<F>(data: *mut ()) {
    // SAFETY: the caller's promise.
    unsafe { std::ptr::drop_in_place(data.cast::<F>()) }
}

// SAFETY: built only from a `Send` future (`new`); the table is plain functions, and the
// buffer it may borrow is `Send`.
unsafe impl<O: 'static> Send for InlineFuture<'_, O> {}

impl<'a, O: 'static> InlineFuture<'a, O> {
    /// `future`, in place if it fits there, else in `buffer`.
    pub(crate) fn new<F>(future: F, buffer: &'a mut AttemptBuffer) -> Self
    where
        F: std::future::Future<Output = O> + Send + 'a,
    {
        let layout = Layout::new::<F>();
        let words = Layout::new::<[usize; INLINE_WORDS]>();
        let inner = if layout.size() <= words.size() && layout.align() <= words.align() {
            let mut data = std::mem::MaybeUninit::<[usize; INLINE_WORDS]>::uninit();
            // SAFETY: `F` fits in `data`'s size and alignment (checked above); `data` owns
            // it from here, and `Drop` drops it once.
            unsafe { data.as_mut_ptr().cast::<F>().write(future) };
            Inner::Inline {
                data,
                vtable: inline_vtable::<F>(),
                _borrows: PhantomData,
            }
        } else {
            // Not zero-sized: a zero-sized future fits in place.
            let memory = buffer.take(layout);
            // SAFETY: `memory` is at least `layout`'s size and alignment, and holds nothing;
            // it is this future's until `Drop` drops the `F` (once) and gives it back.
            unsafe { memory.0.as_ptr().cast::<F>().write(future) };
            Inner::InBuffer {
                memory,
                vtable: inline_vtable::<F>(),
                buffer,
            }
        };
        Self {
            inner,
            _not_auto: PhantomData,
            _pinned: std::marker::PhantomPinned,
        }
    }

    /// Whether the future is stored in place.
    #[cfg(test)]
    fn is_inline(&self) -> bool {
        matches!(self.inner, Inner::Inline { .. })
    }
}

impl<O: 'static> std::future::Future for InlineFuture<'_, O> {
    type Output = O;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<O> {
        // SAFETY: nothing is moved out of `self`: an inline future is polled where it lies,
        // which stays put since `self` is pinned (`InlineFuture` is `!Unpin`), and one in a
        // buffer's memory never moves.
        let this = unsafe { self.get_unchecked_mut() };
        match &mut this.inner {
            // SAFETY: `data` holds the live `F` that `vtable` was made for (`new`).
            Inner::Inline { data, vtable, .. } => unsafe {
                (vtable.poll)(data.as_mut_ptr().cast::<()>(), cx)
            },
            // SAFETY: as above, in the buffer's memory.
            Inner::InBuffer { memory, vtable, .. } => unsafe {
                (vtable.poll)(memory.0.as_ptr().cast::<()>(), cx)
            },
        }
    }
}

impl<O: 'static> Drop for InlineFuture<'_, O> {
    fn drop(&mut self) {
        match &mut self.inner {
            // SAFETY: `data` holds the live `F` that `vtable` was made for, dropped once here
            // (in place: a pinned future is never moved).
            Inner::Inline { data, vtable, .. } => unsafe {
                (vtable.drop)(data.as_mut_ptr().cast::<()>())
            },
            Inner::InBuffer {
                memory,
                vtable,
                buffer,
            } => {
                /// Gives the memory back even if the future's drop panics (its `F` counts as
                /// dropped then: the memory is free to reuse).
                struct GiveBack<'s> {
                    buffer: &'s mut AttemptBuffer,
                    memory: (NonNull<u8>, Layout),
                }
                impl Drop for GiveBack<'_> {
                    fn drop(&mut self) {
                        self.buffer.give_back(self.memory);
                    }
                }
                let _give_back = GiveBack {
                    buffer,
                    memory: *memory,
                };
                // SAFETY: the memory holds the live `F` that `vtable` was made for, dropped
                // once here, in place.
                unsafe { (vtable.drop)(memory.0.as_ptr().cast::<()>()) }
            }
        }
    }
}

/// Bytes of the allocation of a task of type `X` (header included).
#[cfg(test)]
pub(crate) fn allocation_size<X>() -> usize {
    std::mem::size_of::<Alloc<X>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::job::testing::Inert;
    use std::sync::atomic::AtomicU64;

    /// Counts its drops.
    struct Probe(Arc<AtomicU64>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_last_reference_drops_the_task_once() {
        let drops = Arc::new(AtomicU64::new(0));
        let task = TaskRef::new(Inert {
            id: TaskId(7),
            priority: 3,
            _held: Probe(Arc::clone(&drops)),
        });
        let clones: Vec<TaskRef> = (0..5).map(|_| task.clone()).collect();
        assert_eq!(task.id(), TaskId(7));
        assert_eq!(task.priority(), 3);
        assert_eq!(task.begin_attempt(), 1);
        assert_eq!(
            clones[4].attempts(),
            1,
            "one count, whichever reference reads it"
        );
        drop(task);
        let threads: Vec<_> = clones
            .into_iter()
            .map(|clone| std::thread::spawn(move || drop(clone)))
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_reference_is_one_pointer() {
        assert_eq!(std::mem::size_of::<TaskRef>(), 8);
        assert_eq!(std::mem::size_of::<Option<TaskRef>>(), 8);
        assert_eq!(std::mem::size_of::<ResultRef<u64, String>>(), 8);
    }

    #[test]
    fn cold_or_sink_owns_what_it_holds_once() {
        let sink = Arc::new(5u64);
        let mut slot: ColdOrSink<(u8, Weak<u64>), u64> = ColdOrSink::sink(&sink);
        assert!(slot.get().is_none());
        assert_eq!(slot.upgrade_sink().as_deref(), Some(&5));
        assert_eq!(Arc::weak_count(&sink), 1);
        let made = slot.get_or_insert_with(|weak| (7, weak));
        assert_eq!(made.0, 7);
        assert_eq!(
            Arc::weak_count(&sink),
            1,
            "the sink's weak moved into the box"
        );
        assert!(
            slot.upgrade_sink().is_none(),
            "a box holds the sink from now on"
        );
        slot.get_mut().unwrap().0 = 8;
        assert_eq!(slot.get().unwrap().0, 8);
        drop(slot);
        assert_eq!(Arc::weak_count(&sink), 0);

        let plain: ColdOrSink<(u8, Weak<u64>), u64> = ColdOrSink::sink(&sink);
        assert_eq!(Arc::weak_count(&sink), 1);
        drop(plain);
        assert_eq!(Arc::weak_count(&sink), 0);
        let boxed: ColdOrSink<String, u64> = ColdOrSink::cold(Box::new("cold".to_owned()));
        assert_eq!(boxed.get().map(String::as_str), Some("cold"));
        assert!(boxed.upgrade_sink().is_none());
    }

    #[test]
    fn a_panic_making_the_cold_box_keeps_the_sink() {
        let sink = Arc::new(5u64);
        let mut slot: ColdOrSink<u64, u64> = ColdOrSink::sink(&sink);
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slot.get_or_insert_with(|_| panic!("no cold box"));
        }));
        assert!(made.is_err());
        assert_eq!(slot.upgrade_sink().as_deref(), Some(&5));
        drop(slot);
        assert_eq!(Arc::weak_count(&sink), 0);
    }

    /// A future of `ballast` bytes (past the inline size when large) that gives `value`
    /// and counts its drop in `drops`.
    fn sized<const N: usize>(
        drops: &Arc<AtomicU64>,
        value: u8,
    ) -> impl std::future::Future<Output = u8> + Send + use<N> {
        let probe = Probe(Arc::clone(drops));
        let ballast = [value; N];
        async move {
            let _probe = probe;
            std::future::ready(ballast[N - 1]).await
        }
    }

    #[test]
    fn a_small_future_runs_in_place_and_a_large_one_in_the_buffer_each_dropped_once() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let drops = Arc::new(AtomicU64::new(0));
        let mut cx = Context::from_waker(Waker::noop());
        let (mut one, mut other) = (AttemptBuffer::default(), AttemptBuffer::default());
        let small = InlineFuture::new(sized::<1>(&drops, 7), &mut one);
        assert!(small.is_inline());
        let large = InlineFuture::new(sized::<64>(&drops, 8), &mut other);
        assert!(!large.is_inline());
        for (future, value) in [(small, 7), (large, 8)] {
            let mut future = std::pin::pin!(future);
            assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(value));
        }
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert!(
            one.kept_size().is_none(),
            "an inline future takes no allocation"
        );

        // Dropped unpolled, and dropped after a pending poll.
        drop(InlineFuture::new(sized::<64>(&drops, 1), &mut one));
        let mut pending = std::pin::pin!(InlineFuture::new(
            {
                let probe = Probe(Arc::clone(&drops));
                let ballast = [0u8; 64];
                async move {
                    let _probe = probe;
                    std::future::pending::<()>().await;
                    ballast[0]
                }
            },
            &mut one,
        ));
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        pending.set(InlineFuture::new(async { 0 }, &mut other));
        assert_eq!(drops.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_buffer_keeps_its_allocation_for_the_next_future_that_fits() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        fn run(future: InlineFuture<'_, u8>) {
            let mut future = std::pin::pin!(future);
            let mut cx = Context::from_waker(Waker::noop());
            assert!(matches!(future.as_mut().poll(&mut cx), Poll::Ready(_)));
        }
        let drops = Arc::new(AtomicU64::new(0));
        let mut buffer = AttemptBuffer::default();
        // Each future is its ballast, its probe and a byte or so of state.
        let size = |ballast: usize| ballast + 16;
        run(InlineFuture::new(sized::<100>(&drops, 1), &mut buffer));
        let first = buffer.kept_size().expect("kept after its future ended");
        assert!(first >= size(100) && first < size(200), "{first}");
        run(InlineFuture::new(sized::<100>(&drops, 2), &mut buffer));
        assert_eq!(buffer.kept_size(), Some(first), "the same size reuses it");
        run(InlineFuture::new(sized::<60>(&drops, 3), &mut buffer));
        assert_eq!(buffer.kept_size(), Some(first), "a smaller one reuses it");
        run(InlineFuture::new(sized::<400>(&drops, 4), &mut buffer));
        let larger = buffer.kept_size().unwrap();
        assert!(larger >= size(400), "a larger one grows it: {larger}");
        run(InlineFuture::new(sized::<300>(&drops, 5), &mut buffer));
        assert_eq!(buffer.kept_size(), Some(larger));
        assert_eq!(drops.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn a_future_that_panics_when_dropped_gives_the_buffer_back() {
        struct Boom;
        impl Drop for Boom {
            fn drop(&mut self) {
                panic!("boom");
            }
        }
        let mut buffer = AttemptBuffer::default();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let boom = Boom;
            let ballast = [0u8; 64];
            drop(InlineFuture::new(
                async move {
                    let _boom = boom;
                    ballast[0]
                },
                &mut buffer,
            ));
        }));
        assert!(dropped.is_err());
        assert!(
            buffer.kept_size().is_some(),
            "its allocation is back in the buffer"
        );
    }

    #[test]
    fn the_guard_gives_the_guarded_fields() {
        let storage = Storage::new(TaskId(1), 0, (), 1u8, 2u16, 3u32);
        {
            let mut guard = storage.lock();
            let (phase, cold, last) = guard.parts();
            *phase += 1;
            *cold += 1;
            *last += 1;
        }
        let mut guard = storage.lock();
        assert_eq!((*guard.phase(), *guard.cold(), *guard.last()), (2, 3, 4));
    }
}
