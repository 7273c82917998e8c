//! The store conformance suite (`engine::store::conformance`) against the
//! embedded `MemoryStore`.

use std::sync::Arc;

use engine::clock::ManualClock;
use engine::store::conformance::{t0, Subject};
use engine::store::memory::MemoryStore;

async fn memory() -> Subject {
    let clock = Arc::new(ManualClock::new(t0()));
    Subject {
        store: Arc::new(MemoryStore::new(clock.clone())),
        clock,
        guard: Box::new(()),
    }
}

engine::store_conformance_tests!(memory);
