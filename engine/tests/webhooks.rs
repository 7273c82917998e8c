//! Webhook events owed by transitions, written into the record with them,
//! and the bookkeeping of delivery rounds: pure (record, event, now) walks.

use std::path::Path;
use std::sync::Arc;

use engine::machine::{self, Event};
use engine::record::{TimerKind, RECORD_SCHEMA_WEBHOOKS};
use engine::scenario::Scenario;
use engine::testing::{at, new_service, reserved, run, secs, ScenarioBuilder};
use engine::webhook::MAX_ATTEMPTS;

/// chat-delay with two subscriptions: the CRM wants everything, billing
/// only completions.
fn scenario() -> Arc<Scenario> {
    let text = format!(
        "{}\n[[_webhook]]\nurl = \"https://crm.example/hooks\"\nsecret_env = \"CRM_SECRET\"\n\
         \n[[_webhook]]\nurl = \"https://billing.example/hooks\"\nsecret_env = \"BILLING_SECRET\"\n\
         events = [\"service.completed\"]\n",
        ScenarioBuilder::chat_delay().toml()
    );
    Arc::new(Scenario::from_toml(Path::new("hooked.toml"), &text).unwrap())
}

/// (target, type) of every pending event, in order.
fn pending(rec: &engine::record::ServiceRecord) -> Vec<(usize, String)> {
    rec.webhooks
        .pending
        .iter()
        .map(|e| (e.target, e.kind.clone()))
        .collect()
}

#[test]
fn each_transition_writes_the_events_it_owes_into_the_record() {
    let scn = scenario();
    let walk = run(
        &scn,
        new_service(),
        &[
            at(30, reserved("agent-1")),
            at(40, Event::UserConfirmed),
            at(100, Event::Complete),
        ],
    );
    let rec = &walk.record;
    let crm = |kind: &str| (0, kind.to_owned());
    assert_eq!(
        pending(rec),
        [
            crm("service.created"),
            crm("service.routed"),
            crm("service.connected"),
            crm("service.completed"),
            (1, "service.completed".to_owned()),
        ]
    );
    let ids: Vec<&str> = rec.webhooks.pending.iter().map(|e| e.id.as_str()).collect();
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "ids are unique: {ids:?}");
    let done = &rec.webhooks.pending[3];
    assert_eq!(done.at, secs(100));
    assert_eq!(done.data["scenario"], "chat-delay");
    assert_eq!(done.data["service_id"], rec.id.as_str());
    assert_eq!(done.data["state"], "COMPLETED");
    assert_eq!(done.data["reason"], "AGENT_CONNECTED");
    let body = done.body();
    assert_eq!(body["type"], "service.completed");
    assert_eq!(body["timestamp"], "2024-05-01T10:01:40.000Z");
    // The delivery timer was armed at the first event and not moved since.
    assert_eq!(rec.timers.get(&TimerKind::Webhook), Some(&secs(0)));
    assert_eq!(rec.schema, RECORD_SCHEMA_WEBHOOKS);
    let decoded = engine::record::ServiceRecord::decode(&rec.encode()).unwrap();
    assert_eq!(&decoded, rec);
}

#[test]
fn a_cancel_is_its_own_event_and_a_scenario_without_subscriptions_owes_nothing() {
    let walk = run(&scenario(), new_service(), &[at(10, Event::Cancel)]);
    assert_eq!(
        pending(&walk.record),
        [
            (0, "service.created".to_owned()),
            (0, "service.cancelled".to_owned())
        ]
    );
    let plain = run(
        &ScenarioBuilder::chat_delay().build(),
        new_service(),
        &[at(10, Event::Cancel)],
    );
    assert!(plain.record.webhooks.is_empty());
    assert!(!plain.record.timers.contains_key(&TimerKind::Webhook));
    assert_eq!(plain.record.schema, engine::record::RECORD_SCHEMA_PLAIN);
}

#[test]
fn a_round_takes_out_what_was_delivered_and_retries_the_rest_later_doubling() {
    let scn = scenario();
    let rec = run(&scn, new_service(), &[at(10, Event::Cancel)]).record;
    let ids: Vec<String> = rec.webhooks.pending.iter().map(|e| e.id.clone()).collect();

    // The first reached its receiver, the second did not.
    let round = Event::WebhooksAttempted {
        delivered: vec![ids[0].clone()],
        failed: vec![(ids[1].clone(), "HTTP 503".to_owned())],
    };
    let after = machine::apply(&rec, &scn, &round, secs(20)).unwrap();
    let r = &after.record;
    assert_eq!(pending(r), [(0, "service.cancelled".to_owned())]);
    assert_eq!(r.webhooks.pending[0].attempts, 1);
    assert_eq!(
        r.webhooks.pending[0].last_error.as_deref(),
        Some("HTTP 503")
    );
    assert_eq!(r.timers.get(&TimerKind::Webhook), Some(&secs(22)));
    assert!(after.effects.contains(&machine::Effect::TimerArmed {
        kind: TimerKind::Webhook,
        due: secs(22)
    }));
    // A late report of the delivered one (another node's round, after its
    // lease ran out) changes nothing.
    let late = Event::WebhooksAttempted {
        delivered: vec![ids[0].clone()],
        failed: vec![],
    };
    assert!(matches!(
        machine::apply(r, &scn, &late, secs(21)),
        Err(machine::TransitionError::Unchanged)
    ));

    // Failing again doubles the delay; after MAX_ATTEMPTS it is given up.
    let mut r = r.clone();
    let mut now = 22;
    for attempt in 2..=MAX_ATTEMPTS {
        let fail = Event::WebhooksAttempted {
            delivered: vec![],
            failed: vec![(ids[1].clone(), "refused".to_owned())],
        };
        r = machine::apply(&r, &scn, &fail, secs(now)).unwrap().record;
        if attempt < MAX_ATTEMPTS {
            let delay = engine::webhook::retry_delay(attempt).as_secs() as i64;
            assert_eq!(r.timers.get(&TimerKind::Webhook), Some(&secs(now + delay)));
            now += delay;
        }
    }
    assert!(r.webhooks.pending.is_empty());
    assert_eq!(r.webhooks.failed.len(), 1);
    assert!(!r.timers.contains_key(&TimerKind::Webhook));

    // An operator's retry puts it back in line, due now, counted afresh.
    let back = machine::apply(&r, &scn, &Event::WebhooksRetried, secs(now)).unwrap();
    assert_eq!(pending(&back.record), [(0, "service.cancelled".to_owned())]);
    assert_eq!(back.record.webhooks.pending[0].attempts, 0);
    assert_eq!(
        back.record.timers.get(&TimerKind::Webhook),
        Some(&secs(now))
    );
    assert!(matches!(
        machine::apply(&back.record, &scn, &Event::WebhooksRetried, secs(now)),
        Err(machine::TransitionError::Unchanged)
    ));
}

#[test]
fn scenario_subscriptions_are_checked_when_loaded() {
    let parse = |extra: &str| {
        Scenario::from_toml(
            Path::new("hooked.toml"),
            &format!("{}\n{extra}", ScenarioBuilder::chat_delay().toml()),
        )
        .map_err(|e| e.to_string())
    };
    let e = parse("[[_webhook]]\nurl = \"https://x.example\"\nsecret_env = \"S\"\nevents = [\"service.finished\"]\n")
        .unwrap_err();
    assert!(
        e.contains("_webhook.events") && e.contains("service.finished"),
        "{e}"
    );
    let e = parse("[[_webhook]]\nurl = \"mailto:x\"\nsecret_env = \"S\"\n").unwrap_err();
    assert!(e.contains("_webhook.url"), "{e}");
    let e = parse("[[_webhook]]\nurl = \"https://x.example\"\n").unwrap_err();
    assert!(e.contains("secret_env"), "{e}");
    let e = parse(
        "[[_webhook]]\nurl = \"https://x.example\"\nsecret_env = \"S\"\nsecret = \"whsec_x\"\n",
    )
    .unwrap_err();
    assert!(e.contains("secret"), "{e}");
}
