//! What a node counts and measures, for `GET /metrics`.
//!
//! Names and labels follow Prometheus's conventions (`_total` counters,
//! `_seconds` histograms). Labels are of low cardinality only: a scenario,
//! a queue, a state, a reason, a transport, a store operation; never a
//! service id, an agent id or a phone number.
//!
//! Counters and histograms are recorded where things happen, through the
//! `metrics` facade (a no-op until the front installs a recorder). Gauges
//! that describe the whole deployment (services by state, queues, agents,
//! push clients, due timers, outboxes) are read from the store when
//! scraped ([`observe`]), so every node reports the same picture.

use std::collections::BTreeMap;
use std::time::Instant;

use engine::record::ServiceState;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::shell::{Shell, ShellError};

pub const SERVICES_CREATED: &str = "callbackd_services_created_total";
pub const SERVICE_TRANSITIONS: &str = "callbackd_service_transitions_total";
pub const SERVICES_COMPLETED: &str = "callbackd_services_completed_total";
pub const AGENT_OFFERS: &str = "callbackd_agent_offers_total";
pub const OFFER_ANSWERS: &str = "callbackd_agent_offer_answers_total";
pub const TIMERS_FIRED: &str = "callbackd_timers_fired_total";
pub const TIMER_LATENESS: &str = "callbackd_timer_lateness_seconds";
pub const STORE_CALL: &str = "callbackd_store_call_duration_seconds";
pub const STORE_ERRORS: &str = "callbackd_store_errors_total";
pub const NOTICES: &str = "callbackd_notices_total";
pub const SERVICES: &str = "callbackd_services";
pub const OUTBOX_DEPTH: &str = "callbackd_outbox_depth";
pub const QUEUE_LENGTH: &str = "callbackd_queue_length";
pub const QUEUE_OLDEST_WAIT: &str = "callbackd_queue_oldest_wait_seconds";
pub const QUEUE_EWT: &str = "callbackd_queue_ewt_seconds";
pub const AGENTS: &str = "callbackd_agents";
pub const TIMERS_DUE: &str = "callbackd_timers_due";

/// Says what each metric is (the `# HELP` lines).
pub fn describe() {
    describe_counter!(SERVICES_CREATED, "Services created, by scenario.");
    describe_counter!(
        SERVICE_TRANSITIONS,
        "State changes of services, by scenario and GMS state before and after."
    );
    describe_counter!(
        SERVICES_COMPLETED,
        "Services completed, by scenario and GMS reason."
    );
    describe_counter!(
        AGENT_OFFERS,
        "Services offered to (reserved for) an agent, by scenario."
    );
    describe_counter!(
        OFFER_ANSWERS,
        "Previewed offers (_agent_preview) by scenario and outcome: accepted, rejected, timed_out."
    );
    describe_counter!(TIMERS_FIRED, "Timers fired on this node, by kind.");
    describe_histogram!(
        TIMER_LATENESS,
        metrics::Unit::Seconds,
        "How late a timer fired after its due time, by kind."
    );
    describe_histogram!(
        STORE_CALL,
        metrics::Unit::Seconds,
        "Time of each store call, by operation."
    );
    describe_counter!(
        STORE_ERRORS,
        "Store calls that failed because the store did not answer, by operation."
    );
    describe_counter!(
        NOTICES,
        "Appointment e-mails and SMS, by channel and outcome (sent, failed, skipped)."
    );
    describe_gauge!(
        SERVICES,
        "Services not yet completed, by scenario and GMS state."
    );
    describe_gauge!(
        OUTBOX_DEPTH,
        "Notifications waiting in the outboxes of services not yet completed, by side (device, agent)."
    );
    describe_gauge!(QUEUE_LENGTH, "Services waiting in each queue.");
    describe_gauge!(
        QUEUE_OLDEST_WAIT,
        metrics::Unit::Seconds,
        "How long the longest-waiting service of each queue has waited."
    );
    describe_gauge!(
        QUEUE_EWT,
        metrics::Unit::Seconds,
        "Estimated wait of a service joining each queue now (NaN: no history or no ready agent)."
    );
    describe_gauge!(
        AGENTS,
        "Agents by state: ready (taking services), busy (holding at least one), not_ready."
    );
    describe_gauge!(TIMERS_DUE, "Timers due and not yet claimed by any node.");
}

/// Counts a transition of a service of `scenario`.
pub fn transition(scenario: &str, from: ServiceState, to: ServiceState) {
    let labels = [
        ("scenario", scenario),
        ("from", from.gms_name()),
        ("to", to.gms_name()),
    ];
    kept::counter(SERVICE_TRANSITIONS, &labels).increment(1);
}

/// Counts an agent's answer to a previewed offer.
pub fn offer_answered(scenario: &str, outcome: &'static str) {
    counter!(OFFER_ANSWERS, "scenario" => scenario.to_owned(), "outcome" => outcome).increment(1);
}

/// Times a store call `op`, and counts it as an error when the store did
/// not answer (a refusal, such as a concurrent write, is an answer).
pub async fn timed<T>(
    op: &'static str,
    call: impl std::future::Future<Output = Result<T, engine::store::StoreError>>,
) -> Result<T, engine::store::StoreError> {
    let started = Instant::now();
    let result = call.await;
    kept::histogram(STORE_CALL, &[("op", op)]).record(started.elapsed().as_secs_f64());
    if let Err(engine::store::StoreError::Unavailable(_)) = &result {
        counter!(STORE_ERRORS, "op" => op).increment(1);
    }
    result
}

/// Sets the gauges that describe the deployment, from the store: called
/// when `/metrics` is scraped. Every label a gauge may have is set each
/// time (to 0 when nothing has it), so a queue that empties does not keep
/// its last value.
pub async fn observe(shell: &Shell) -> Result<(), ShellError> {
    let now = shell.now();
    let active = [
        ServiceState::Scheduled,
        ServiceState::WaitForAgent,
        ServiceState::WaitForUserConfirm,
        ServiceState::Connected,
    ];
    // Kept by the store as it writes: a scrape reads counts, not records.
    let census = shell.census().await?;
    let mut services: BTreeMap<(String, ServiceState), u64> = BTreeMap::new();
    for scenario in shell.scenarios().iter() {
        for state in active {
            services.insert((scenario.name.clone(), state), 0);
        }
    }
    services.extend(census.services);
    for ((scenario, state), count) in services {
        gauge!(SERVICES, "scenario" => scenario, "state" => state.gms_name()).set(count as f64);
    }
    gauge!(OUTBOX_DEPTH, "side" => "device").set(census.device_outbox as f64);
    gauge!(OUTBOX_DEPTH, "side" => "agent").set(census.agent_outbox as f64);

    let mut queues: Vec<String> = shell
        .scenarios()
        .iter()
        .map(|s| s.target.queue.clone())
        .collect();
    queues.extend(shell.queue_names().await?);
    queues.sort();
    queues.dedup();
    let agents = shell.agents().await?;
    for queue in queues {
        // Its length and its oldest wait, not the queue itself: a scrape
        // costs the same at any length.
        let waiting = shell.queue_len(&queue).await?;
        let oldest = shell.queue_oldest(&queue).await?.map_or(0.0, |since| {
            (now - since).num_milliseconds().max(0) as f64 / 1000.0
        });
        let capacity = agents
            .iter()
            .filter(|a| a.ready && a.profile.queues.contains(&queue))
            .map(|a| a.profile.max_concurrent)
            .sum();
        let ewt = shell
            .queue_stats(&queue)
            .await?
            .eta(waiting + 1, capacity)
            .map_or(f64::NAN, |s| s as f64);
        gauge!(QUEUE_LENGTH, "queue" => queue.clone()).set(waiting as f64);
        gauge!(QUEUE_OLDEST_WAIT, "queue" => queue.clone()).set(oldest);
        gauge!(QUEUE_EWT, "queue" => queue).set(ewt);
    }

    let (mut ready, mut busy, mut not_ready) = (0u64, 0u64, 0u64);
    for agent in &agents {
        if !agent.services.is_empty() {
            busy += 1;
        }
        if agent.ready {
            ready += 1;
        } else {
            not_ready += 1;
        }
    }
    gauge!(AGENTS, "state" => "ready").set(ready as f64);
    gauge!(AGENTS, "state" => "busy").set(busy as f64);
    gauge!(AGENTS, "state" => "not_ready").set(not_ready as f64);

    gauge!(TIMERS_DUE).set(shell.due_timer_count(now).await? as f64);
    shell.registry().observe();
    Ok(())
}

/// Handles to the metrics of hot paths (every request, store call, create
/// and transition), kept per thread and found again by name and label
/// values. `counter!` and `histogram!` build the key, clone its labels,
/// hash it and look it up in the recorder's registry on every call, about
/// 2,000 instructions each (callgrind, several per request); a kept
/// handle is found by one hash of the label values. The recorder never
/// drops a metric (no idle timeout), so a kept handle stays the one
/// `/metrics` renders. Labels are of low cardinality, so the tables stay
/// small.
pub mod kept {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hash::{BuildHasherDefault, Hash, Hasher};

    use metrics::{Counter, Histogram, Label};

    type Labels<'a> = &'a [(&'static str, &'a str)];

    /// A handle with the name and labels it was made from.
    type Entry<H> = (&'static str, Vec<(&'static str, Box<str>)>, H);

    /// FNV-1a: the keys are our own names and labels (route templates,
    /// scenario names, states), short and not chosen by callers, so a
    /// keyed hash (SipHash, about 1,000 instructions a lookup here) buys
    /// nothing.
    #[derive(Default)]
    struct Fnv(u64);

    impl Hasher for Fnv {
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }

    /// Handles of one kind, by a hash of (name, labels).
    struct Table<H> {
        by_hash: HashMap<u64, Vec<Entry<H>>, BuildHasherDefault<Fnv>>,
    }

    impl<H: Clone> Table<H> {
        fn new() -> Self {
            Table {
                by_hash: HashMap::default(),
            }
        }

        fn get(&mut self, name: &'static str, labels: Labels, make: impl FnOnce() -> H) -> H {
            let mut h = Fnv(0xcbf2_9ce4_8422_2325);
            name.hash(&mut h);
            labels.hash(&mut h);
            let entries = self.by_hash.entry(h.finish()).or_default();
            let same = |(n, l, _): &&Entry<H>| {
                *n == name
                    && l.len() == labels.len()
                    && l.iter()
                        .zip(labels)
                        .all(|(a, b)| a.0 == b.0 && *a.1 == *b.1)
            };
            if let Some((_, _, handle)) = entries.iter().find(same) {
                return handle.clone();
            }
            let handle = make();
            let owned = labels.iter().map(|(k, v)| (*k, Box::from(*v))).collect();
            entries.push((name, owned, handle.clone()));
            handle
        }
    }

    fn labels_of(labels: Labels) -> Vec<Label> {
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect()
    }

    thread_local! {
        static COUNTERS: RefCell<Table<Counter>> = RefCell::new(Table::new());
        static HISTOGRAMS: RefCell<Table<Histogram>> = RefCell::new(Table::new());
    }

    /// `counter!(name, labels)`, kept.
    pub fn counter(name: &'static str, labels: Labels) -> Counter {
        COUNTERS.with(|t| {
            t.borrow_mut()
                .get(name, labels, || metrics::counter!(name, labels_of(labels)))
        })
    }

    /// `histogram!(name, labels)`, kept.
    pub fn histogram(name: &'static str, labels: Labels) -> Histogram {
        HISTOGRAMS.with(|t| {
            t.borrow_mut().get(name, labels, || {
                metrics::histogram!(name, labels_of(labels))
            })
        })
    }

    #[cfg(test)]
    mod tests {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        /// Kept handles count into the metric `counter!` names, one per
        /// name and label values, however often they are asked for.
        #[test]
        fn kept_handles_are_the_metrics_the_macros_name() {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            metrics::with_local_recorder(&recorder, || {
                for _ in 0..3 {
                    super::counter("c", &[("scenario", "a"), ("to", "x")]).increment(1);
                }
                super::counter("c", &[("scenario", "b"), ("to", "x")]).increment(2);
                super::counter("c", &[("to", "x"), ("scenario", "a")]).increment(5);
                super::counter("d", &[("scenario", "a"), ("to", "x")]).increment(7);
                metrics::counter!("c", "scenario" => "a", "to" => "x").increment(10);
                super::histogram("h", &[("op", "get")]).record(0.5);
                super::histogram("h", &[("op", "get")]).record(1.5);
            });
            let mut seen: Vec<String> = snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let (_, key) = key.into_parts();
                    let labels: Vec<String> = key
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect();
                    let value = match value {
                        DebugValue::Counter(n) => n.to_string(),
                        DebugValue::Histogram(v) => format!("{v:?}"),
                        DebugValue::Gauge(g) => g.to_string(),
                    };
                    format!("{}{{{}}} {value}", key.name(), labels.join(","))
                })
                .collect();
            seen.sort();
            assert_eq!(
                seen,
                [
                    // Labels in another order are another handle here,
                    // and the same metric to the recorder.
                    "c{scenario=a,to=x} 18",
                    "c{scenario=b,to=x} 2",
                    "d{scenario=a,to=x} 7",
                    "h{op=get} [0.5, 1.5]",
                ]
            );
        }
    }
}
