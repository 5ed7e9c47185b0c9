//! Registries of live handles, so that a handle that was closed, freed or never
//! issued is recognized before anything is dereferenced.
//!
//! A handle given to C is an address inside a static, never-touched region of
//! this library (one byte per slot). qtask never reads or writes through it: it
//! only computes the slot number and looks it up in a map of live objects. Slots
//! are issued in order and reused only after `SLOTS` handles of that kind, so a
//! closed handle keeps being reported as closed instead of aliasing a newer one.
//! (Real addresses, unlike small integers, are also safe to keep in Go pointers.)

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU8;
use std::sync::{Mutex, MutexGuard};

use qtask_core::Error;

/// Handles of one kind that may be issued before slot numbers are reused.
const SLOTS: usize = 1 << 20;

/// Address space for handles: `.bss`, never read or written, so never paged in
/// (except by workers, whose byte is their stop flag: see [`Space::byte`]).
pub(crate) struct Space([AtomicU8; SLOTS]);

impl Space {
    pub(crate) const fn new() -> Self {
        Space([const { AtomicU8::new(0) }; SLOTS])
    }

    /// The byte a handle of this space points to, found by arithmetic alone (no
    /// lock, no allocation: safe in a signal handler), or `None` when `handle` is
    /// not inside this space.
    pub(crate) fn byte<H>(&self, handle: *const H) -> Option<&AtomicU8> {
        let slot = (handle as usize).wrapping_sub(self.0.as_ptr() as usize);
        self.0.get(slot)
    }
}

pub(crate) struct Registry<T: 'static> {
    what: &'static str,
    space: &'static Space,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Handles issued so far (the next slot is `issued % SLOTS`).
    issued: usize,
    live: BTreeMap<usize, T>,
}

impl<T> Registry<T> {
    pub(crate) const fn new(what: &'static str, space: &'static Space) -> Self {
        Registry {
            what,
            space,
            state: Mutex::new(State {
                issued: 0,
                live: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores `value` and returns its new handle.
    pub(crate) fn insert<H>(&self, value: T) -> Result<*mut H, Error> {
        let mut state = self.lock();
        if state.live.len() >= SLOTS {
            return Err(Error::Internal(format!(
                "more than {SLOTS} live {} handles",
                self.what
            )));
        }
        let mut slot = state.issued % SLOTS;
        while state.live.contains_key(&slot) {
            state.issued += 1;
            slot = state.issued % SLOTS;
        }
        state.issued += 1;
        state.live.insert(slot, value);
        Ok(self.space.0[slot].as_ptr().cast())
    }

    /// The slot of `handle`, or the error telling why it is not a live handle.
    fn slot<H>(&self, state: &State<T>, handle: *const H) -> Result<usize, Error> {
        let base = self.space.0.as_ptr() as usize;
        let slot = (handle as usize).wrapping_sub(base);
        if handle.is_null() {
            return Err(Error::InvalidArgument(format!("{} handle is NULL", self.what)));
        }
        if slot >= SLOTS {
            return Err(Error::InvalidArgument(format!(
                "not a {} handle issued by qtask",
                self.what
            )));
        }
        if state.live.contains_key(&slot) {
            return Ok(slot);
        }
        if slot < state.issued || state.issued > SLOTS {
            // Issued before, so closed or freed since.
            return Err(Error::Closed);
        }
        Err(Error::InvalidArgument(format!(
            "not a {} handle issued by qtask",
            self.what
        )))
    }

    /// Removes and returns the object behind `handle`.
    pub(crate) fn take<H>(&self, handle: *const H) -> Result<T, Error> {
        let mut state = self.lock();
        let slot = self.slot(&state, handle)?;
        Ok(state.live.remove(&slot).expect("slot() found it live"))
    }
}

impl<T: Clone> Registry<T> {
    /// A clone of the object behind `handle` (an `Arc`, for clients).
    pub(crate) fn get<H>(&self, handle: *const H) -> Result<T, Error> {
        let state = self.lock();
        let slot = self.slot(&state, handle)?;
        Ok(state.live[&slot].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SPACE: Space = Space::new();

    #[test]
    fn live_closed_and_foreign_handles() {
        let registry: Registry<u32> = Registry::new("test", &SPACE);
        let a: *mut u8 = registry.insert(1).unwrap();
        let b: *mut u8 = registry.insert(2).unwrap();
        assert_ne!(a, b);
        assert_eq!(registry.get(a).unwrap(), 1);
        assert_eq!(registry.take(b).unwrap(), 2);
        assert!(matches!(registry.get(b), Err(Error::Closed)));
        assert!(matches!(registry.take(b), Err(Error::Closed)));
        let local = 0u8;
        assert!(matches!(
            registry.get(&local as *const u8),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            registry.get(std::ptr::null::<u8>()),
            Err(Error::InvalidArgument(_))
        ));
        // A slot never issued yet is unknown, not closed.
        let never = a.wrapping_add(1000);
        assert!(matches!(registry.get(never), Err(Error::InvalidArgument(_))));
        // A new handle never reuses a closed one's slot.
        let c: *mut u8 = registry.insert(3).unwrap();
        assert_ne!(c, b);
    }
}
