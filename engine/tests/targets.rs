//! `_target` in URS form: a list of targets a waiting service moves
//! through, by timeout or because a target's stat condition holds, and
//! `_urs_virtual_queue`, the queue it is counted under meanwhile.

use std::path::Path;
use std::sync::Arc;

use engine::machine::{self, Event};
use engine::record::{ServiceState, TimerKind, RECORD_SCHEMA};
use engine::routing::target::Route;
use engine::scenario::Scenario;
use engine::store::QueueEntry;
use engine::testing::{self, at, fire, reserved, secs, t0, ScenarioBuilder, Step};

use ServiceState as S;

/// The seed's form: a JSON list in a TOML string, numbers quoted.
const SEED_TARGETS: &str = r#"'[{"target": "Billing@StatServer.GA", "timeout": "30", "clear": false}, {"target": "?:Loans>=2@StatServer.GA", "timeout": "60", "clear": true, "stat_to_check": "RStatAgentsReady", "stat_operator": "<", "stat_value": "1"}, {"target": "jane@StatServer.A"}]'"#;

fn targeted(target: &str) -> ScenarioBuilder {
    ScenarioBuilder::chat_delay()
        .unset("_target")
        .key("_target", target)
}

fn scenario(target: &str) -> Arc<Scenario> {
    targeted(target).build()
}

/// The agents the waiting service may go to, in URS form, current first.
fn agents(rec: &engine::record::ServiceRecord) -> Vec<String> {
    let entry = QueueEntry::of(rec);
    entry
        .route
        .expect("a routed entry")
        .any
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn walk(scn: &Arc<Scenario>, steps: &[Step]) -> testing::Walk {
    testing::run(scn, testing::new_service(), steps)
}

#[test]
fn a_waiting_service_widens_then_moves_on_by_timeout() {
    let scn = scenario(SEED_TARGETS);
    // Counted under the first group the targets name.
    assert_eq!(scn.target.queue, "Billing");
    let created = walk(&scn, &[]);
    let rec = &created.record;
    assert_eq!(rec.state, S::WaitForAgent);
    assert_eq!(
        rec.schema, RECORD_SCHEMA,
        "older nodes refuse a routed record"
    );
    assert_eq!(agents(rec), ["Billing@StatServer.GA"]);
    assert_eq!(rec.timers.get(&TimerKind::TargetTimeout), Some(&secs(30)));

    // 30 s: Billing does not clear, so the skilled agents widen it.
    let widened = walk(&scn, &[fire(TimerKind::TargetTimeout)]);
    let rec = &widened.record;
    assert_eq!(rec.state, S::WaitForAgent);
    assert_eq!(
        agents(rec),
        ["?:Loans>=2@StatServer.GA", "Billing@StatServer.GA"]
    );
    assert_eq!(rec.timers.get(&TimerKind::TargetTimeout), Some(&secs(90)));
    assert_eq!(rec.ticket.since, t0(), "the service keeps its place");
    assert_eq!(
        testing::effect_kinds(widened.last()),
        testing::sorted(&["EnteredQueue", "TimerArmed(target_timeout)"])
    );
    let last = rec.history.last().unwrap();
    assert_eq!(
        (&*last.event, last.by.as_deref()),
        ("target_timeout", Some("timer target_timeout"))
    );

    // 90 s: the skill target clears, so Jane alone, and no more timer.
    let moved = walk(
        &scn,
        &[
            fire(TimerKind::TargetTimeout),
            fire(TimerKind::TargetTimeout),
        ],
    );
    assert_eq!(agents(&moved.record), ["jane@StatServer.A"]);
    assert!(!moved.record.timers.contains_key(&TimerKind::TargetTimeout));
    assert_eq!(
        moved.record.ticket.route.as_ref().unwrap().since,
        Some(secs(90))
    );
}

#[test]
fn a_skip_moves_on_at_once_and_a_stale_one_is_refused() {
    let scn = scenario(SEED_TARGETS);
    // Skipping the first target (it has no condition the router would
    // check, but the machine takes the router's word for the step it saw).
    let skipped = walk(&scn, &[at(5, Event::TargetSkipped { step: 0 })]);
    let rec = &skipped.record;
    assert_eq!(
        agents(rec),
        ["?:Loans>=2@StatServer.GA"],
        "a skipped target is not kept"
    );
    assert_eq!(rec.timers.get(&TimerKind::TargetTimeout), Some(&secs(65)));
    assert_eq!(rec.ticket.route.as_ref().unwrap().skipped, [0]);
    let last = rec.history.last().unwrap();
    assert_eq!(
        (&*last.event, last.by.as_deref()),
        ("target_skipped", Some("router"))
    );
    let entry = QueueEntry::of(rec);
    assert!(
        entry.route.unwrap().skip_if.is_some(),
        "the router checks the second target"
    );

    // The router saw step 0 again (a stale snapshot): refused.
    let stale = machine::apply(rec, &scn, &Event::TargetSkipped { step: 0 }, secs(6));
    let (_, _, message) = testing::not_allowed(stale);
    assert!(
        message.contains("not the service's current target"),
        "{message}"
    );
    // The last target is never skipped.
    let last = walk(
        &scn,
        &[
            at(5, Event::TargetSkipped { step: 0 }),
            at(6, Event::TargetSkipped { step: 1 }),
        ],
    );
    assert_eq!(agents(&last.record), ["jane@StatServer.A"]);
    let refused = machine::apply(
        &last.record,
        &scn,
        &Event::TargetSkipped { step: 2 },
        secs(7),
    );
    assert!(testing::not_allowed(refused).2.contains("its last"));
}

#[test]
fn taken_and_requeued_it_goes_on_from_where_it_was() {
    let scn = scenario(SEED_TARGETS);
    let steps = [
        fire(TimerKind::TargetTimeout),
        at(40, reserved("agent-1")),
        // The customer does not confirm: requeued (chat-delay's rule).
        fire(TimerKind::UserConfirm),
    ];
    let rec = walk(&scn, &steps[..2]).record;
    assert_eq!(rec.state, S::WaitForUserConfirm);
    assert!(
        !rec.timers.contains_key(&TimerKind::TargetTimeout),
        "not waiting, no widening"
    );
    let rec = walk(&scn, &steps).record;
    assert_eq!(rec.state, S::WaitForAgent);
    assert_eq!(
        agents(&rec),
        ["?:Loans>=2@StatServer.GA", "Billing@StatServer.GA"]
    );
    // The second target began at 30 s: its 60 s ran out at 90 s, while
    // the agent had it, so it moves on as soon as it is back (100 s).
    assert_eq!(rec.timers.get(&TimerKind::TargetTimeout), Some(&secs(100)));
    let early = walk(
        &scn,
        &[
            fire(TimerKind::TargetTimeout),
            at(40, reserved("agent-1")),
            at(45, Event::Requeued),
        ],
    );
    assert_eq!(
        early.record.timers.get(&TimerKind::TargetTimeout),
        Some(&secs(90)),
        "back before its time is up, it keeps the rest of it"
    );
}

#[test]
fn a_booked_service_starts_its_targets_when_it_queues() {
    let scn = scenario(SEED_TARGETS);
    let mut new = testing::new_service();
    new.desired_time = Some(secs(600));
    let created = machine::create(new, &scn, t0());
    let route = created.record.ticket.route.clone().unwrap();
    assert_eq!(route.since, None);
    assert!(!created
        .record
        .timers
        .contains_key(&TimerKind::TargetTimeout));
    let queued = testing::step_to(&created.record, &scn, &fire(TimerKind::DesiredTime));
    assert_eq!(
        queued.timers.get(&TimerKind::TargetTimeout),
        Some(&secs(630))
    );
}

#[test]
fn a_supervisors_move_to_a_queue_replaces_the_targets() {
    let scn = scenario(SEED_TARGETS);
    let rec = walk(
        &scn,
        &[at(
            10,
            Event::Moved {
                queue: Some("vip".into()),
                agent: None,
            },
        )],
    )
    .record;
    assert_eq!(rec.ticket.queue, "vip");
    assert!(rec.ticket.route.is_none());
    assert!(!rec.timers.contains_key(&TimerKind::TargetTimeout));
    assert!(QueueEntry::of(&rec).route.is_none());
}

#[test]
fn the_simple_form_has_no_route() {
    let scn = ScenarioBuilder::chat_delay().build();
    let rec = walk(&scn, &[]).record;
    assert!(rec.ticket.route.is_none());
    assert!(!rec.timers.contains_key(&TimerKind::TargetTimeout));
    assert_eq!(rec.schema, engine::record::RECORD_SCHEMA_PLAIN);
}

#[test]
fn a_virtual_queue_counts_the_services_of_any_target_form() {
    // URS targets under a virtual queue.
    let scn = targeted(SEED_TARGETS)
        .key("_urs_virtual_queue", r#""loans_vq""#)
        .build();
    assert_eq!(scn.target.queue, "loans_vq");
    let rec = walk(&scn, &[]).record;
    assert_eq!(rec.ticket.queue, "loans_vq");
    assert_eq!(agents(&rec), ["Billing@StatServer.GA"]);

    // The simple form under a virtual queue: the queue's agents with the
    // skills, counted under the virtual queue.
    let scn = targeted(r#"{ queue = "support", skills = "English >= 3" }"#)
        .key("_urs_virtual_queue", r#""support_vq""#)
        .build();
    let rec = walk(&scn, &[]).record;
    assert_eq!(rec.ticket.queue, "support_vq");
    assert_eq!(agents(&rec), ["support@StatServer.GA [English >= 3]"]);
    assert!(!rec.timers.contains_key(&TimerKind::TargetTimeout));

    // Naming its own queue changes nothing.
    let scn = ScenarioBuilder::chat_delay()
        .key("_urs_virtual_queue", r#""support""#)
        .build();
    assert!(walk(&scn, &[]).record.ticket.route.is_none());
}

/// `_target` (and `_urs_virtual_queue`) as written gives the key and the
/// reason of the error, or parses.
fn check(target: &str, vq: Option<&str>, expected: Result<(), (&str, &str)>) {
    let mut builder = targeted(target);
    if let Some(vq) = vq {
        builder = builder.key("_urs_virtual_queue", vq);
    }
    match (builder.parse(), expected) {
        (Ok(_), Ok(())) => {}
        (Err(e), Err((key, reason))) => {
            assert_eq!(e.key.as_deref(), Some(key), "{target}: {e}");
            assert!(e.reason.contains(reason), "{target}: {e}");
        }
        (got, want) => panic!("{target}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn targets_as_written() {
    check(r#""Billing@StatServer.GA""#, None, Ok(()));
    check(r#""jane@StatServer.A""#, Some(r#""agents_vq""#), Ok(()));
    check(
        r#""jane@StatServer.A""#,
        None,
        Err(("_urs_virtual_queue", "must be set")),
    );
    check(
        r#""?:English=20&Loans=2@StatServer.GA""#,
        Some(r#""skills_vq""#),
        Ok(()),
    );
    check(
        r#"[{ target = "Billing@StatServer.GA", timeout = 30 }, { target = "Sales@StatServer.GA" }]"#,
        None,
        Ok(()),
    );
    check(SEED_TARGETS, None, Ok(()));
    check(
        r#""Billing""#,
        None,
        Err(("_target", "expected <target>@<StatServer>")),
    );
    check(
        r#"'[{"target": "Billing@StatServer.GA", "timeout": "soon"}]'"#,
        None,
        Err(("_target", "target 1: timeout `soon`")),
    );
    check(
        r#"[{ target = "Billing@StatServer.GA", stat_to_check = "RStatAgentsReady", stat_operator = "<" }]"#,
        None,
        Err(("_target", "go together")),
    );
    check(
        r#"{ queue = "support", colour = 1 }"#,
        None,
        Err(("_target", "unknown field `colour`")),
    );
    check("7", None, Err(("_target", "is a integer")));
    check(
        r#""Billing@StatServer.GA""#,
        Some(r#""two words""#),
        Err(("_urs_virtual_queue", "without spaces")),
    );
}

#[test]
fn a_scenario_file_may_write_the_targets_as_an_array_of_tables() {
    let text = format!(
        "{}\n[[_target]]\ntarget = \"Billing@StatServer.GA\"\ntimeout = \"30\"\nclear = false\n\n[[_target]]\ntarget = \"Sales@StatServer.GA\"\n",
        ScenarioBuilder::chat_delay().unset("_target").toml()
    );
    let scn = Scenario::from_toml(Path::new("chat-delay.toml"), &text).unwrap();
    assert_eq!(scn.target.steps.len(), 2);
    assert_eq!(scn.target.queue, "Billing");
    let _ = Route::start(&scn.target.steps);
}
