//! `GET /metrics`, read by a Prometheus text parser (the `prometheus-parse`
//! crate) after a whole flow: counters, real histograms, gauges from the
//! store, and labels that never carry an id or a phone number.
//!
//! The recorder is one per process and the API tests share a process, so
//! this test uses a scenario and a queue of its own and reads only their
//! labels (or differences).

use std::time::Duration;

use engine::testing::ScenarioBuilder;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue, Sample};
use serde_json::Value as Json;
use tests::TestApp;

const SCENARIO: &str = "metrics-flow";
const QUEUE: &str = "metrics-q";
const NUMBER: &str = "4085550199";

type Scrape = MetricsExposition<PrometheusType, PrometheusValue>;

async fn scrape(app: &TestApp) -> (String, Scrape) {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let scrape =
        parse_prometheus(&text).unwrap_or_else(|e| panic!("not Prometheus text: {e:?}\n{text}"));
    (text, scrape)
}

/// The samples of `metric` whose labels include every `(name, value)`.
fn samples<'a>(
    scrape: &'a Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a Sample<PrometheusValue>> {
    let Some(family) = scrape.families.get(metric) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .filter(|s| {
            let set = s.get_labelset().expect("labels");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .collect()
}

/// The one value of a counter or gauge with these labels (0 when absent).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match samples(scrape, metric, labels).as_slice() {
        [] => 0.0,
        [one] => match &one.value {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Gauge(v) | PrometheusValue::Unknown(v) => v.as_f64(),
            other => panic!("{metric} is not a counter or gauge: {other:?}"),
        },
        many => panic!("{metric} {labels:?}: {} samples", many.len()),
    }
}

#[tokio::test]
async fn a_whole_flow_is_counted_measured_and_observed() {
    let scenario = ScenarioBuilder::chat_delay()
        .name(SCENARIO)
        .unset("_target")
        .key(
            "_target",
            &format!(r#"{{ queue = "{QUEUE}", priority = 0 }}"#),
        );
    let app = TestApp::builder().with_scenario(&scenario).spawn().await;

    let (status, created) = app
        .post_form(
            &format!("/genesys/1/service/callback/{SCENARIO}"),
            &[
                ("_customer_number", NUMBER),
                ("_device_os", "comet"),
                ("_device_notification_id", "metrics-device"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["_id"].as_str().unwrap().to_owned();

    // Waiting: the gauges read from the store say so.
    let (_, waiting) = scrape(&app).await;
    let queued = [("scenario", SCENARIO), ("state", "QUEUED")];
    assert_eq!(value(&waiting, "callbackd_services", &queued), 1.0);
    assert_eq!(
        value(&waiting, "callbackd_queue_length", &[("queue", QUEUE)]),
        1.0
    );
    assert!(
        value(
            &waiting,
            "callbackd_queue_oldest_wait_seconds",
            &[("queue", QUEUE)]
        ) >= 0.0
    );
    assert_eq!(
        value(
            &waiting,
            "callbackd_services_created_total",
            &[("scenario", SCENARIO)]
        ),
        1.0
    );

    // An agent takes it, the customer confirms, the agent completes.
    app.ready_agent("metrics-agent", &[QUEUE], 1).await;
    app.wait_for_state(&id, "ROUTING", Duration::from_secs(5))
        .await;
    let (_, routing) = scrape(&app).await;
    assert_eq!(value(&routing, "callbackd_services", &queued), 0.0);
    assert_eq!(
        value(
            &routing,
            "callbackd_services",
            &[("scenario", SCENARIO), ("state", "ROUTING")]
        ),
        1.0
    );
    assert!(value(&routing, "callbackd_agents", &[("state", "busy")]) >= 1.0);
    assert!(value(&routing, "callbackd_outbox_depth", &[("side", "device")]) >= 1.0);
    let (status, _) = app
        .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
        .await;
    assert_eq!(status, 200);
    let (status, done) = app
        .post_json(&format!("/api/v1/services/{id}/complete"), &Json::Null)
        .await;
    assert_eq!(status, 200, "{done}");

    let (text, done) = scrape(&app).await;
    for (from, to) in [
        ("QUEUED", "ROUTING"),
        ("ROUTING", "PROCESSING"),
        ("PROCESSING", "COMPLETED"),
    ] {
        let labels = [("scenario", SCENARIO), ("from", from), ("to", to)];
        assert_eq!(
            value(&done, "callbackd_service_transitions_total", &labels),
            1.0,
            "{from} -> {to}"
        );
    }
    assert_eq!(
        value(
            &done,
            "callbackd_services_completed_total",
            &[("scenario", SCENARIO), ("reason", "AGENT_CONNECTED")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &done,
            "callbackd_agent_offers_total",
            &[("scenario", SCENARIO)]
        ),
        1.0
    );
    assert_eq!(
        value(&done, "callbackd_queue_length", &[("queue", QUEUE)]),
        0.0
    );

    // Requests by route template and status, never by id.
    let connect = [
        ("method", "POST"),
        ("route", "/genesys/1/service/{id}/connect"),
        ("status", "200"),
    ];
    assert!(value(&done, "callbackd_http_requests_total", &connect) >= 1.0);
    assert!(
        !text.contains(&id) && !text.contains(NUMBER) && !text.contains("metrics-agent\""),
        "an id or a number in a label"
    );

    // Latencies are histograms with buckets, for requests and store calls.
    for (metric, labels) in [
        (
            "callbackd_http_request_duration_seconds",
            vec![("route", "/genesys/1/service/callback/{scenario}")],
        ),
        ("callbackd_store_call_duration_seconds", vec![("op", "put")]),
    ] {
        assert_eq!(
            scrape_type(&done, metric),
            Some(&PrometheusType::Histogram),
            "{metric}"
        );
        assert!(
            text.contains(&format!("# TYPE {metric} histogram")),
            "{metric}"
        );
        let found = samples(&done, metric, &labels);
        let Some(PrometheusValue::Histogram(histogram)) = found.first().map(|s| &s.value) else {
            panic!("{metric} has no histogram sample with {labels:?}");
        };
        let buckets = &histogram.buckets;
        assert!(buckets.len() >= 10, "{metric}: {buckets:?}");
        assert!(
            buckets
                .iter()
                .any(|b| b.upper_bound.is_infinite() && b.count.as_f64() >= 1.0),
            "{metric}: {buckets:?}"
        );
    }
    // Every metric says what it is.
    for metric in [
        "callbackd_services",
        "callbackd_queue_ewt_seconds",
        "callbackd_push_clients",
        "callbackd_timers_due",
        "callbackd_http_requests_total",
    ] {
        let family = done
            .families
            .get(metric)
            .unwrap_or_else(|| panic!("no {metric}"));
        assert!(!family.help.is_empty(), "no # HELP for {metric}");
    }
}

fn scrape_type<'a>(scrape: &'a Scrape, metric: &str) -> Option<&'a PrometheusType> {
    scrape.families.get(metric).map(|f| &f.family_type)
}

/// With credentials, the operator's view is a supervisor's.
#[tokio::test]
async fn metrics_need_a_supervisor_when_callers_are_checked() {
    let hash = access::hash_secret("long-enough-secret");
    let credentials = format!(
        "[[credential]]\nname = \"app\"\nrole = \"backend\"\nsecret_hash = \"{hash}\"\n\
         [[credential]]\nname = \"floor\"\nrole = \"supervisor\"\nsecret_hash = \"{hash}\"\n"
    );
    let app = TestApp::builder().auth(&credentials).spawn().await;
    for (key, status) in [
        (None, 401),
        (Some("app:long-enough-secret"), 403),
        (Some("floor:long-enough-secret"), 200),
    ] {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        assert_eq!(request.send().await.unwrap().status(), status, "{key:?}");
    }
}
