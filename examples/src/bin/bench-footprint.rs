//! The heap a waiting service holds in the memory store, counted byte for
//! byte (a counting allocator), split into the record and the store's
//! indexes. Unlike RSS this figure does not move with the machine: it is
//! what `bench-scale --only growth` measures as RSS, less the allocator's
//! own slack and the server's buffers.
//!
//! ```text
//! cargo run --release -p examples --bin bench-footprint -- --services 100000
//! ```
//!
//! Each service is the seed's create (a number, a device, two `usr_`
//! fields), asked for now in a chat-after-delay scenario, as bench-scale
//! sends it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use engine::clock::ManualClock;
use engine::machine::{self, NewService};
use engine::store::{memory::MemoryStore, CreateGuard, Store};
use engine::testing::{t0, ScenarioBuilder};

/// Bytes live on the heap, less those freed.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[derive(Parser)]
struct Args {
    /// Waiting services to create.
    #[arg(long, default_value_t = 100_000)]
    services: usize,
}

fn new_service(seq: usize) -> NewService {
    examples::bench::seed_service(
        format!("+1408{:07}", seq % 10_000_000),
        format!("bench-device-{seq}"),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenario = ScenarioBuilder::chat_delay().name("bench").build();
    let clock = Arc::new(ManualClock::new(t0()));
    let store = MemoryStore::new(clock.clone());
    let guard = CreateGuard::default();

    // One record alone, as the machine makes it: its heap beside its size.
    let before = live();
    let applied = machine::create_by(new_service(0), &scenario, t0(), Some("customer"));
    let record_heap = live() - before;
    let record = applied.record;
    println!(
        "one waiting record: {} bytes inline + {record_heap} on the heap (history {} entries, timers {}, outbox {}, user_data {})",
        std::mem::size_of_val(&record),
        record.history.len(),
        record.timers.len(),
        record.outbox.len(),
        record.user_data.len(),
    );
    let heap_of = |f: &dyn Fn() -> Box<dyn std::any::Any>| {
        let before = live();
        let kept = f();
        let bytes = live() - before;
        drop(kept);
        bytes
    };
    let clone_heap = heap_of(&|| Box::new(record.clone()));
    println!(
        "  a copy of it: {} on the heap: history {}, timers {}, user_data {}, ticket {}, strings {}",
        clone_heap - std::mem::size_of_val(&record) as isize,
        heap_of(&|| Box::new(record.history.clone())) - 24,
        heap_of(&|| Box::new(record.timers.clone())) - 24,
        heap_of(&|| Box::new(record.user_data.clone())) - 24,
        heap_of(&|| Box::new(record.ticket.clone())) - std::mem::size_of_val(&record.ticket) as isize,
        heap_of(&|| Box::new((
            record.id.clone(),
            record.scenario.clone(),
            record.customer_number.clone(),
            record.device_notification_id.clone(),
            record.device_os.clone(),
        ))) - 5 * 24,
    );
    println!("  {}", serde_json::to_string(&record)?);
    drop(record);
    drop(applied.effects);

    let records: Vec<_> = (1..=args.services)
        .map(|seq| machine::create_by(new_service(seq), &scenario, t0(), Some("customer")).record)
        .collect();
    let before = live();
    for record in &records {
        store.put_new(record, &guard).await?;
    }
    // What the store holds: its own copy of each record (behind an `Arc`)
    // and its indexes; the callers' records were counted before.
    let n = args.services as f64;
    let per_service = (live() - before) as f64 / n;
    drop(records);
    // The store's copy is a clone (no spare capacity), behind an `Arc`
    // (two counts).
    let record = (clone_heap as usize + 2 * std::mem::size_of::<usize>()) as f64;
    println!(
        "{} waiting services in the memory store: {per_service:.0} bytes each; of which the record's copy {record:.0}, the indexes and maps {:.0}",
        args.services,
        per_service - record,
    );
    Ok(())
}
