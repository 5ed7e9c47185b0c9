//! Free slots lent out by a claim that is slow to return. A claim holds a slot for each
//! task it asks for, but its round trip can last a whole poll of an empty queue; tasks
//! already claimed ahead of a slot are ready now, so they may take those slots first.
//! The claim then takes back what is left, and its own tasks wait for a slot as
//! claimed-ahead tasks do. At the end of a drain, without this, the last tasks waited
//! a poll's length (500 ms) for slots held by fetches polling an empty queue.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

#[derive(Default)]
pub(super) struct Spare {
    permits: Mutex<Vec<OwnedSemaphorePermit>>,
    lent: Notify,
}

impl Spare {
    /// Lends a claim's slots while it is in flight.
    pub fn lend(&self, permits: Vec<OwnedSemaphorePermit>) {
        if permits.is_empty() {
            return;
        }
        self.permits.lock().expect("never poisoned").extend(permits);
        self.lent.notify_waiters();
    }

    /// Takes back up to `wanted` lent slots once the claim returned.
    pub fn take_back(&self, wanted: usize) -> Vec<OwnedSemaphorePermit> {
        let mut permits = self.permits.lock().expect("never poisoned");
        let keep = permits.len().saturating_sub(wanted);
        permits.split_off(keep)
    }

    /// A slot for a task claimed ahead: a lent one if there is one, else the next
    /// that a handler frees.
    pub async fn acquire(&self, slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        loop {
            // Registered before looking, so that a lend in between is not missed.
            let lent = self.lent.notified();
            tokio::pin!(lent);
            lent.as_mut().enable();
            if let Some(permit) = self.permits.lock().expect("never poisoned").pop() {
                return permit;
            }
            tokio::select! {
                biased;
                permit = slots.clone().acquire_owned() => return permit.expect("never closed"),
                _ = &mut lent => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_task_takes_a_lent_slot_and_the_claim_takes_back_the_rest() {
        let slots = Arc::new(Semaphore::new(3));
        let spare = Arc::new(Spare::default());
        let held: Vec<_> = (0..3)
            .map(|_| slots.clone().try_acquire_owned().unwrap())
            .collect();
        // Every slot is held by the claim: the task claimed ahead waits.
        let waiting = tokio::spawn({
            let (slots, spare) = (slots.clone(), spare.clone());
            async move { spare.acquire(&slots).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        spare.lend(held);
        let taken = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        let back = spare.take_back(3);
        assert_eq!(back.len(), 2);
        assert!(spare.take_back(3).is_empty());
        assert_eq!(slots.available_permits(), 0);
        drop(taken);
        assert_eq!(slots.available_permits(), 1);
        drop(back);
        assert_eq!(slots.available_permits(), 3);
    }

    #[tokio::test]
    async fn without_lent_slots_a_task_takes_the_next_freed_one() {
        let slots = Arc::new(Semaphore::new(1));
        let spare = Arc::new(Spare::default());
        let running = slots.clone().try_acquire_owned().unwrap();
        let waiting = tokio::spawn({
            let (slots, spare) = (slots.clone(), spare.clone());
            async move { spare.acquire(&slots).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(running);
        let permit = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(slots.available_permits(), 0);
        drop(permit);
    }
}
