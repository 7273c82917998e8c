//! Transition tests for `engine::machine`, data-driven where possible, on
//! the harness of `engine::testing`.
//!
//! - [`run`] walks a new record through a list of steps (event, seconds after t0).
//! - [`check`] compares the final state/reason and the effect kinds of the last step.
//! - `state_event_table_*` covers every event in every state.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Duration;
use serde_json::{json, Value};

use engine::event_table;
use engine::machine::{self, Applied, Effect, Event, NewService, TransitionError};
use engine::record::{
    CallbackReason, ChatEntryKind, Party, ServiceRecord, ServiceState, TimerKind, OUTBOX_LIMIT,
    RECORD_SCHEMA, RECORD_SCHEMA_BOOKED, RECORD_SCHEMA_VIDEO,
};
use engine::scenario::{OnUserConfirmTimeout, Scenario, Scenarios};
use engine::testing::{
    self, agent_notification, apply_step, at, chat_left as left, effect_kinds as kinds, fire,
    internal_notification, not_allowed, pushed_unknown, reschedule_to, reserved, run_table, say,
    secs, step_to, t0, typing, webhooks_unknown, Out, ScenarioBuilder, Step, Walk, CUSTOMER, ID,
};

use CallbackReason as R;
use Out::{Done, No, Same, Stale, To, Unchanged};
use ServiceState as S;

fn delay() -> Arc<Scenario> {
    ScenarioBuilder::chat_delay().build()
}

fn delay_with(key: &str, value: &str) -> Arc<Scenario> {
    ScenarioBuilder::chat_delay().key(key, value).build()
}

fn immediate() -> Arc<Scenario> {
    ScenarioBuilder::chat_immediate().build()
}

// ---------------------------------------------------------------------------
// Events and walks
// ---------------------------------------------------------------------------

/// The harness's service, with a reason and `desired` seconds after t0.
fn new_service(desired: Option<i64>) -> NewService {
    let mut new = testing::new_service();
    new.desired_time = desired.map(secs);
    new.user_data
        .insert("usr_reason".to_owned(), "billing question".to_owned());
    new
}

fn chat_started() -> Event {
    testing::chat_started_with(&[("firstName", "John"), ("email", "j.h@gmail.com")])
}

fn create(scn: &Arc<Scenario>, desired: Option<i64>) -> Applied {
    machine::create(new_service(desired), scn, t0())
}

/// Creates the service at t0 (or for `desired`) and applies every step.
fn run(scn: &Arc<Scenario>, desired: Option<i64>, steps: &[Step]) -> Walk {
    testing::run(scn, new_service(desired), steps)
}

/// [`testing::check`] for the service [`new_service`] makes.
fn check(
    label: &str,
    scn: &Arc<Scenario>,
    desired: Option<i64>,
    steps: &[Step],
    want: (ServiceState, Option<CallbackReason>),
    effects: &[&str],
) -> Walk {
    testing::check(label, scn, new_service(desired), steps, want, effects)
}

// ---------------------------------------------------------------------------
// create
// ---------------------------------------------------------------------------

#[test]
fn create_without_desired_time_enters_queue_at_once() {
    let scn = delay();
    let walk = check(
        "create now",
        &scn,
        None,
        &[],
        (S::WaitForAgent, None),
        &["EnteredQueue", "TimerArmed(ttl)", "TimerArmed(find_agent)"],
    );
    let rec = &walk.record;
    assert_eq!(rec.version, 1);
    assert_eq!(
        rec.schema,
        engine::record::RECORD_SCHEMA_PLAIN,
        "readable by nodes from before bookings"
    );
    assert_eq!(rec.id, ID);
    assert_eq!(rec.scenario, "chat-delay");
    assert_eq!(rec.customer_number, CUSTOMER);
    assert_eq!(rec.created_at, t0());
    assert_eq!(rec.desired_time, t0());
    assert_eq!(rec.expiration_time, secs(86400));
    assert_eq!(rec.ticket.queue, "support");
    assert_eq!(rec.ticket.priority, 0);
    assert_eq!(rec.ticket.since, t0());
    assert_eq!(
        rec.timers,
        BTreeMap::from([
            (TimerKind::FindAgent, secs(7200)),
            (TimerKind::Ttl, secs(86400))
        ])
    );
    assert!(rec.is_queued());
    assert!(rec.agent.is_none() && rec.served_by.is_none());
    assert_eq!(rec.confirm_attempts, 0);
    assert!(rec.outbox.is_empty() && rec.agent_outbox.is_empty());
    assert_eq!(rec.user_data["usr_customer_name"], "Bob Markel");
    assert_eq!(rec.device_os.as_deref(), Some("comet"));
    assert!(walk.created.contains(&Effect::EnteredQueue {
        queue: "support".into()
    }));
    assert!(walk.created.contains(&Effect::TimerArmed {
        kind: TimerKind::Ttl,
        due: secs(86400)
    }));
}

#[test]
fn create_with_desired_time_now_or_past_enters_queue() {
    let scn = delay();
    for desired in [0, -60, -86400 * 2] {
        let rec = create(&scn, Some(desired)).record;
        assert_eq!(rec.state, S::WaitForAgent, "desired {desired}");
        assert_eq!(rec.version, 1, "desired {desired}");
        assert_eq!(rec.desired_time, secs(desired), "desired {desired}");
        assert_eq!(
            rec.expiration_time,
            secs(desired + 86400),
            "desired {desired}"
        );
        // Its place in the queue starts when it joined, not in the past.
        assert_eq!(rec.ticket.since, t0(), "desired {desired}");
        assert!(!rec.timers.contains_key(&TimerKind::DesiredTime));
    }
}

#[test]
fn create_with_future_desired_time_is_scheduled() {
    let scn = delay();
    let walk = check(
        "create scheduled",
        &scn,
        Some(3600),
        &[],
        (S::Scheduled, None),
        &["TimerArmed(desired_time)", "TimerArmed(ttl)"],
    );
    let rec = &walk.record;
    assert_eq!(rec.version, 1);
    assert_eq!(rec.desired_time, secs(3600));
    assert_eq!(rec.expiration_time, secs(3600 + 86400));
    assert_eq!(rec.ticket.since, secs(3600));
    assert_eq!(
        rec.timers,
        BTreeMap::from([
            (TimerKind::DesiredTime, secs(3600)),
            (TimerKind::Ttl, secs(3600 + 86400)),
        ])
    );
    assert!(!rec.is_queued());

    // The desired time comes: the service joins its queue.
    let walk = check(
        "desired time reached",
        &scn,
        Some(3600),
        &[fire(TimerKind::DesiredTime)],
        (S::WaitForAgent, None),
        &["EnteredQueue", "TimerArmed(find_agent)"],
    );
    let rec = &walk.record;
    assert_eq!(rec.version, 2);
    assert_eq!(
        rec.timers,
        BTreeMap::from([
            (TimerKind::FindAgent, secs(3600 + 7200)),
            (TimerKind::Ttl, secs(3600 + 86400)),
        ])
    );
    assert_eq!(rec.ticket.since, secs(3600));
}

#[test]
fn version_is_one_after_create_and_grows_by_one_per_apply() {
    let scn = delay();
    let steps = [
        at(10, internal_notification()),
        at(20, reserved("agent-1")),
        at(25, Event::NotificationsRetrieved),
        at(30, Event::UserConfirmed),
        at(31, Event::UserConfirmed),
        at(40, chat_started()),
        at(50, Event::Complete),
        at(60, Event::AgentNotificationsRetrieved),
    ];
    let mut rec = create(&scn, None).record;
    assert_eq!(rec.version, 1);
    for (i, step) in steps.iter().enumerate() {
        rec = step_to(&rec, &scn, step);
        assert_eq!(rec.version, 2 + i as u64, "after step {i} {step:?}");
    }
    // A refused event leaves the caller's record as it was.
    let before = rec.clone();
    assert!(machine::apply(&rec, &scn, &Event::Cancel, secs(70)).is_err());
    assert_eq!(rec, before);
}

// ---------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------

#[test]
fn timers_that_do_not_match_the_record_are_stale() {
    let scn = delay();
    let rec = create(&scn, None).record;
    let find_due = rec.timers[&TimerKind::FindAgent];
    let fired = |rec: &ServiceRecord, kind, due| {
        machine::apply(rec, &scn, &Event::TimerFired { kind, due }, due)
    };

    // Right kind, wrong due.
    assert_eq!(
        fired(&rec, TimerKind::FindAgent, find_due + Duration::seconds(1)).unwrap_err(),
        TransitionError::StaleTimer {
            kind: TimerKind::FindAgent
        }
    );
    // A kind that is not armed.
    assert_eq!(
        fired(&rec, TimerKind::UserConfirm, secs(60)).unwrap_err(),
        TransitionError::StaleTimer {
            kind: TimerKind::UserConfirm
        }
    );
    assert_eq!(
        fired(&rec, TimerKind::DesiredTime, t0()).unwrap_err(),
        TransitionError::StaleTimer {
            kind: TimerKind::DesiredTime
        }
    );

    // The find-agent timer was cancelled by the reservation.
    let routing = step_to(&rec, &scn, &at(30, reserved("agent-1")));
    assert!(matches!(
        fired(&routing, TimerKind::FindAgent, find_due),
        Err(TransitionError::StaleTimer {
            kind: TimerKind::FindAgent
        })
    ));

    // After a requeue the old user-confirm due is stale, the new one is not.
    let old_due = routing.timers[&TimerKind::UserConfirm];
    let requeued = step_to(&routing, &scn, &fire(TimerKind::UserConfirm));
    let again = step_to(&requeued, &scn, &at(100, reserved("agent-2")));
    assert_eq!(again.timers[&TimerKind::UserConfirm], secs(160));
    assert!(matches!(
        fired(&again, TimerKind::UserConfirm, old_due),
        Err(TransitionError::StaleTimer { .. })
    ));
    assert!(fired(&again, TimerKind::UserConfirm, secs(160)).is_ok());
    // The stale error says which timer.
    let msg = fired(&again, TimerKind::UserConfirm, old_due)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("UserConfirm"), "{msg}");
}

// ---------------------------------------------------------------------------
// Agent reserved, user confirm
// ---------------------------------------------------------------------------

#[test]
fn agent_reserved_asks_the_customer_to_confirm_with_the_seed_payload() {
    let scn = delay();
    let walk = check(
        "agent reserved (confirm)",
        &scn,
        None,
        &[at(30, reserved("agent-1"))],
        (S::WaitForUserConfirm, None),
        &[
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "TimerArmed(user_confirm)",
            "NotifyDevice(service.agentavailable)",
        ],
    );
    let rec = &walk.record;
    assert_eq!(rec.agent.as_deref(), Some("agent-1"));
    assert_eq!(rec.confirm_attempts, 1);
    assert_eq!(rec.timers.get(&TimerKind::UserConfirm), Some(&secs(90)));
    assert!(!rec.timers.contains_key(&TimerKind::FindAgent));
    assert_eq!(rec.timers.get(&TimerKind::Ttl), Some(&secs(86400)));
    assert!(!rec.is_queued());

    // The push: exactly the seed's shape.
    assert_eq!(rec.outbox.len(), 1);
    let n = &rec.outbox[0];
    let tag = format!("service.agentavailable.{ID}");
    assert_eq!(n.tag, tag);
    assert!(!n.id.is_empty());
    assert_eq!(n.at, secs(30));
    assert_eq!(
        n.payload,
        json!({
            "id": n.id,
            "message": {
                "_action": "get-dialog-user-confirmation-provide_code-false",
                "_id": ID,
            },
            "tag": tag,
        })
    );

    let effects = walk.last();
    assert!(effects.contains(&Effect::NotifyDevice {
        id: n.id.clone(),
        tag: tag.clone()
    }));
    assert!(effects.contains(&Effect::AgentReserved {
        agent: "agent-1".into()
    }));
    assert!(effects.contains(&Effect::LeftQueue {
        queue: "support".into()
    }));
    assert!(effects.contains(&Effect::TimerArmed {
        kind: TimerKind::UserConfirm,
        due: secs(90)
    }));
    assert!(effects.contains(&Effect::WaitSample {
        queue: "support".into(),
        seconds: 30.0
    }));
}

#[test]
fn agent_reserved_without_confirm_connects_directly() {
    let scn = delay_with("_wait_for_user_confirm", "false");
    let walk = check(
        "agent reserved (no confirm)",
        &scn,
        None,
        &[at(30, reserved("agent-1"))],
        (S::Connected, None),
        &[
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            // Nobody asked the customer, so it is told the agent is there.
            "NotifyDevice(service.agentavailable)",
            "NotifyAgent(agent.offer)",
        ],
    );
    let rec = &walk.record;
    assert_eq!(rec.agent.as_deref(), Some("agent-1"));
    assert_eq!(rec.served_by.as_deref(), Some("agent-1"));
    assert_eq!(rec.connected_at, Some(secs(30)));
    assert_eq!(rec.confirm_attempts, 0);
    assert!(!rec.timers.contains_key(&TimerKind::UserConfirm));
}

#[test]
fn user_confirmed_connects_and_offers_to_the_agent() {
    let scn = delay();
    let walk = check(
        "connect",
        &scn,
        None,
        &[at(30, reserved("agent-1")), at(40, Event::UserConfirmed)],
        (S::Connected, None),
        &["TimerCancelled(user_confirm)", "NotifyAgent(agent.offer)"],
    );
    let rec = &walk.record;
    assert_eq!(rec.agent.as_deref(), Some("agent-1"));
    assert_eq!(rec.served_by.as_deref(), Some("agent-1"));
    assert_eq!(rec.connected_at, Some(secs(40)));
    assert!(!rec.timers.contains_key(&TimerKind::UserConfirm));
    assert_eq!(rec.agent_outbox.len(), 1);
    let offer = &rec.agent_outbox[0];
    assert_eq!(offer.tag, format!("agent.offer.{ID}"));
    let message: Value = serde_json::from_str(&offer.message).expect("offer is JSON text");
    assert_eq!(message["_id"], ID);
    assert_eq!(message["_customer_number"], CUSTOMER);
    assert_eq!(message["_media_type"], "chat");
    assert_eq!(message["user_data"]["usr_reason"], "billing question");
    assert!(walk.last().contains(&Effect::NotifyAgent {
        agent: Some("agent-1".into()),
        id: offer.id.clone(),
        tag: format!("agent.offer.{ID}")
    }));
    assert!(
        offer.id.starts_with(ID),
        "agent notifications have ids: {offer:?}"
    );
}

#[test]
fn user_confirmed_again_in_connected_changes_nothing() {
    let scn = delay();
    let connected = run(
        &scn,
        None,
        &[at(30, reserved("agent-1")), at(40, Event::UserConfirmed)],
    )
    .record;
    let again = machine::apply(&connected, &scn, &Event::UserConfirmed, secs(45)).unwrap();
    assert!(again.effects.is_empty(), "{:?}", again.effects);
    let mut rec = again.record;
    assert_eq!(rec.version, connected.version + 1);
    rec.version = connected.version;
    assert_eq!(
        rec, connected,
        "a retried connect changes nothing but the version"
    );
}

#[test]
fn user_confirmed_before_an_agent_is_refused() {
    let scn = delay();
    for (desired, state) in [(Some(600), S::Scheduled), (None, S::WaitForAgent)] {
        let rec = create(&scn, desired).record;
        let (st, event, message) =
            not_allowed(machine::apply(&rec, &scn, &Event::UserConfirmed, secs(10)));
        assert_eq!(st, state);
        assert_eq!(event, "user_confirmed");
        assert!(message.contains(state.gms_name()), "{message}");
    }
}

#[test]
fn user_confirm_timeout_follows_the_scenario() {
    let reserve = [at(30, reserved("agent-1"))];
    let steps = [reserve[0].clone(), fire(TimerKind::UserConfirm)];

    let walk = check(
        "timeout connect-anyway",
        &delay_with("_on_user_confirm_timeout", r#""connect-anyway""#),
        None,
        &steps,
        (S::Connected, None),
        &["NotifyAgent(agent.offer)"],
    );
    assert_eq!(walk.record.agent.as_deref(), Some("agent-1"));
    assert_eq!(walk.record.served_by.as_deref(), Some("agent-1"));
    assert_eq!(walk.record.connected_at, Some(secs(90)));

    let walk = check(
        "timeout fail",
        &delay_with("_on_user_confirm_timeout", r#""fail""#),
        None,
        &steps,
        (S::Completed, Some(R::FailUserNoConfirm)),
        &[
            "TimerCancelled(ttl)",
            "AgentReleased",
            "NotifyDevice(service.completed)",
        ],
    );
    assert_eq!(walk.record.agent, None);
    assert_eq!(walk.record.completed_at, Some(secs(90)));
    assert!(walk.record.timers.is_empty());
    assert!(walk.last().contains(&Effect::AgentReleased {
        agent: "agent-1".into()
    }));

    let walk = check(
        "timeout requeue",
        &delay(),
        None,
        &steps,
        (S::WaitForAgent, None),
        &["AgentReleased", "EnteredQueue", "TimerArmed(find_agent)"],
    );
    let rec = &walk.record;
    assert_eq!(rec.agent, None);
    assert_eq!(rec.served_by, None);
    assert_eq!(rec.ticket.since, t0(), "a requeued service keeps its place");
    assert_eq!(rec.confirm_attempts, 1);
    assert!(rec.is_queued());
    // A fresh find-agent wait from the requeue.
    assert_eq!(
        rec.timers,
        BTreeMap::from([
            (TimerKind::FindAgent, secs(90 + 7200)),
            (TimerKind::Ttl, secs(86400))
        ])
    );
}

#[test]
fn requeue_gives_up_after_max_user_confirm_attempts() {
    let scn = delay(); // requeue, 3 attempts
    let mut steps = Vec::new();
    for round in 0..3 {
        steps.push(at(1000 * round + 10, reserved(&format!("agent-{round}"))));
        steps.push(fire(TimerKind::UserConfirm));
    }
    // After two misses the service is back in the queue.
    let walk = check(
        "two misses",
        &scn,
        None,
        &steps[..4],
        (S::WaitForAgent, None),
        &["AgentReleased", "EnteredQueue", "TimerArmed(find_agent)"],
    );
    assert_eq!(walk.record.confirm_attempts, 2);
    assert_eq!(walk.record.ticket.since, t0());

    let walk = check(
        "three misses",
        &scn,
        None,
        &steps,
        (S::Completed, Some(R::FailUserNoConfirm)),
        &[
            "TimerCancelled(ttl)",
            "AgentReleased",
            "NotifyDevice(service.completed)",
        ],
    );
    assert_eq!(walk.record.confirm_attempts, 3);
    assert_eq!(walk.record.agent, None);
    // One agent-available push per confirmation asked.
    let asked = walk
        .record
        .outbox
        .iter()
        .filter(|n| n.tag.starts_with("service.agentavailable."))
        .count();
    assert_eq!(asked, 3);

    // With a single attempt the first miss is final.
    check(
        "one attempt",
        &delay_with("_max_user_confirm_attempts", "1"),
        None,
        &steps[..2],
        (S::Completed, Some(R::FailUserNoConfirm)),
        &[
            "TimerCancelled(ttl)",
            "AgentReleased",
            "NotifyDevice(service.completed)",
        ],
    );
}

#[test]
fn find_agent_timeout_fails_the_service() {
    let walk = check(
        "find agent timeout",
        &delay(),
        None,
        &[fire(TimerKind::FindAgent)],
        (S::Completed, Some(R::FailTargetNotFound)),
        &[
            "LeftQueue",
            "TimerCancelled(ttl)",
            "NotifyDevice(service.completed)",
        ],
    );
    assert_eq!(walk.record.completed_at, Some(secs(7200)));
    assert!(walk.record.timers.is_empty());

    // Without _find_agent_timeout the service waits until its TTL.
    let scn = ScenarioBuilder::chat_delay()
        .unset("_find_agent_timeout")
        .build();
    let rec = create(&scn, None).record;
    assert_eq!(rec.timers, BTreeMap::from([(TimerKind::Ttl, secs(86400))]));
}

// ---------------------------------------------------------------------------
// TTL and cancel from every active state
// ---------------------------------------------------------------------------

/// Steps that bring a chat-delay service (created at t0, or scheduled for
/// t0+600 when `desired` is set) to each active state.
fn to_state(state: ServiceState) -> (Option<i64>, Vec<Step>) {
    match state {
        S::Scheduled => (Some(600), vec![]),
        S::WaitForAgent => (None, vec![]),
        S::WaitForUserConfirm => (None, vec![at(30, reserved("agent-1"))]),
        S::Connected => (
            None,
            vec![at(30, reserved("agent-1")), at(40, Event::UserConfirmed)],
        ),
        S::Completed => (
            None,
            vec![
                at(30, reserved("agent-1")),
                at(40, Event::UserConfirmed),
                at(100, Event::Complete),
            ],
        ),
    }
}

#[test]
fn ttl_and_cancel_complete_every_active_state() {
    let scn = delay();
    // (state, effects of TTL, effects of cancel)
    let table: [(ServiceState, &[&str], &[&str]); 4] = [
        (
            S::Scheduled,
            &[
                "TimerCancelled(desired_time)",
                "NotifyDevice(service.completed)",
            ],
            &[
                "TimerCancelled(desired_time)",
                "TimerCancelled(ttl)",
                "NotifyDevice(service.completed)",
            ],
        ),
        (
            S::WaitForAgent,
            &[
                "LeftQueue",
                "TimerCancelled(find_agent)",
                "NotifyDevice(service.completed)",
            ],
            &[
                "LeftQueue",
                "TimerCancelled(find_agent)",
                "TimerCancelled(ttl)",
                "NotifyDevice(service.completed)",
            ],
        ),
        (
            S::WaitForUserConfirm,
            &[
                "TimerCancelled(user_confirm)",
                "AgentReleased",
                "NotifyDevice(service.completed)",
            ],
            &[
                "TimerCancelled(user_confirm)",
                "TimerCancelled(ttl)",
                "AgentReleased",
                "NotifyDevice(service.completed)",
            ],
        ),
        (
            S::Connected,
            &[
                "HandleSample",
                "AgentReleased",
                "NotifyDevice(service.completed)",
            ],
            &[
                "TimerCancelled(ttl)",
                "HandleSample",
                "AgentReleased",
                "NotifyDevice(service.completed)",
            ],
        ),
    ];
    for (state, ttl_effects, cancel_effects) in table {
        let (desired, mut steps) = to_state(state);
        let label = format!("ttl in {state:?}");
        steps.push(fire(TimerKind::Ttl));
        let walk = check(
            &label,
            &scn,
            desired,
            &steps,
            (S::Completed, Some(R::FailTimeoutTtl)),
            ttl_effects,
        );
        assert_eq!(walk.record.agent, None, "{label}");
        assert!(walk.record.timers.is_empty(), "{label}");
        assert!(!walk.record.is_queued(), "{label}");

        steps.pop();
        steps.push(at(500, Event::Cancel));
        let label = format!("cancel in {state:?}");
        let walk = check(
            &label,
            &scn,
            desired,
            &steps,
            (S::Completed, Some(R::Cancelled)),
            cancel_effects,
        );
        assert_eq!(walk.record.agent, None, "{label}");
        assert_eq!(walk.record.completed_at, Some(secs(500)), "{label}");
        assert!(walk.record.timers.is_empty(), "{label}");
        // The customer is told why it ended.
        let last = walk.record.outbox.last().expect("a completion push");
        assert_eq!(last.payload["_callback_reason"], "CANCELLED", "{label}");
        assert_eq!(last.payload["_callback_state"], "COMPLETED", "{label}");
        if state == S::WaitForUserConfirm || state == S::Connected {
            assert!(
                walk.last().contains(&Effect::AgentReleased {
                    agent: "agent-1".into()
                }),
                "{label}"
            );
        }
    }
}

#[test]
fn complete_in_connected_records_the_handle_time() {
    let walk = check(
        "complete",
        &delay(),
        None,
        &[
            at(30, reserved("agent-1")),
            at(40, Event::UserConfirmed),
            at(160, Event::Complete),
        ],
        (S::Completed, Some(R::AgentConnected)),
        &[
            "TimerCancelled(ttl)",
            "HandleSample",
            "AgentReleased",
            "NotifyDevice(service.completed)",
        ],
    );
    assert!(walk.last().contains(&Effect::HandleSample {
        queue: "support".into(),
        seconds: 120.0
    }));
    let rec = &walk.record;
    assert_eq!(rec.agent, None);
    assert_eq!(rec.served_by.as_deref(), Some("agent-1"));
    assert_eq!(rec.completed_at, Some(secs(160)));
}

// ---------------------------------------------------------------------------
// A supervisor moves and requeues
// ---------------------------------------------------------------------------

fn moved(queue: Option<&str>, agent: Option<&str>) -> Event {
    Event::Moved {
        queue: queue.map(str::to_owned),
        agent: agent.map(str::to_owned),
    }
}

#[test]
fn moving_a_queued_service_keeps_its_place_in_the_new_queue() {
    let walk = check(
        "move while queued",
        &delay(),
        None,
        &[at(100, moved(Some("billing"), None))],
        (S::WaitForAgent, None),
        &["LeftQueue", "EnteredQueue"],
    );
    assert!(walk.last().contains(&Effect::LeftQueue {
        queue: "support".into()
    }));
    assert!(walk.last().contains(&Effect::EnteredQueue {
        queue: "billing".into()
    }));
    let rec = &walk.record;
    assert_eq!(rec.ticket.queue, "billing");
    // Its age is its place: the time it joined, not the time it moved.
    assert_eq!(rec.ticket.since, t0());
    assert_eq!(rec.ticket.preferred_agent, None);
    // The wait for an agent goes on; it does not start again.
    assert_eq!(rec.timers[&TimerKind::FindAgent], secs(7200));
    // A supervisor's move is in the history though the state stays.
    let last = rec.history.last().unwrap();
    assert_eq!(
        (last.from, last.to, &*last.event, last.at),
        (Some(S::WaitForAgent), S::WaitForAgent, "moved", secs(100))
    );
}

#[test]
fn moving_to_a_preferred_agent_keeps_it_for_that_agent_for_a_while() {
    let scn = delay();
    let walk = check(
        "move to an agent",
        &scn,
        None,
        &[at(100, moved(None, Some("agent-7")))],
        (S::WaitForAgent, None),
        &["LeftQueue", "EnteredQueue", "TimerArmed(preferred_agent)"],
    );
    let rec = &walk.record;
    assert_eq!(rec.ticket.queue, "support");
    assert_eq!(rec.ticket.preferred_agent.as_deref(), Some("agent-7"));
    assert_eq!(
        rec.schema, RECORD_SCHEMA_VIDEO,
        "a preferred agent needs schema 3"
    );
    let due = rec.timers[&TimerKind::PreferredAgent];
    assert_eq!(
        due,
        secs(100) + Duration::from_std(scn.preferred_agent_timeout).unwrap()
    );
    // Another agent may not take it; the preferred one may.
    let (_, event, _) = not_allowed(machine::apply(rec, &scn, &reserved("agent-1"), secs(110)));
    assert_eq!(event, "agent_reserved");
    let taken = machine::apply(rec, &scn, &reserved("agent-7"), secs(110)).unwrap();
    assert_eq!(taken.record.state, S::WaitForUserConfirm);
}

#[test]
fn moving_an_offered_service_takes_it_back_from_its_agent_first() {
    let walk = check(
        "move while routing",
        &delay(),
        None,
        &[
            at(30, reserved("agent-1")),
            at(50, moved(Some("billing"), Some("agent-2"))),
        ],
        (S::WaitForAgent, None),
        &[
            "AgentReleased",
            "TimerCancelled(user_confirm)",
            "EnteredQueue",
            "TimerArmed(find_agent)",
            "TimerArmed(preferred_agent)",
        ],
    );
    assert!(walk.last().contains(&Effect::AgentReleased {
        agent: "agent-1".into()
    }));
    let rec = &walk.record;
    assert_eq!(rec.agent, None);
    assert_eq!(
        (rec.ticket.queue.as_str(), rec.ticket.since),
        ("billing", t0())
    );
    assert_eq!(rec.ticket.preferred_agent.as_deref(), Some("agent-2"));
    let last = rec.history.last().unwrap();
    assert_eq!(
        (last.from, last.to, &*last.event),
        (Some(S::WaitForUserConfirm), S::WaitForAgent, "moved")
    );
}

#[test]
fn moving_a_scheduled_service_changes_where_it_will_wait() {
    let scn = delay();
    let walk = check(
        "move while scheduled",
        &scn,
        Some(600),
        &[at(100, moved(Some("billing"), None))],
        (S::Scheduled, None),
        &[],
    );
    assert_eq!(walk.record.ticket.queue, "billing");
    let walk = check(
        "its time comes",
        &scn,
        Some(600),
        &[
            at(100, moved(Some("billing"), None)),
            fire(TimerKind::DesiredTime),
        ],
        (S::WaitForAgent, None),
        &["EnteredQueue", "TimerArmed(find_agent)"],
    );
    assert!(walk.last().contains(&Effect::EnteredQueue {
        queue: "billing".into()
    }));
}

#[test]
fn a_move_is_refused_once_an_agent_has_the_service_or_when_it_moves_nothing() {
    let scn = delay();
    for state in [S::Connected, S::Completed] {
        let (desired, steps) = to_state(state);
        let rec = run(&scn, desired, &steps).record;
        let got = machine::apply(&rec, &scn, &moved(Some("billing"), None), secs(500));
        let (at_state, event, message) = not_allowed(got);
        assert_eq!((at_state, event), (state, "moved"));
        if state == S::Connected {
            assert!(message.contains("requeue"), "{message}");
        }
    }
    let rec = run(&scn, None, &[]).record;
    let got = machine::apply(&rec, &scn, &moved(None, None), secs(500));
    let Err(TransitionError::NotAllowed { message, .. }) = got else {
        panic!("a move to nowhere is accepted: {got:?}");
    };
    assert!(message.contains("queue or an agent"), "{message}");
}

#[test]
fn requeue_frees_the_agent_and_keeps_the_age() {
    let scn = delay();
    // (state, steps to it, effects of the requeue)
    let table: [(&str, Vec<Step>, &[&str]); 2] = [
        (
            "ROUTING",
            vec![at(30, reserved("agent-1"))],
            &[
                "AgentReleased",
                "TimerCancelled(user_confirm)",
                "EnteredQueue",
                "TimerArmed(find_agent)",
            ],
        ),
        (
            "PROCESSING",
            vec![at(30, reserved("agent-1")), at(40, Event::UserConfirmed)],
            &["AgentReleased", "EnteredQueue", "TimerArmed(find_agent)"],
        ),
    ];
    for (label, mut steps, effects) in table {
        steps.push(at(200, Event::Requeued));
        let walk = check(label, &scn, None, &steps, (S::WaitForAgent, None), effects);
        assert!(
            walk.last().contains(&Effect::AgentReleased {
                agent: "agent-1".into()
            }),
            "{label}"
        );
        let rec = &walk.record;
        assert_eq!(
            (rec.agent.as_deref(), rec.served_by.as_deref()),
            (None, None),
            "{label}"
        );
        assert_eq!(rec.connected_at, None, "{label}");
        assert_eq!(
            (rec.ticket.queue.as_str(), rec.ticket.since),
            ("support", t0()),
            "{label}"
        );
        let last = rec.history.last().unwrap();
        assert_eq!(last.event, "requeued", "{label}");
        // The next agent is asked for as the first was.
        let again = machine::apply(rec, &scn, &reserved("agent-2"), secs(300)).unwrap();
        assert_eq!(again.record.state, S::WaitForUserConfirm, "{label}");
    }
    for state in [S::Scheduled, S::WaitForAgent, S::Completed] {
        let (desired, steps) = to_state(state);
        let rec = run(&scn, desired, &steps).record;
        let got = machine::apply(&rec, &scn, &Event::Requeued, secs(500));
        let (at_state, event, _) = not_allowed(got);
        assert_eq!((at_state, event), (state, "requeued"));
    }
}

#[test]
fn requeue_takes_the_agent_out_of_the_chat() {
    let scn = delay();
    let walk = run(
        &scn,
        None,
        &[
            at(30, reserved("agent-1")),
            at(40, Event::UserConfirmed),
            at(50, chat_started()),
            at(60, Event::Requeued),
        ],
    );
    let chat = walk.record.chat.as_ref().expect("the chat");
    assert!(chat.is_open(), "the customer's chat goes on");
    assert!(!chat.agent_joined);
    let left = chat.transcript.last().unwrap();
    assert_eq!((left.kind, left.party), (ChatEntryKind::Left, Party::Agent));
    assert!(walk
        .last()
        .iter()
        .any(|e| matches!(e, Effect::NotifyDevice { tag, .. } if tag.starts_with("service.chat"))));
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

#[test]
fn chat_delay_chat_opens_after_connect_with_both_parties() {
    let scn = delay();
    let mut steps = vec![
        at(30, reserved("agent-1")),
        at(40, Event::UserConfirmed),
        at(50, chat_started()),
    ];
    let walk = check(
        "chat started",
        &scn,
        None,
        &steps,
        (S::Connected, None),
        // Each side hears that the other joined.
        &["NotifyAgent(agent.chat)", "NotifyDevice(service.chat)"],
    );
    let chat = walk.record.chat.as_ref().expect("chat open");
    assert!(chat.is_open());
    assert!(chat.agent_joined);
    assert_eq!(chat.started_at, secs(50));
    assert_eq!(chat.nickname, "John");
    assert_eq!(chat.subject, "testing");
    assert_eq!(chat.parameters["email"], "j.h@gmail.com");
    let entries: Vec<_> = chat
        .transcript
        .iter()
        .map(|e| (e.index, e.kind, e.party, e.nickname.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            (1, ChatEntryKind::Joined, Party::Client, "John"),
            (2, ChatEntryKind::Joined, Party::Agent, "agent-1"),
        ]
    );

    // Twice is refused.
    let (state, event, message) = not_allowed(machine::apply(
        &walk.record,
        &scn,
        &chat_started(),
        secs(55),
    ));
    assert_eq!((state, event), (S::Connected, "chat_started"));
    assert!(message.contains("already"), "{message}");

    // The client's message goes to the agent, the agent's to the device.
    steps.push(at(60, say(Party::Client, "hello")));
    let walk = check(
        "client says",
        &scn,
        None,
        &steps,
        (S::Connected, None),
        &["NotifyAgent(agent.chat)"],
    );
    let last = walk.record.agent_outbox.last().unwrap();
    assert_eq!(last.tag, format!("agent.chat.{ID}"));
    let body: Value = serde_json::from_str(&last.message).unwrap();
    assert_eq!(body["text"], "hello");
    assert_eq!(body["index"], 3);

    steps.push(at(70, say(Party::Agent, "hi John")));
    let walk = check(
        "agent says",
        &scn,
        None,
        &steps,
        (S::Connected, None),
        &["NotifyDevice(service.chat)"],
    );
    let last = walk.record.outbox.last().unwrap();
    assert_eq!(last.tag, format!("service.chat.{ID}"));
    assert_eq!(last.payload["text"], "hi John");
    assert_eq!(last.payload["index"], 4);
    let transcript = &walk.record.chat.as_ref().unwrap().transcript;
    assert_eq!(transcript.len(), 4);
    assert_eq!(transcript[2].kind, ChatEntryKind::Text);
    assert_eq!(transcript[3].party, Party::Agent);

    // The client leaves: the interaction reached the agent.
    steps.push(at(100, left(Party::Client)));
    let walk = check(
        "client leaves",
        &scn,
        None,
        &steps,
        (S::Completed, Some(R::AgentConnected)),
        &[
            "NotifyAgent(agent.chat)",
            "TimerCancelled(ttl)",
            "HandleSample",
            "AgentReleased",
            "NotifyDevice(service.completed)",
        ],
    );
    let chat = walk.record.chat.as_ref().unwrap();
    assert_eq!(chat.ended_at, Some(secs(100)));
    let last = chat.transcript.last().unwrap();
    assert_eq!(
        (last.kind, last.party),
        (ChatEntryKind::Left, Party::Client)
    );
}

#[test]
fn chat_delay_chat_is_refused_before_connect() {
    let scn = delay();
    for state in [S::Scheduled, S::WaitForAgent, S::WaitForUserConfirm] {
        let (desired, steps) = to_state(state);
        let rec = run(&scn, desired, &steps).record;
        for event in [
            chat_started(),
            say(Party::Client, "hi"),
            left(Party::Client),
        ] {
            let (st, name, message) = not_allowed(machine::apply(&rec, &scn, &event, secs(50)));
            assert_eq!(st, state);
            assert_eq!(name, event.name());
            assert!(message.contains(state.gms_name()), "{state:?}: {message}");
        }
    }
}

#[test]
fn chat_immediate_chat_waits_in_the_queue_and_the_agent_joins_when_reserved() {
    let scn = immediate();
    let mut steps = vec![at(5, chat_started())];
    let walk = check(
        "chat started while queued",
        &scn,
        None,
        &steps,
        (S::WaitForAgent, None),
        &[],
    );
    let chat = walk.record.chat.as_ref().unwrap();
    assert!(!chat.agent_joined);
    assert_eq!(chat.transcript.len(), 1);
    assert!(walk.record.is_queued());

    // Twice is refused (the message is checked by the state/event table).
    let (state, event, _) =
        not_allowed(machine::apply(&walk.record, &scn, &chat_started(), secs(6)));
    assert_eq!((state, event), (S::WaitForAgent, "chat_started"));
    // The agent cannot speak before it joined.
    assert!(matches!(
        machine::apply(&walk.record, &scn, &say(Party::Agent, "hi"), secs(6)),
        Err(TransitionError::NotAllowed { .. })
    ));

    steps.push(at(10, say(Party::Client, "is anyone there?")));
    let walk = check(
        "client says while queued",
        &scn,
        None,
        &steps,
        (S::WaitForAgent, None),
        &["NotifyAgent(agent.chat)"],
    );
    assert_eq!(walk.record.chat.as_ref().unwrap().transcript.len(), 2);
    assert_eq!(
        walk.record.agent_outbox.last().unwrap().tag,
        format!("agent.chat.{ID}")
    );

    steps.push(at(40, reserved("agent-1")));
    let walk = check(
        "reserved",
        &scn,
        None,
        &steps,
        (S::Connected, None),
        &[
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "NotifyAgent(agent.offer)",
            "NotifyDevice(service.chat)",
        ],
    );
    let rec = &walk.record;
    assert_eq!(rec.served_by.as_deref(), Some("agent-1"));
    let chat = rec.chat.as_ref().unwrap();
    assert!(chat.agent_joined);
    let last = chat.transcript.last().unwrap();
    assert_eq!(
        (last.index, last.kind, last.party, last.nickname.as_str()),
        (3, ChatEntryKind::Joined, Party::Agent, "agent-1")
    );
    // No confirmation is asked in chat-immediate.
    assert!(rec
        .outbox
        .iter()
        .all(|n| !n.tag.starts_with("service.agentavailable.")));
    assert_eq!(rec.confirm_attempts, 0);

    steps.push(at(50, say(Party::Agent, "hello")));
    steps.push(at(60, left(Party::Agent)));
    check(
        "agent leaves",
        &scn,
        None,
        &steps,
        (S::Completed, Some(R::AgentConnected)),
        &[
            "NotifyDevice(service.chat)",
            "TimerCancelled(ttl)",
            "HandleSample",
            "AgentReleased",
            "NotifyDevice(service.completed)",
        ],
    );
}

#[test]
fn chat_immediate_client_leaving_the_queue_deletes_the_interaction() {
    let walk = check(
        "client leaves while queued",
        &immediate(),
        None,
        &[at(5, chat_started()), at(20, left(Party::Client))],
        (S::Completed, Some(R::FailInteractionDeleted)),
        &[
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "TimerCancelled(ttl)",
            "NotifyDevice(service.completed)",
        ],
    );
    let chat = walk.record.chat.as_ref().unwrap();
    assert_eq!(chat.ended_at, Some(secs(20)));
    assert_eq!(chat.transcript.last().unwrap().kind, ChatEntryKind::Left);
    assert!(!walk.record.is_queued());
}

// ---------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------

#[test]
fn internal_and_agent_notifications_in_every_active_state() {
    let scn = delay();
    for state in [
        S::Scheduled,
        S::WaitForAgent,
        S::WaitForUserConfirm,
        S::Connected,
    ] {
        let (desired, steps) = to_state(state);
        let rec = run(&scn, desired, &steps).record;

        let applied = machine::apply(&rec, &scn, &internal_notification(), secs(300)).unwrap();
        let n = applied.record.outbox.last().unwrap();
        assert_eq!(
            n.payload,
            json!({
                "_internal_message": "MESSAGE_FOR_MOBILE_APP_INTERNAL_USE",
                "_id": ID,
                "_display_message": "Message to be displayed to user",
            }),
            "{state:?}"
        );
        assert_eq!(
            applied.effects,
            [Effect::NotifyDevice {
                id: n.id.clone(),
                tag: n.tag.clone()
            }],
            "{state:?}"
        );
        assert!(n.tag.ends_with(ID), "{state:?}: {}", n.tag);
        assert_eq!(applied.record.state, state);

        let applied = machine::apply(&rec, &scn, &agent_notification(), secs(300)).unwrap();
        let n = applied.record.agent_outbox.last().unwrap();
        assert_eq!(n.tag, format!("agent.message.{ID}"), "{state:?}");
        let message: Value = serde_json::from_str(&n.message).expect("message is JSON text");
        assert_eq!(
            message,
            json!({
                "_id": ID,
                "_internal_message": "MESSAGE_FOR_AGENT_DESKTOP_INTERNAL_USE",
                "_display_message": "Message to be displayed to agent",
            }),
            "{state:?}"
        );
        assert_eq!(kinds(&applied.effects), ["NotifyAgent(agent.message)"]);
        assert_eq!(applied.record.state, state);
    }
}

#[test]
fn retrieved_notifications_leave_the_outbox_in_any_state() {
    let scn = delay();
    let rec = run(
        &scn,
        None,
        &[
            at(10, internal_notification()),
            at(11, internal_notification()),
            at(12, agent_notification()),
            at(13, agent_notification()),
            at(14, Event::Cancel),
        ],
    )
    .record;
    assert_eq!(rec.state, S::Completed);
    assert_eq!(rec.outbox.len(), 3); // two internal + the completion
    assert_eq!(rec.agent_outbox.len(), 2);

    // The device's retrieval empties the device outbox only.
    let out = machine::apply(&rec, &scn, &Event::NotificationsRetrieved, secs(20)).unwrap();
    assert!(out.effects.is_empty());
    assert!(out.record.outbox.is_empty());
    assert_eq!(out.record.agent_outbox, rec.agent_outbox);
    assert_eq!(out.record.version, rec.version + 1);
    // Again on an empty outbox: fine.
    let out = machine::apply(&out.record, &scn, &Event::NotificationsRetrieved, secs(21)).unwrap();
    assert!(out.record.outbox.is_empty());

    // The agent desktop's retrieval empties the agent outbox only.
    let agent = machine::apply(&rec, &scn, &Event::AgentNotificationsRetrieved, secs(22)).unwrap();
    assert!(agent.effects.is_empty());
    assert!(agent.record.agent_outbox.is_empty());
    assert_eq!(agent.record.outbox, rec.outbox);
    assert_eq!(agent.record.state, S::Completed);
    assert_eq!(agent.record.reason, Some(R::Cancelled));
    assert_eq!(agent.record.history, rec.history);
}

#[test]
fn outboxes_keep_the_newest_notifications() {
    let scn = delay();
    let mut rec = create(&scn, None).record;
    for i in 0..OUTBOX_LIMIT + 5 {
        rec = machine::apply(&rec, &scn, &internal_notification(), secs(i as i64))
            .unwrap()
            .record;
        rec = machine::apply(&rec, &scn, &agent_notification(), secs(i as i64))
            .unwrap()
            .record;
    }
    assert_eq!(rec.outbox.len(), OUTBOX_LIMIT);
    assert_eq!(rec.agent_outbox.len(), OUTBOX_LIMIT);
    assert_eq!(rec.outbox[0].at, secs(5));
    assert_eq!(rec.agent_outbox[0].at, secs(5));
    // Ids stay unique.
    let ids: std::collections::BTreeSet<_> = rec.outbox.iter().map(|n| &n.id).collect();
    assert_eq!(ids.len(), OUTBOX_LIMIT);
}

// ---------------------------------------------------------------------------
// Restoring does not re-run entry actions
// ---------------------------------------------------------------------------

#[test]
fn restoring_a_record_does_not_rerun_entry_actions() {
    let scn = delay();
    for state in [
        S::Scheduled,
        S::WaitForAgent,
        S::WaitForUserConfirm,
        S::Connected,
    ] {
        let (desired, steps) = to_state(state);
        let before = run(&scn, desired, &steps).record;
        for event in [internal_notification(), agent_notification()] {
            let applied = machine::apply(&before, &scn, &event, secs(300)).unwrap();
            let mut after = applied.record.clone();
            assert_eq!(after.state, state);
            assert_eq!(after.timers, before.timers, "{state:?} {event:?}: timers");
            assert_eq!(after.confirm_attempts, before.confirm_attempts);
            assert_eq!(
                after
                    .outbox
                    .iter()
                    .filter(|n| n.tag.starts_with("service.agentavailable."))
                    .count(),
                before
                    .outbox
                    .iter()
                    .filter(|n| n.tag.starts_with("service.agentavailable."))
                    .count(),
                "{state:?} {event:?}: no second agent-available push"
            );
            assert_eq!(applied.effects.len(), 1, "{state:?}: {:?}", applied.effects);
            // Apart from the one new notification, nothing changed.
            match event {
                Event::InternalNotification { .. } => {
                    assert_eq!(after.outbox.len(), before.outbox.len() + 1);
                    after.outbox.pop();
                }
                _ => {
                    assert_eq!(after.agent_outbox.len(), before.agent_outbox.len() + 1);
                    after.agent_outbox.pop();
                }
            }
            after.version = before.version;
            after.seq = before.seq;
            assert_eq!(after, before, "{state:?} {event:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------

#[test]
fn every_state_change_is_in_the_history() {
    let walk = run(
        &delay(),
        None,
        &[
            at(30, reserved("agent-1")),
            fire(TimerKind::UserConfirm), // at 90: requeue
            at(100, reserved("agent-2")),
            at(110, internal_notification()), // no state change
            at(120, Event::UserConfirmed),
            at(130, chat_started()), // no state change
            at(200, Event::Complete),
        ],
    );
    let got: Vec<_> = walk
        .record
        .history
        .iter()
        .map(|h| (h.at, h.from, h.to, &*h.event, h.reason, h.agent.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (t0(), None, S::Scheduled, "created", None, None),
            (
                t0(),
                Some(S::Scheduled),
                S::WaitForAgent,
                "desired_time_reached",
                None,
                None
            ),
            (
                secs(30),
                Some(S::WaitForAgent),
                S::WaitForUserConfirm,
                "agent_reserved",
                None,
                Some("agent-1")
            ),
            (
                secs(90),
                Some(S::WaitForUserConfirm),
                S::WaitForAgent,
                "user_confirm_timeout",
                None,
                None
            ),
            (
                secs(100),
                Some(S::WaitForAgent),
                S::WaitForUserConfirm,
                "agent_reserved",
                None,
                Some("agent-2")
            ),
            (
                secs(120),
                Some(S::WaitForUserConfirm),
                S::Connected,
                "user_confirmed",
                None,
                Some("agent-2")
            ),
            (
                secs(200),
                Some(S::Connected),
                S::Completed,
                "complete",
                Some(R::AgentConnected),
                Some("agent-2")
            ),
        ]
    );
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

#[test]
fn records_round_trip_through_encode_and_decode() {
    let scn = delay();
    let records = [
        create(&scn, Some(600)).record,
        run(&scn, None, &[at(30, reserved("agent-1"))]).record,
        run(
            &scn,
            None,
            &[
                at(30, reserved("agent-1")),
                at(40, Event::UserConfirmed),
                at(50, chat_started()),
                at(60, say(Party::Client, "héllo \"quoted\" ✓")),
                at(70, agent_notification()),
            ],
        )
        .record,
        run(
            &immediate(),
            None,
            &[at(5, chat_started()), at(9, left(Party::Client))],
        )
        .record,
    ];
    for rec in records {
        let bytes = rec.encode();
        let back = ServiceRecord::decode(&bytes)
            .unwrap_or_else(|e| panic!("{:?} does not decode: {e}", rec.state));
        assert_eq!(back, rec);
        // Still usable by the machine after a round trip.
        let _ = machine::apply(&back, &scn, &Event::NotificationsRetrieved, secs(1)).unwrap();
    }
}

#[test]
fn decode_refuses_a_newer_schema_and_garbage() {
    let rec = run(&delay(), None, &[at(30, reserved("agent-1"))]).record;
    let mut value: Value = serde_json::from_slice(&rec.encode()).unwrap();
    value["schema"] = json!(RECORD_SCHEMA + 1);
    let err = ServiceRecord::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(
        err.contains(&format!("schema {}", RECORD_SCHEMA + 1)),
        "{err}"
    );
    assert!(err.contains(ID), "{err}");

    value["schema"] = json!(RECORD_SCHEMA);
    assert!(ServiceRecord::decode(&serde_json::to_vec(&value).unwrap()).is_ok());

    // Fields with defaults may be missing.
    for key in [
        "outbox",
        "agent_outbox",
        "history",
        "timers",
        "seq",
        "confirm_attempts",
    ] {
        value.as_object_mut().unwrap().remove(key);
    }
    let back = ServiceRecord::decode(&serde_json::to_vec(&value).unwrap()).unwrap();
    assert!(back.timers.is_empty() && back.outbox.is_empty());

    assert!(ServiceRecord::decode(b"not json").is_err());
    assert!(ServiceRecord::decode(b"{}").is_err());
}

// ---------------------------------------------------------------------------
// The (state, event) table
// ---------------------------------------------------------------------------

// Each table is an `event_table!`: one line per event (and per timer kind),
// matched without a wildcard, so a new `Event` variant or `TimerKind` does
// not compile until both tables say what it does in every row. Timers fire
// at their due time when the row's record holds them, else as stale timers.

/// Video asked for by `by`, the chat's agent free, with a room made at the
/// table's time.
fn start_video(by: Party) -> Event {
    Event::StartVideo {
        by,
        routing: testing::routing(None),
        scenario: "video-call".to_owned(),
        conversation_id: None,
        room: Box::new(testing::room("KM3TQ7X", 49_990)),
        agent_free: true,
    }
}

fn open_room() -> Event {
    Event::OpenRoom {
        room: testing::room("HJ4PRW9", 49_990),
    }
}

fn agent_linked() -> Event {
    Event::AgentLinked {
        agent: "agent-1".to_owned(),
        url: testing::agent_url("HJ4PRW9"),
        token: "agent-HJ4PRW9".to_owned(),
    }
}

fn survey() -> Event {
    Event::SurveyAnswered {
        question: "How was your call?".to_owned(),
        scale: 5,
        score: 4,
        comment: None,
    }
}

#[test]
fn state_event_table_chat_delay() {
    let scn = delay();
    let rec = |desired, steps: &[Step]| run(&scn, desired, steps).record;
    let routing = [at(30, reserved("agent-1"))];
    let connected = [routing[0].clone(), at(40, Event::UserConfirmed)];
    let chatting = [
        connected[0].clone(),
        connected[1].clone(),
        at(50, chat_started()),
    ];
    let done = [
        connected[0].clone(),
        connected[1].clone(),
        at(60, Event::Complete),
    ];
    let rows = [
        ("SCHEDULED", rec(Some(600), &[])),
        ("QUEUED", rec(None, &[])),
        ("ROUTING", rec(None, &routing)),
        ("PROCESSING", rec(None, &connected)),
        ("PROCESSING+chat", rec(None, &chatting)),
        ("COMPLETED", rec(None, &done)),
    ];
    let (q, rt, pr) = (
        To(S::WaitForAgent),
        To(S::WaitForUserConfirm),
        To(S::Connected),
    );
    let (tnf, ttl) = (Done(R::FailTargetNotFound), Done(R::FailTimeoutTtl));
    let (cxl, ac) = (Done(R::Cancelled), Done(R::AgentConnected));
    use TimerKind as T;
    let lines = event_table! {
        //                                                    SCHED  QUEUED ROUTING PROC  PROC+chat DONE
        Event::Created => Event::Created,                     [No,    No,    No,    No,    No,    No   ];
        Event::TimerFired { kind: T::DesiredTime, .. } => T::DesiredTime, [q, Stale, Stale, Stale, Stale, Stale];
        Event::TimerFired { kind: T::FindAgent, .. } => T::FindAgent, [Stale, tnf, Stale, Stale, Stale, Stale];
        // The confirmation timed out: requeue.
        Event::TimerFired { kind: T::UserConfirm, .. } => T::UserConfirm, [Stale, Stale, q, Stale, Stale, Stale];
        Event::TimerFired { kind: T::Ttl, .. } => T::Ttl,     [ttl,   ttl,   ttl,   ttl,   ttl,   Stale];
        Event::AgentReserved { .. } => reserved("agent-9"),   [No,    rt,    No,    No,    No,    No   ];
        Event::UserConfirmed => Event::UserConfirmed,         [No,    No,    pr,    Same,  Same,  No   ];
        Event::ChatStarted { .. } => chat_started(),          [No,    No,    No,    Same,  No,    No   ];
        Event::ChatMessage { .. } => say(Party::Client, "hi"), [No,   No,    No,    No,    Same,  No   ];
        Event::ChatMessage { .. } => say(Party::Agent, "hi"), [No,    No,    No,    No,    Same,  No   ];
        Event::ChatLeft { .. } => left(Party::Client),        [No,    No,    No,    No,    ac,    No   ];
        Event::ChatLeft { .. } => left(Party::Agent),         [No,    No,    No,    No,    ac,    No   ];
        Event::Complete => Event::Complete,                   [No,    No,    No,    ac,    ac,    No   ];
        Event::Cancel => Event::Cancel,                       [cxl,   cxl,   cxl,   cxl,   cxl,   No   ];
        Event::InternalNotification { .. } => internal_notification(),     [Same,  Same,  Same,  Same,  Same,  No   ];
        Event::AgentNotification { .. } => agent_notification(),      [Same,  Same,  Same,  Same,  Same,  No   ];
        Event::NotificationsRetrieved => Event::NotificationsRetrieved, [Same, Same, Same, Same, Same, Same];
        Event::AgentNotificationsRetrieved => Event::AgentNotificationsRetrieved, [Same, Same, Same, Same, Same, Same];
        Event::ChatTyping { .. } => typing(Party::Client),    [No,    No,    No,    No,    Same,  No   ];
        Event::ChatTyping { .. } => typing(Party::Agent),     [No,    No,    No,    No,    Same,  No   ];
        Event::Reschedule { .. } => reschedule_to(9_000),     [Same,  No,    No,    No,    No,    No   ];
        // Never armed without a booking.
        Event::TimerFired { kind: T::Reminder, .. } => T::Reminder, [Stale, Stale, Stale, Stale, Stale, Stale];
        // Nothing to take out of the outboxes.
        Event::NotificationsPushed { .. } => pushed_unknown(), [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        Event::WebhooksAttempted { .. } => webhooks_unknown(), [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        Event::WebhooksRetried => Event::WebhooksRetried, [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        // The runtime delivers webhooks; the machine only hears the outcome.
        Event::TimerFired { kind: T::Webhook, .. } => T::Webhook, [No, No, No, No, No, No];
        // Never armed without a room or a preferred agent.
        Event::TimerFired { kind: T::RoomTtl, .. } => T::RoomTtl, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::TimerFired { kind: T::PreferredAgent, .. } => T::PreferredAgent, [Stale, Stale, Stale, Stale, Stale, Stale];
        // Without `_agent_preview` no preview is ever offered or answered.
        Event::TimerFired { kind: T::AgentPreview, .. } => T::AgentPreview, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::AgentAccepted { .. } => Event::AgentAccepted { agent: "agent-1".into() }, [No, No, No, No, No, No];
        Event::AgentRejected { .. } => Event::AgentRejected { agent: "agent-1".into() }, [No, No, No, No, No, No];
        // Without URS targets there is nothing to move on to.
        Event::TimerFired { kind: T::TargetTimeout, .. } => T::TargetTimeout, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::TargetSkipped { .. } => Event::TargetSkipped { step: 0 }, [No, No, No, No, No, No];
        // Queued, the ticket is retargeted; connected, the chat's agent rings.
        Event::StartVideo { .. } => start_video(Party::Client), [No,  Same,  No,    Same,  Same,  No   ];
        // No agent before the service is connected.
        Event::StartVideo { .. } => start_video(Party::Agent), [No,   No,    No,    Same,  Same,  No   ];
        // Without a video leg, no room event is allowed.
        Event::OpenRoom { .. } => open_room(),                [No,    No,    No,    No,    No,    No   ];
        Event::AgentLinked { .. } => agent_linked(),          [No,    No,    No,    No,    No,    No   ];
        Event::RoomAnswered { accept: true, .. } => Event::RoomAnswered { by: Party::Client, accept: true }, [No, No, No, No, No, No];
        Event::RoomAnswered { accept: false, .. } => Event::RoomAnswered { by: Party::Client, accept: false }, [No, No, No, No, No, No];
        Event::RoomJoined { .. } => Event::RoomJoined { party: Party::Client }, [No, No, No, No, No, No];
        Event::RoomLeft { .. } => Event::RoomLeft { party: Party::Client }, [No, No, No, No, No, No];
        Event::RoomSignal { .. } => Event::RoomSignal { from: Party::Client, signal: json!({}) }, [No, No, No, No, No, No];
        // Without a live room, the same as complete.
        Event::ForceComplete => Event::ForceComplete,         [No,    No,    No,    ac,    ac,    No   ];
        Event::SurveyAnswered { .. } => survey(),             [No,    No,    No,    No,    No,    No   ];
        // Waiting (or offered: taken back first), a supervisor may move it.
        Event::Moved { .. } => moved(Some("billing"), None),  [Same,  Same,  q,     No,    No,    No   ];
        // Only a service with an agent goes back to its queue.
        Event::Requeued => Event::Requeued,                   [No,    No,    q,     q,     q,     No   ];
    };
    let failures = run_table(&scn, &rows, &lines);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn state_event_table_chat_immediate() {
    let scn = immediate();
    let rec = |desired, steps: &[Step]| run(&scn, desired, steps).record;
    let chatting_queued = [at(5, chat_started())];
    let connected = [at(30, reserved("agent-1"))];
    let chatting = [chatting_queued[0].clone(), connected[0].clone()];
    let done = [connected[0].clone(), at(60, Event::Complete)];
    let rows = [
        ("SCHEDULED", rec(Some(600), &[])),
        ("QUEUED", rec(None, &[])),
        ("QUEUED+chat", rec(None, &chatting_queued)),
        ("PROCESSING", rec(None, &connected)),
        ("PROCESSING+chat", rec(None, &chatting)),
        ("COMPLETED", rec(None, &done)),
    ];
    let (q, pr) = (To(S::WaitForAgent), To(S::Connected));
    let (tnf, ttl) = (Done(R::FailTargetNotFound), Done(R::FailTimeoutTtl));
    let (cxl, ac) = (Done(R::Cancelled), Done(R::AgentConnected));
    let fid = Done(R::FailInteractionDeleted);
    use TimerKind as T;
    let lines = event_table! {
        //                                                    SCHED  QUEUED QUEUED+chat PROC PROC+chat DONE
        Event::Created => Event::Created,                     [No,    No,    No,    No,    No,    No   ];
        Event::TimerFired { kind: T::DesiredTime, .. } => T::DesiredTime, [q, Stale, Stale, Stale, Stale, Stale];
        Event::TimerFired { kind: T::FindAgent, .. } => T::FindAgent, [Stale, tnf, tnf, Stale, Stale, Stale];
        // Never armed: nobody is asked to confirm.
        Event::TimerFired { kind: T::UserConfirm, .. } => T::UserConfirm, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::TimerFired { kind: T::Ttl, .. } => T::Ttl,     [ttl,   ttl,   ttl,   ttl,   ttl,   Stale];
        Event::AgentReserved { .. } => reserved("agent-9"),   [No,    pr,    pr,    No,    No,    No   ];
        Event::UserConfirmed => Event::UserConfirmed,         [No,    No,    No,    Same,  Same,  No   ];
        Event::ChatStarted { .. } => chat_started(),          [No,    Same,  No,    Same,  No,    No   ];
        Event::ChatMessage { .. } => say(Party::Client, "hi"), [No,   No,    Same,  No,    Same,  No   ];
        // The agent must have joined.
        Event::ChatMessage { .. } => say(Party::Agent, "hi"), [No,    No,    No,    No,    Same,  No   ];
        Event::ChatLeft { .. } => left(Party::Client),        [No,    No,    fid,   No,    ac,    No   ];
        Event::ChatLeft { .. } => left(Party::Agent),         [No,    No,    No,    No,    ac,    No   ];
        Event::Complete => Event::Complete,                   [No,    No,    No,    ac,    ac,    No   ];
        Event::Cancel => Event::Cancel,                       [cxl,   cxl,   cxl,   cxl,   cxl,   No   ];
        Event::InternalNotification { .. } => internal_notification(),     [Same,  Same,  Same,  Same,  Same,  No   ];
        Event::AgentNotification { .. } => agent_notification(),      [Same,  Same,  Same,  Same,  Same,  No   ];
        Event::NotificationsRetrieved => Event::NotificationsRetrieved, [Same, Same, Same, Same, Same, Same];
        Event::AgentNotificationsRetrieved => Event::AgentNotificationsRetrieved, [Same, Same, Same, Same, Same, Same];
        Event::ChatTyping { .. } => typing(Party::Client),    [No,    No,    Same,  No,    Same,  No   ];
        // The agent must have joined.
        Event::ChatTyping { .. } => typing(Party::Agent),     [No,    No,    No,    No,    Same,  No   ];
        Event::Reschedule { .. } => reschedule_to(9_000),     [Same,  No,    No,    No,    No,    No   ];
        // Never armed without a booking.
        Event::TimerFired { kind: T::Reminder, .. } => T::Reminder, [Stale, Stale, Stale, Stale, Stale, Stale];
        // Nothing to take out of the outboxes.
        Event::NotificationsPushed { .. } => pushed_unknown(), [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        Event::WebhooksAttempted { .. } => webhooks_unknown(), [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        Event::WebhooksRetried => Event::WebhooksRetried, [Unchanged, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged];
        // The runtime delivers webhooks; the machine only hears the outcome.
        Event::TimerFired { kind: T::Webhook, .. } => T::Webhook, [No, No, No, No, No, No];
        // Never armed without a room or a preferred agent.
        Event::TimerFired { kind: T::RoomTtl, .. } => T::RoomTtl, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::TimerFired { kind: T::PreferredAgent, .. } => T::PreferredAgent, [Stale, Stale, Stale, Stale, Stale, Stale];
        // Without `_agent_preview` no preview is ever offered or answered.
        Event::TimerFired { kind: T::AgentPreview, .. } => T::AgentPreview, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::AgentAccepted { .. } => Event::AgentAccepted { agent: "agent-1".into() }, [No, No, No, No, No, No];
        Event::AgentRejected { .. } => Event::AgentRejected { agent: "agent-1".into() }, [No, No, No, No, No, No];
        // Without URS targets there is nothing to move on to.
        Event::TimerFired { kind: T::TargetTimeout, .. } => T::TargetTimeout, [Stale, Stale, Stale, Stale, Stale, Stale];
        Event::TargetSkipped { .. } => Event::TargetSkipped { step: 0 }, [No, No, No, No, No, No];
        // Queued, the ticket is retargeted; connected, the chat's agent rings.
        Event::StartVideo { .. } => start_video(Party::Client), [No,  Same,  Same,  Same,  Same,  No   ];
        // No agent before the service is connected.
        Event::StartVideo { .. } => start_video(Party::Agent), [No,   No,    No,    Same,  Same,  No   ];
        // Without a video leg, no room event is allowed.
        Event::OpenRoom { .. } => open_room(),                [No,    No,    No,    No,    No,    No   ];
        Event::AgentLinked { .. } => agent_linked(),          [No,    No,    No,    No,    No,    No   ];
        Event::RoomAnswered { accept: true, .. } => Event::RoomAnswered { by: Party::Client, accept: true }, [No, No, No, No, No, No];
        Event::RoomAnswered { accept: false, .. } => Event::RoomAnswered { by: Party::Client, accept: false }, [No, No, No, No, No, No];
        Event::RoomJoined { .. } => Event::RoomJoined { party: Party::Client }, [No, No, No, No, No, No];
        Event::RoomLeft { .. } => Event::RoomLeft { party: Party::Client }, [No, No, No, No, No, No];
        Event::RoomSignal { .. } => Event::RoomSignal { from: Party::Client, signal: json!({}) }, [No, No, No, No, No, No];
        // Without a live room, the same as complete.
        Event::ForceComplete => Event::ForceComplete,         [No,    No,    No,    ac,    ac,    No   ];
        Event::SurveyAnswered { .. } => survey(),             [No,    No,    No,    No,    No,    No   ];
        Event::Moved { .. } => moved(Some("billing"), None),  [Same,  Same,  Same,  No,    No,    No   ];
        Event::Requeued => Event::Requeued,                   [No,    No,    No,    q,     q,     No   ];
    };
    let failures = run_table(&scn, &rows, &lines);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn armed_timers_a_state_does_not_handle_are_discarded() {
    let scn = delay();
    let handled = |state: ServiceState, kind: TimerKind| match kind {
        TimerKind::Ttl => state != S::Completed,
        TimerKind::DesiredTime => state == S::Scheduled,
        TimerKind::FindAgent => state == S::WaitForAgent,
        TimerKind::UserConfirm => state == S::WaitForUserConfirm,
        // Without a booking there is nobody to remind.
        TimerKind::Reminder => false,
        // Without a room or a preferred agent these change nothing.
        TimerKind::RoomTtl | TimerKind::PreferredAgent => false,
        // Without a preview waiting for its agent, it changes nothing.
        TimerKind::AgentPreview => false,
        // Without URS targets there is no next target.
        TimerKind::TargetTimeout => false,
        // The runtime's: the machine refuses it in every state (see the
        // event tables).
        TimerKind::Webhook => true,
    };
    let mut failures = Vec::new();
    for state in ServiceState::ALL {
        let (desired, steps) = to_state(state);
        let rec = run(&scn, desired, &steps).record;
        for kind in [
            TimerKind::DesiredTime,
            TimerKind::UserConfirm,
            TimerKind::FindAgent,
            TimerKind::Ttl,
            TimerKind::Reminder,
            TimerKind::RoomTtl,
            TimerKind::PreferredAgent,
            TimerKind::AgentPreview,
            TimerKind::TargetTimeout,
        ] {
            if handled(state, kind) {
                continue;
            }
            let mut rec = rec.clone();
            let due = secs(12_345);
            rec.timers.insert(kind, due);
            let result = catch_unwind(AssertUnwindSafe(|| {
                machine::apply(&rec, &scn, &Event::TimerFired { kind, due }, due)
            }));
            // Spent without effect: refusing would leave it due forever.
            match result {
                Ok(Ok(applied))
                    if applied.record.state == state
                        && !applied.record.timers.contains_key(&kind)
                        && applied.effects.is_empty() => {}
                Ok(other) => failures.push(format!("{kind:?} in {state:?}: {other:?}")),
                Err(_) => failures.push(format!("{kind:?} in {state:?}: PANIC")),
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Robustness: durations the scenario accepts must not make the machine panic
// ---------------------------------------------------------------------------

/// `_ttl` saturates (create uses checked_add), so the other timeouts the
/// validator accepts must not overflow `now + timeout` either.
#[test]
fn huge_accepted_timeouts_do_not_panic() {
    let cases = [
        ("_find_agent_timeout", r#""300000years""#),
        ("_find_agent_timeout", "9223372036854775807"),
        ("_user_confirm_timeout", r#""300000years""#),
        ("_user_confirm_timeout", "9223372036854775807"),
        ("_ttl", r#""300000years""#),
    ];
    let mut failures = Vec::new();
    for (key, value) in cases {
        let toml = ScenarioBuilder::chat_delay().key(key, value);
        let Ok(scn) = toml.parse() else {
            continue; // refusing it up front is fine too
        };
        let scn = Arc::new(scn);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let rec = create(&scn, None).record;
            machine::apply(&rec, &scn, &reserved("agent-1"), secs(30)).map(|a| a.record.state)
        }));
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failures.push(format!("{key} = {value}: refused: {e}")),
            Err(_) => failures.push(format!(
                "{key} = {value}: accepted by Scenario::from_toml, then create/apply PANICKED"
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Scenario files
// ---------------------------------------------------------------------------

#[test]
fn scenario_defaults_and_spellings() {
    let scn = ScenarioBuilder::chat_delay()
        .unset("_user_confirm_timeout")
        .unset("_on_user_confirm_timeout")
        .unset("_max_user_confirm_attempts")
        .build();
    assert_eq!(scn.user_confirm_timeout, std::time::Duration::from_secs(30));
    assert_eq!(scn.on_user_confirm_timeout, OnUserConfirmTimeout::Fail);
    assert_eq!(scn.max_user_confirm_attempts, 3);
    for (text, want) in [
        ("connect-anyway", OnUserConfirmTimeout::ConnectAnyway),
        ("CONNECT-ANYWAY", OnUserConfirmTimeout::ConnectAnyway),
        ("connect_anyway", OnUserConfirmTimeout::ConnectAnyway),
        ("FAIL", OnUserConfirmTimeout::Fail),
        ("Requeue", OnUserConfirmTimeout::Requeue),
    ] {
        let scn = delay_with("_on_user_confirm_timeout", &format!("\"{text}\""));
        assert_eq!(scn.on_user_confirm_timeout, want, "{text}");
    }
    for (text, secs) in [
        ("86400", 86400),
        ("\"24h\"", 86400),
        ("\"90s\"", 90),
        ("\"1m 30s\"", 90),
    ] {
        let scn = delay_with("_ttl", text);
        assert_eq!(scn.ttl, std::time::Duration::from_secs(secs), "{text}");
    }
}

#[test]
fn scenario_refusals_name_the_key_or_the_problem() {
    // (override key, value, texts the error's Display must contain, key field)
    let cases: &[(&str, &str, &[&str], Option<&str>)] = &[
        ("_colour", r#""red""#, &["_colour", "unknown field"], None),
        ("_ttl", r#""abc""#, &["_ttl", "abc", "not a duration"], None),
        ("_ttl", "-5", &["_ttl", "-5", "negative"], None),
        (
            "_user_confirm_timeout",
            r#""abc""#,
            &["_user_confirm_timeout", "abc"],
            None,
        ),
        (
            "_find_agent_timeout",
            "-5",
            &["_find_agent_timeout", "-5"],
            None,
        ),
        (
            "_on_user_confirm_timeout",
            r#""later""#,
            &["_on_user_confirm_timeout", "later", "connect-anyway"],
            None,
        ),
        ("_ttl", "0", &["_ttl", "greater than zero"], Some("_ttl")),
        (
            "_max_user_confirm_attempts",
            "0",
            &["_max_user_confirm_attempts"],
            Some("_max_user_confirm_attempts"),
        ),
        (
            "_find_agent_timeout",
            r#""0s""#,
            &["_find_agent_timeout"],
            Some("_find_agent_timeout"),
        ),
        ("name", r#""has space""#, &["name"], Some("name")),
        (
            "_target",
            r#"{ queue = " " }"#,
            &["_target.queue"],
            Some("_target.queue"),
        ),
        (
            "_httpcb_url",
            r#""ftp://hooks.example""#,
            &["_httpcb_url", "http"],
            Some("_httpcb_url"),
        ),
        (
            "_httpcb_attempts",
            "0",
            &["_httpcb_attempts", "between 1 and 20"],
            Some("_httpcb_attempts"),
        ),
        (
            "_httpcb_timeout",
            r#""0s""#,
            &["_httpcb_timeout"],
            Some("_httpcb_timeout"),
        ),
    ];
    let mut failures = Vec::new();
    for (key, value, needles, want_key) in cases {
        let toml = ScenarioBuilder::chat_delay().key(key, value);
        match toml.parse() {
            Ok(_) => failures.push(format!("{key} = {value}: accepted")),
            Err(e) => {
                let text = e.to_string();
                for needle in *needles {
                    if !text.contains(needle) {
                        failures.push(format!("{key} = {value}: `{text}` lacks `{needle}`"));
                    }
                }
                if !text.contains("test.toml") {
                    failures.push(format!("{key} = {value}: `{text}` lacks the file"));
                }
                if let Some(k) = want_key {
                    if e.key.as_deref() != Some(*k) {
                        failures.push(format!("{key} = {value}: key {:?}", e.key));
                    }
                }
            }
        }
    }

    // A customer can only confirm once an agent waits.
    let err = ScenarioBuilder::chat_immediate()
        .key("_wait_for_user_confirm", "true")
        .parse()
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("_wait_for_user_confirm"));
    let text = err.to_string();
    assert!(
        text.contains("_wait_for_user_confirm") && text.contains("_wait_for_agent"),
        "{text}"
    );

    // Missing mandatory keys.
    for key in ["_ttl", "_target", "_wait_for_agent", "_media_type", "name"] {
        match ScenarioBuilder::chat_delay().unset(key).parse() {
            Ok(_) => failures.push(format!("without {key}: accepted")),
            Err(e) if !e.to_string().contains(key) => {
                failures.push(format!("without {key}: `{e}` does not name it"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn repo_scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn the_repo_scenarios_load() {
    let all = Scenarios::load_dir(&repo_scenarios()).unwrap_or_else(|e| panic!("{e}"));
    let delay = all.get("chat-delay").expect("chat-delay");
    assert!(delay.wait_for_agent && delay.wait_for_user_confirm);
    assert_eq!(delay.ttl, std::time::Duration::from_secs(86400));
    assert_eq!(
        delay.user_confirm_timeout,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(delay.on_user_confirm_timeout, OnUserConfirmTimeout::Requeue);
    assert_eq!(delay.max_user_confirm_attempts, 3);
    assert_eq!(
        delay.find_agent_timeout,
        Some(std::time::Duration::from_secs(7200))
    );
    assert_eq!(delay.target.queue, "support");
    assert_eq!(delay.chat_parameters["subject"], "None");
    assert_eq!(delay.agent_ready_threshold.position, 5);

    let immediate = all.get("chat-immediate").expect("chat-immediate");
    assert!(!immediate.wait_for_agent && !immediate.wait_for_user_confirm);
    assert_eq!(immediate.ttl, std::time::Duration::from_secs(86400));
    assert_eq!(
        immediate.find_agent_timeout,
        Some(std::time::Duration::from_secs(3600))
    );
    assert!(all.get("nope").is_none());

    // The in-test builder matches the repo files.
    assert_eq!(**delay, *self::delay());
    let names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"chat-delay") && names.contains(&"chat-immediate"));
}

/// A scratch directory under the system temp dir, unique per test and process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "callbackd-transitions-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn load_dir_refuses_duplicates_bad_files_and_empty_dirs() {
    let dir = scratch("dup");
    std::fs::write(dir.join("a.toml"), ScenarioBuilder::chat_delay().toml()).unwrap();
    std::fs::write(dir.join("b.toml"), ScenarioBuilder::chat_delay().toml()).unwrap();
    let err = Scenarios::load_dir(&dir).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("name"));
    assert!(err.to_string().contains("chat-delay"), "{err}");

    let dir = scratch("bad");
    std::fs::write(dir.join("ok.toml"), ScenarioBuilder::chat_delay().toml()).unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        ScenarioBuilder::chat_delay().key("_ttl", "-5").toml(),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a scenario").unwrap();
    let err = Scenarios::load_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");

    let dir = scratch("empty");
    std::fs::write(dir.join("notes.txt"), "not a scenario").unwrap();
    assert!(Scenarios::load_dir(&dir).is_err());

    assert!(Scenarios::load_dir(&dir.join("missing")).is_err());
}

// ---------------------------------------------------------------------------
// Push: typing, pushed notifications, state notices
// ---------------------------------------------------------------------------

#[test]
fn typing_is_pushed_to_the_other_side_and_never_kept() {
    let scn = delay();
    let steps = [
        at(30, reserved("agent-1")),
        at(40, Event::UserConfirmed),
        at(50, chat_started()),
    ];
    let chatting = run(&scn, None, &steps).record;
    for (by, want_tag) in [
        (Party::Client, format!("agent.chat.typing.{ID}")),
        (Party::Agent, format!("service.chat.typing.{ID}")),
    ] {
        for on in [true, false] {
            let applied = machine::apply(
                &chatting,
                &scn,
                &Event::ChatTyping { by, typing: on },
                secs(55),
            )
            .unwrap();
            let (tag, payload, agent) = match applied.effects.as_slice() {
                [Effect::PushAgent {
                    agent,
                    tag,
                    payload,
                }] => (tag, payload, agent.clone()),
                [Effect::PushDevice { tag, payload }] => (tag, payload, None),
                other => panic!("{by:?} typing: {other:?}"),
            };
            assert_eq!(tag, &want_tag);
            let kind = if on {
                "Notice.TypingStarted"
            } else {
                "Notice.TypingStopped"
            };
            assert_eq!(payload["type"], kind);
            assert_eq!(payload["_id"], ID);
            if by == Party::Client {
                assert_eq!(agent.as_deref(), Some("agent-1"));
                assert_eq!(payload["nickname"], "John");
            }
            // Nothing but the version moved: the shell does not even write it.
            let mut same = applied.record.clone();
            same.version = chatting.version;
            assert_eq!(same, chatting);
        }
    }
}

#[test]
fn pushed_notifications_leave_the_outboxes_and_only_those() {
    let scn = delay();
    let steps = [
        at(30, reserved("agent-1")),
        at(40, Event::UserConfirmed),
        at(41, internal_notification()),
        at(42, agent_notification()),
        at(43, internal_notification()),
    ];
    let rec = run(&scn, None, &steps).record;
    let device: Vec<String> = rec.outbox.iter().map(|n| n.id.clone()).collect();
    let agent: Vec<String> = rec.agent_outbox.iter().map(|n| n.id.clone()).collect();
    assert_eq!(
        device.len(),
        3,
        "agent-available and two internal notifications"
    );
    assert_eq!(agent.len(), 2, "the offer and the note");
    let all_ids: std::collections::BTreeSet<&String> = device.iter().chain(&agent).collect();
    assert_eq!(
        all_ids.len(),
        5,
        "notification ids are unique in the service"
    );

    // The first device notification and the offer were pushed.
    let pushed = Event::NotificationsPushed {
        device: vec![device[0].clone()],
        agent: vec![agent[0].clone()],
    };
    let after = machine::apply(&rec, &scn, &pushed, secs(44)).unwrap();
    assert!(after.effects.is_empty());
    assert_eq!(after.record.version, rec.version + 1);
    assert_eq!(
        after
            .record
            .outbox
            .iter()
            .map(|n| &n.id)
            .collect::<Vec<_>>(),
        vec![&device[1], &device[2]]
    );
    assert_eq!(
        after
            .record
            .agent_outbox
            .iter()
            .map(|n| &n.id)
            .collect::<Vec<_>>(),
        vec![&agent[1]]
    );
    assert_eq!(after.record.state, rec.state);

    // The same again (a second tab got it too): nothing to write.
    assert_eq!(
        machine::apply(&after.record, &scn, &pushed, secs(45)).unwrap_err(),
        TransitionError::Unchanged
    );
    // Allowed after completion as well.
    let done = step_to(&after.record, &scn, &at(50, Event::Complete));
    let last = done.outbox.last().unwrap().id.clone();
    let cleared = machine::apply(
        &done,
        &scn,
        &Event::NotificationsPushed {
            device: vec![last],
            agent: vec![],
        },
        secs(51),
    )
    .unwrap();
    assert_eq!(cleared.record.outbox.len(), done.outbox.len() - 1);
}

#[test]
fn state_notices_carry_the_gms_state_until_completion() {
    let scn = delay();
    let queued = create(&scn, None);
    let routing = apply_step(&queued.record, &scn, &at(30, reserved("agent-1"))).unwrap();
    let done = apply_step(&routing.record, &scn, &at(31, Event::Cancel)).unwrap();
    for (applied, want) in [
        (&queued, Some(("QUEUED", Value::Null))),
        (&routing, Some(("ROUTING", json!("agent-1")))),
        (&done, None),
    ] {
        let notice = state_notice(applied);
        match (notice, want) {
            (Some((tag, payload)), Some((state, agent))) => {
                assert_eq!(tag, format!("service.state.{ID}"));
                assert_eq!(payload["tag"], tag);
                assert_eq!(payload["message"]["_id"], ID);
                assert_eq!(payload["message"]["_callback_state"], state);
                assert_eq!(payload["message"]["_agent_id"], agent);
            }
            (None, None) => {}
            (got, want) => panic!("{:?}: got {got:?}, want {want:?}", applied.record.state),
        }
    }
}

/// The state push among `effects`: there is at most one, and it comes last.
fn state_notice(applied: &Applied) -> Option<(String, Value)> {
    let effects = &applied.effects;
    let notices: Vec<usize> = (0..effects.len())
        .filter(|&i| matches!(effects[i], Effect::StateNotice))
        .collect();
    match notices.as_slice() {
        [] => None,
        [i] if *i == effects.len() - 1 => {
            Some(machine::state_notice(&applied.record).expect("a state to tell"))
        }
        _ => panic!("the state notice comes once and last: {effects:?}"),
    }
}

#[test]
fn create_pushes_the_new_state_last() {
    // Queued at once, or scheduled for later: the device hears either.
    for (desired, state) in [(None, "QUEUED"), (Some(600), "SCHEDULED")] {
        let created = create(&delay(), desired);
        let (_, payload) = state_notice(&created).expect("a state notice");
        assert_eq!(payload["message"]["_callback_state"], state);
        // The record's version as stored: 1, not the queue entry's.
        assert_eq!(payload["id"], format!("{ID}-v1"));
    }
}

#[test]
fn only_a_change_of_state_pushes_the_state() {
    let scn = delay();
    let queued = create(&scn, None).record;
    let reserved = apply_step(&queued, &scn, &at(30, reserved("agent-1"))).unwrap();
    let (_, payload) = state_notice(&reserved).expect("a state notice");
    assert_eq!(payload["id"], format!("{ID}-v{}", reserved.record.version));
    // Events that leave the state as it was push nothing.
    for event in [
        Event::InternalNotification {
            display: "hi".into(),
            application: "app".into(),
        },
        Event::NotificationsRetrieved,
    ] {
        let same = machine::apply(&reserved.record, &scn, &event, secs(31)).unwrap();
        assert_eq!(same.record.state, reserved.record.state);
        assert_eq!(state_notice(&same), None, "{event:?}");
    }
}

// ---------------------------------------------------------------------------
// Booked services
// ---------------------------------------------------------------------------

fn booking_at(slot: i64, lead: i64, reminder: Option<i64>) -> engine::record::Booking {
    engine::record::Booking {
        slot: secs(slot),
        slot_end: secs(slot + 900),
        seats: 3,
        sequence: 0,
        enter_queue_at: secs(slot - lead),
        reminder_at: reminder.map(|r| secs(slot - r)),
        join_url: Some(format!("https://meet.example/{ID}")),
        timezone: "Europe/London".into(),
        manage_token: Some("t0k3n".into()),
    }
}

fn booked(slot: i64, lead: i64, reminder: Option<i64>) -> Applied {
    let mut new = new_service(Some(slot));
    new.booking = Some(booking_at(slot, lead, reminder));
    machine::create(new, &delay(), t0())
}

fn appointments(effects: &[Effect]) -> Vec<machine::AppointmentChange> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Appointment { change } => Some(change.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_booking_enters_the_queue_its_buffer_before_the_slot_in_its_booked_place() {
    use machine::AppointmentChange as A;
    let created = booked(3_600, 120, Some(900));
    let rec = &created.record;
    assert_eq!(rec.state, S::Scheduled);
    assert_eq!(appointments(&created.effects), vec![A::Booked]);
    assert_eq!(rec.timers[&TimerKind::DesiredTime], secs(3_480));
    assert_eq!(rec.timers[&TimerKind::Reminder], secs(2_700));
    assert_eq!(
        rec.ticket.since,
        secs(3_600),
        "the queue place is the booked time"
    );
    assert_eq!(
        rec.schema, RECORD_SCHEMA_BOOKED,
        "older nodes must refuse a booked record"
    );

    // The reminder: an appointment effect and a device notification.
    let due = rec.timers[&TimerKind::Reminder];
    let reminded = machine::apply(
        rec,
        &delay(),
        &Event::TimerFired {
            kind: TimerKind::Reminder,
            due,
        },
        due,
    )
    .unwrap();
    assert_eq!(appointments(&reminded.effects), vec![A::Reminder]);
    assert_eq!(reminded.record.state, S::Scheduled);
    let note = reminded.record.outbox.last().unwrap();
    assert_eq!(note.tag, format!("service.reminder.{ID}"));
    // The slot, with milliseconds like every other time on the wire.
    assert_eq!(note.payload["_desired_time"], "2024-05-01T11:00:00.000Z");
    assert_eq!(
        note.payload["_join_url"],
        format!("https://meet.example/{ID}")
    );

    let due = rec.timers[&TimerKind::DesiredTime];
    let queued = machine::apply(
        &reminded.record,
        &delay(),
        &Event::TimerFired {
            kind: TimerKind::DesiredTime,
            due,
        },
        due,
    )
    .unwrap();
    assert_eq!(queued.record.state, S::WaitForAgent);
    assert_eq!(queued.record.ticket.since, secs(3_600));
}

#[test]
fn a_booking_whose_queue_time_has_come_is_queued_at_once() {
    let created = booked(60, 120, None);
    assert_eq!(created.record.state, S::WaitForAgent);
    assert_eq!(created.record.ticket.since, secs(60));
    assert!(!created.record.timers.contains_key(&TimerKind::Reminder));
    assert!(created
        .effects
        .iter()
        .any(|e| matches!(e, Effect::EnteredQueue { .. })));
}

#[test]
fn rescheduling_moves_the_timers_and_bumps_the_invite_sequence() {
    use machine::AppointmentChange as A;
    let rec = booked(3_600, 0, Some(900)).record;
    let moved = machine::apply(
        &rec,
        &delay(),
        &Event::Reschedule {
            desired_time: secs(7_200),
            booking: Some(booking_at(7_200, 60, None)),
            changes: Default::default(),
        },
        secs(10),
    )
    .unwrap();
    let r = &moved.record;
    assert_eq!(
        appointments(&moved.effects),
        vec![A::Rescheduled {
            previous_start: secs(3_600)
        }]
    );
    assert_eq!(r.desired_time, secs(7_200));
    assert_eq!(r.booking.as_ref().unwrap().sequence, 1);
    assert_eq!(r.timers[&TimerKind::DesiredTime], secs(7_140));
    assert!(
        !r.timers.contains_key(&TimerKind::Reminder),
        "the new booking has no reminder"
    );
    assert_eq!(r.timers[&TimerKind::Ttl], secs(7_200 + 86_400));
    assert_eq!(r.expiration_time, secs(7_200 + 86_400));
    assert_eq!(r.ticket.since, secs(7_200));
    assert_eq!(r.state, S::Scheduled);

    // Once queued, it can no longer move.
    let due = r.timers[&TimerKind::DesiredTime];
    let queued = machine::apply(
        r,
        &delay(),
        &Event::TimerFired {
            kind: TimerKind::DesiredTime,
            due,
        },
        due,
    )
    .unwrap()
    .record;
    let refused = machine::apply(&queued, &delay(), &reschedule_to(20_000), due);
    assert!(
        matches!(refused, Err(TransitionError::NotAllowed { .. })),
        "{refused:?}"
    );
}

#[test]
fn cancelling_a_booking_sends_a_cancelled_invite_but_not_after_the_call() {
    use machine::AppointmentChange as A;
    let rec = booked(3_600, 0, Some(900)).record;
    let cancelled = machine::apply(&rec, &delay(), &Event::Cancel, secs(5)).unwrap();
    assert_eq!(appointments(&cancelled.effects), vec![A::Cancelled]);
    assert_eq!(cancelled.record.booking.as_ref().unwrap().sequence, 1);
    assert!(cancelled.record.timers.is_empty());
    assert!(
        cancelled.record.seat().is_none(),
        "a completed service holds no seat"
    );
    assert!(rec.seat().is_some());

    // Served, then cancelled by an admin: nobody is told about an invite.
    let mut served = rec.clone();
    let due = served.timers[&TimerKind::DesiredTime];
    for (event, at) in [
        (
            Event::TimerFired {
                kind: TimerKind::DesiredTime,
                due,
            },
            due,
        ),
        (reserved("agent-1"), due),
        (Event::UserConfirmed, due),
    ] {
        served = machine::apply(&served, &delay(), &event, at)
            .unwrap()
            .record;
    }
    let after = machine::apply(&served, &delay(), &Event::Cancel, due).unwrap();
    assert!(appointments(&after.effects).is_empty());

    // A reminder whose time passed while every node was down, found after
    // the slot began, says nothing.
    let late = machine::apply(
        &rec,
        &delay(),
        &Event::TimerFired {
            kind: TimerKind::Reminder,
            due: rec.timers[&TimerKind::Reminder],
        },
        secs(3_600),
    )
    .unwrap();
    assert!(appointments(&late.effects).is_empty());
    assert!(!late.record.timers.contains_key(&TimerKind::Reminder));

    // A reminder that falls due after the call started says nothing.
    let mut rem = rec.clone();
    rem.timers.insert(TimerKind::Reminder, secs(100));
    rem.connected_at = Some(secs(50));
    let quiet = machine::apply(
        &rem,
        &delay(),
        &Event::TimerFired {
            kind: TimerKind::Reminder,
            due: secs(100),
        },
        secs(100),
    )
    .unwrap();
    assert!(appointments(&quiet.effects).is_empty());
}

/// The history names who caused each change: what the caller says (the
/// front names the customer, agent or staff credential), else the router
/// and the timers name themselves.
#[test]
fn the_history_names_the_cause_of_each_change() {
    let scn = delay();
    let created = machine::create_by(new_service(None), &scn, t0(), Some("customer (ios-app)"));
    let reserved = machine::apply(&created.record, &scn, &reserved("agent-1"), secs(10)).unwrap();
    let ttl = *reserved
        .record
        .timers
        .get(&TimerKind::Ttl)
        .expect("ttl armed");
    let expired = machine::apply(
        &reserved.record,
        &scn,
        &Event::TimerFired {
            kind: TimerKind::Ttl,
            due: ttl,
        },
        ttl,
    )
    .unwrap();
    let by: Vec<Option<&str>> = expired
        .record
        .history
        .iter()
        .map(|h| h.by.as_deref())
        .collect();
    assert_eq!(
        by,
        [
            Some("customer (ios-app)"),
            Some("customer (ios-app)"),
            Some("router"),
            Some("timer ttl"),
        ],
        "{:?}",
        expired.record.history
    );
    let cancelled = machine::apply_by(
        &reserved.record,
        &scn,
        &Event::Cancel,
        secs(20),
        Some("floor"),
    )
    .unwrap();
    assert_eq!(
        cancelled.record.history.last().unwrap().by.as_deref(),
        Some("floor")
    );
}

/// GMS's reschedule also takes the customer's number and user data: both
/// change with the time, in the one transition, and only what was sent.
#[test]
fn rescheduling_updates_the_number_and_user_data_it_carries() {
    let rec = create(&delay(), Some(3_600)).record;
    let mut rec = rec;
    rec.user_data.insert("usr_reason".into(), "billing".into());
    rec.user_data.insert("usr_keep".into(), "kept".into());
    let moved = machine::apply(
        &rec,
        &delay(),
        &Event::Reschedule {
            desired_time: secs(7_200),
            booking: None,
            changes: machine::Changes {
                customer_number: Some("4085550100".into()),
                user_data: BTreeMap::from([
                    ("usr_reason".to_owned(), "sales".to_owned()),
                    ("usr_new".to_owned(), "added".to_owned()),
                ]),
            },
        },
        secs(10),
    )
    .unwrap()
    .record;
    assert_eq!(moved.desired_time, secs(7_200));
    assert_eq!(moved.customer_number, "4085550100");
    assert_eq!(moved.user_data["usr_reason"], "sales");
    assert_eq!(moved.user_data["usr_new"], "added");
    assert_eq!(moved.user_data["usr_keep"], "kept");

    // Without changes, the number and the data stay.
    let same = machine::apply(&rec, &delay(), &reschedule_to(7_200), secs(10))
        .unwrap()
        .record;
    assert_eq!(same.customer_number, rec.customer_number);
    assert_eq!(same.user_data, rec.user_data);
}

/// A created record kept as it is (the embedded store shares the create's
/// own) holds no room its lists grew, and stays the same record.
#[test]
fn a_shrunk_record_holds_no_spare_room_and_is_the_same() {
    let mut record = create(&delay(), None).record;
    assert!(
        record.history.capacity() > record.history.len(),
        "a create grows its history past its two entries (else this test shows nothing)"
    );
    let before = record.clone();
    record.shrink_to_fit();
    assert_eq!(record, before);
    assert_eq!(record.history.capacity(), record.history.len());
    assert_eq!(record.outbox.capacity(), record.outbox.len());
    assert_eq!(record.agent_outbox.capacity(), record.agent_outbox.len());
}
