//! Concurrent identical questions that miss the cache share one upstream
//! exchange: the first asker starts a [`Flight`], later ones join it while it is
//! under way, and the last one to leave (or a cancelled one) takes it out of the
//! in-flight map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::cache::{Answer, Key};
use super::lock;

/// One upstream exchange shared by concurrent identical questions.
pub(super) type Flight = OnceCell<Option<Arc<Answer>>>;

/// A question's place in an in-flight exchange. Dropping it (also when the
/// caller's future is cancelled) takes the exchange out of the in-flight map
/// once it has finished or nobody else waits for it.
pub(super) struct Seat<'a> {
    inflight: &'a Mutex<HashMap<Key, Arc<Flight>>>,
    key: Key,
    flight: Option<Arc<Flight>>,
}

impl<'a> Seat<'a> {
    pub(super) fn join(inflight: &'a Mutex<HashMap<Key, Arc<Flight>>>, key: &Key) -> Self {
        let mut map = lock(inflight);
        let flight = match map.get(key) {
            // A finished flight is never joined: its answer may be aging.
            Some(flight) if !flight.initialized() => flight.clone(),
            _ => {
                let flight = Arc::new(Flight::new());
                map.insert(key.clone(), flight.clone());
                flight
            }
        };
        Self {
            inflight,
            key: key.clone(),
            flight: Some(flight),
        }
    }

    pub(super) fn flight(&self) -> &Flight {
        self.flight.as_deref().expect("present until dropped")
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        // Counts change only under this lock (clones in `join`, drops here).
        let mut map = lock(self.inflight);
        if let Some(current) = map.get(&self.key)
            && Arc::ptr_eq(current, &flight)
            && (flight.initialized() || Arc::strong_count(&flight) == 2)
        {
            map.remove(&self.key);
        }
        drop(flight);
    }
}
