//! Agent preview (`_agent_preview`): the reserved agent accepts or rejects
//! the service before the customer hears of an agent.

use std::sync::Arc;

use engine::machine::{self, Effect, Event, TransitionError};
use engine::record::{CallbackReason, ServiceState, TimerKind, RECORD_SCHEMA_PREVIEW};
use engine::scenario::Scenario;
use engine::testing::{self, at, fire, reserved, secs, t0, ScenarioBuilder, Step};

use CallbackReason as R;
use ServiceState as S;

/// Chat with a customer confirmation, previewed for 20 s, two rejects.
fn preview() -> Arc<Scenario> {
    ScenarioBuilder::chat_delay()
        .keys(&[
            ("_agent_preview", "true"),
            ("_agent_preview_timeout", "20"),
            ("_agent_preview_allow_reject", "2"),
            ("_agent_preview_data", r#""usr_customer_name""#),
        ])
        .build()
}

fn accepted(agent: &str) -> Event {
    Event::AgentAccepted {
        agent: agent.to_owned(),
    }
}

fn rejected(agent: &str) -> Event {
    Event::AgentRejected {
        agent: agent.to_owned(),
    }
}

fn check(
    label: &str,
    scn: &Arc<Scenario>,
    steps: &[Step],
    want: (ServiceState, Option<CallbackReason>),
    effects: &[&str],
) -> testing::Walk {
    testing::check(label, scn, testing::new_service(), steps, want, effects)
}

#[test]
fn a_reserved_agent_gets_a_preview_and_the_customer_hears_nothing() {
    let scn = preview();
    let walk = check(
        "reserved",
        &scn,
        &[at(30, reserved("agent-1"))],
        (S::WaitForUserConfirm, None),
        &[
            "AgentReserved",
            "WaitSample",
            "LeftQueue",
            "TimerCancelled(find_agent)",
            "TimerArmed(agent_preview)",
            "NotifyAgent(agent.preview)",
        ],
    );
    let rec = &walk.record;
    assert!(rec.preview_pending);
    assert_eq!(rec.agent.as_deref(), Some("agent-1"));
    assert_eq!(
        rec.schema, RECORD_SCHEMA_PREVIEW,
        "older nodes refuse a previewed record"
    );
    assert!(rec.outbox.is_empty(), "no agent-available notification yet");
    assert_eq!(rec.confirm_attempts, 0);
    assert_eq!(rec.timers[&TimerKind::AgentPreview], secs(50));
    let applied = machine::apply(
        &testing::run(&scn, testing::new_service(), &[]).record,
        &scn,
        &reserved("agent-1"),
        secs(30),
    )
    .unwrap();
    let Some(Effect::StateNotice) = applied.effects.last() else {
        panic!("no state push: {:?}", applied.effects);
    };
    let (_, payload) = machine::state_notice(&applied.record).expect("a state to tell");
    assert_eq!(payload["message"]["_callback_state"], "ROUTING");
    assert_eq!(payload["message"]["_agent_id"], serde_json::Value::Null);
    // The preview shows what `_agent_preview_data` names, and no more.
    let offer: serde_json::Value =
        serde_json::from_str(&rec.agent_outbox.last().unwrap().message).unwrap();
    assert_eq!(offer["_action"], "preview");
    assert_eq!(
        offer["_agent_preview_data"],
        serde_json::json!({"usr_customer_name": "Bob Markel"})
    );
    // The customer cannot connect before the agent accepts.
    let got = machine::apply(rec, &scn, &Event::UserConfirmed, secs(35));
    let (_, event, message) = testing::not_allowed(got);
    assert_eq!(event, "user_confirmed");
    assert!(message.contains("not accepted"), "{message}");
}

#[test]
fn accepting_goes_on_as_without_preview() {
    // With a confirmation: the customer is asked now, the state stays ROUTING.
    let scn = preview();
    let walk = check(
        "accept, then confirm",
        &scn,
        &[at(30, reserved("agent-1")), at(40, accepted("agent-1"))],
        (S::WaitForUserConfirm, None),
        &[
            "TimerCancelled(agent_preview)",
            "TimerArmed(user_confirm)",
            "NotifyDevice(service.agentavailable)",
        ],
    );
    let rec = &walk.record;
    assert!(!rec.preview_pending);
    assert_eq!(rec.confirm_attempts, 1);
    assert_eq!(rec.timers[&TimerKind::UserConfirm], secs(100));
    assert_eq!(rec.history.last().unwrap().event, "agent_accepted");
    let connected = machine::apply(rec, &scn, &Event::UserConfirmed, secs(45)).unwrap();
    assert_eq!(connected.record.state, S::Connected);
    // Without one: connected at once, the customer told the agent is there.
    let scn = ScenarioBuilder::chat_delay()
        .keys(&[
            ("_wait_for_user_confirm", "false"),
            ("_agent_preview", "true"),
        ])
        .build();
    let walk = check(
        "accept, connected",
        &scn,
        &[at(30, reserved("agent-1")), at(40, accepted("agent-1"))],
        (S::Connected, None),
        &[
            "TimerCancelled(agent_preview)",
            "NotifyDevice(service.agentavailable)",
            "NotifyAgent(agent.offer)",
        ],
    );
    assert_eq!(walk.record.served_by.as_deref(), Some("agent-1"));
}

#[test]
fn only_the_offered_agent_answers_and_only_while_it_is_offered() {
    let scn = preview();
    let offered = testing::run(&scn, testing::new_service(), &[at(30, reserved("agent-1"))]).record;
    for event in [accepted("agent-2"), rejected("agent-2")] {
        let got = machine::apply(&offered, &scn, &event, secs(35));
        let (state, _, message) = testing::not_allowed(got);
        assert_eq!(state, S::WaitForUserConfirm);
        assert!(message.contains("agent-2"), "{message}");
    }
    let taken = machine::apply(&offered, &scn, &accepted("agent-1"), secs(35)).unwrap();
    let again = machine::apply(&taken.record, &scn, &accepted("agent-1"), secs(36));
    assert!(matches!(again, Err(TransitionError::NotAllowed { .. })));
}

#[test]
fn a_reject_requeues_with_the_age_kept_and_the_agent_excluded() {
    let scn = preview();
    let walk = check(
        "reject",
        &scn,
        &[at(30, reserved("agent-1")), at(40, rejected("agent-1"))],
        (S::WaitForAgent, None),
        &[
            "TimerCancelled(agent_preview)",
            "AgentReleased",
            "EnteredQueue",
            "TimerArmed(find_agent)",
        ],
    );
    let rec = &walk.record;
    assert_eq!(rec.ticket.since, t0(), "its place in the queue is kept");
    assert_eq!(rec.ticket.declined, vec!["agent-1".to_owned()]);
    assert_eq!(rec.preview_rejects, 1);
    assert!(rec.agent.is_none() && !rec.preview_pending);
    assert_eq!(engine::store::QueueEntry::of(rec).declined, vec!["agent-1"]);
    // The rejecting agent is refused; another agent gets the preview.
    let got = machine::apply(rec, &scn, &reserved("agent-1"), secs(50));
    let (_, _, message) = testing::not_allowed(got);
    assert!(message.contains("declined"), "{message}");
    let next = machine::apply(rec, &scn, &reserved("agent-2"), secs(50)).unwrap();
    assert!(next.record.preview_pending);
    assert_eq!(next.record.agent.as_deref(), Some("agent-2"));
}

#[test]
fn a_preferred_agent_that_rejects_lets_the_queue_have_it() {
    let scn = preview();
    let mut new = testing::new_service();
    new.preferred_agent = Some("agent-1".to_owned());
    let walk = testing::run(
        &scn,
        new,
        &[at(30, reserved("agent-1")), at(40, rejected("agent-1"))],
    );
    assert_eq!(walk.record.ticket.preferred_agent, None);
    assert!(machine::apply(&walk.record, &scn, &reserved("agent-2"), secs(50)).is_ok());
}

#[test]
fn the_last_allowed_reject_completes_the_service() {
    let scn = preview();
    let walk = check(
        "second reject",
        &scn,
        &[
            at(30, reserved("agent-1")),
            at(40, rejected("agent-1")),
            at(50, reserved("agent-2")),
            at(60, rejected("agent-2")),
        ],
        (S::Completed, Some(R::FailAgentRejected)),
        &[
            "TimerCancelled(agent_preview)",
            "TimerCancelled(ttl)",
            "AgentReleased",
            "NotifyDevice(service.completed)",
        ],
    );
    assert_eq!(walk.record.preview_rejects, 2);
    assert_eq!(
        R::FailAgentRejected.wire_name(2),
        "AGENT_PREVIEW_CANCEL_AFTER_2REJECTS"
    );
    assert_eq!(
        walk.record.reason_name().as_deref(),
        Some("AGENT_PREVIEW_CANCEL_AFTER_2REJECTS")
    );
    assert_eq!(
        R::from_gms_name("agent_preview_cancel_after_2rejects"),
        Some(R::FailAgentRejected)
    );
}

#[test]
fn without_allowed_rejects_a_reject_is_refused() {
    let scn = ScenarioBuilder::chat_delay()
        .key("_agent_preview", "true")
        .build();
    let rec = testing::run(&scn, testing::new_service(), &[at(30, reserved("agent-1"))]).record;
    let got = machine::apply(&rec, &scn, &rejected("agent-1"), secs(35));
    let (_, _, message) = testing::not_allowed(got);
    assert!(message.contains("_agent_preview_allow_reject"), "{message}");
}

#[test]
fn an_unanswered_preview_sets_the_agent_not_ready_and_requeues() {
    let scn = preview();
    let walk = check(
        "preview timeout",
        &scn,
        &[at(30, reserved("agent-1")), fire(TimerKind::AgentPreview)],
        (S::WaitForAgent, None),
        &[
            "AgentNotReady",
            "AgentReleased",
            "EnteredQueue",
            "TimerArmed(find_agent)",
        ],
    );
    assert!(walk.last().contains(&Effect::AgentNotReady {
        agent: "agent-1".into()
    }));
    let rec = &walk.record;
    // Not the agent's choice: no reject counted, but not offered again.
    assert_eq!(rec.preview_rejects, 0);
    assert_eq!(rec.ticket.declined, vec!["agent-1".to_owned()]);
    assert_eq!(rec.ticket.since, t0());
    assert_eq!(rec.history.last().unwrap().event, "agent_preview_timeout");
    // `_agent_preview_timeout_set_notready = false` leaves the agent ready.
    let scn = ScenarioBuilder::chat_delay()
        .keys(&[
            ("_agent_preview", "true"),
            ("_agent_preview_timeout_set_notready", "false"),
        ])
        .build();
    let walk = testing::run(
        &scn,
        testing::new_service(),
        &[at(30, reserved("agent-1")), fire(TimerKind::AgentPreview)],
    );
    assert_eq!(walk.record.state, S::WaitForAgent);
    assert!(!walk
        .last()
        .iter()
        .any(|e| matches!(e, Effect::AgentNotReady { .. })));
}

#[test]
fn a_scenario_refuses_preview_without_waiting_for_an_agent() {
    let text = ScenarioBuilder::chat_immediate()
        .key("_agent_preview", "true")
        .toml();
    let err = Scenario::from_toml(std::path::Path::new("chat-immediate.toml"), &text).unwrap_err();
    assert!(err.to_string().contains("_agent_preview"), "{err}");
}

#[test]
fn the_device_hears_gms_reason_with_the_count() {
    let scn = preview();
    let walk = testing::run(
        &scn,
        testing::new_service(),
        &[
            at(30, reserved("agent-1")),
            at(40, rejected("agent-1")),
            at(50, reserved("agent-2")),
            at(60, rejected("agent-2")),
        ],
    );
    let completed = walk.record.outbox.last().expect("a completed notification");
    assert_eq!(
        completed.payload["_callback_reason"],
        "AGENT_PREVIEW_CANCEL_AFTER_2REJECTS"
    );
    // Stored under its old name, so records written before read the same.
    let stored = serde_json::to_value(walk.record.reason).unwrap();
    assert_eq!(stored, "FAIL_AGENT_REJECTED");
}
