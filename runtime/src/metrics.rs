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
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

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
    counter!(SERVICE_TRANSITIONS, "scenario" => scenario.to_owned(), "from" => from.gms_name(), "to" => to.gms_name()).increment(1);
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
    histogram!(STORE_CALL, "op" => op).record(started.elapsed().as_secs_f64());
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
