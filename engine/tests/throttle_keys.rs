//! GMS's throttling keys in a scenario: names, values, defaults, refusals.

use std::path::Path;
use std::time::Duration;

use engine::scenario::{InQueueChecking, Scenario};

const BASE: &str = r#"
name = "t"
_media_type = "chat"
_wait_for_agent = true
_ttl = 3600
_target = { queue = "support" }
"#;

fn parse(extra: &str) -> Result<Scenario, String> {
    Scenario::from_toml(Path::new("t.toml"), &format!("{BASE}{extra}")).map_err(|e| e.to_string())
}

#[test]
fn every_throttle_is_off_unless_set() {
    let s = parse("").unwrap();
    let t = &s;
    assert_eq!(t.throttle_customer_number_limit, None);
    assert_eq!(t.throttle_callbacks_per_service_1, None);
    assert_eq!(t.throttle_callbacks_per_service_2, None);
    assert_eq!(t.throttle_parameters().count(), 0);
    assert_eq!(t.in_queue_checking, InQueueChecking::Off);
    assert_eq!(t.max_queued_callbacks_per_service, None);
    // GMS's windows and request-parameter limit, for when a limit is set.
    assert_eq!(t.throttle_ttl_1, Duration::from_secs(300));
    assert_eq!(t.throttle_ttl_2, Duration::from_secs(3600));
    assert_eq!(t.throttle_request_parameters_limit, 6);
    assert!(t.throttle_header_parameters);
}

#[test]
fn gms_names_and_values_are_read() {
    let s = parse(
        r#"
_throttle_customer_number_limit = 6
_throttle_callbacks_per_service_1 = 500
_throttle_ttl_1 = 300
_throttle_callbacks_per_service_2 = 1000
_throttle_ttl_2 = "1h"
_throttle_request_parameters = "_customer_number, user_id"
_throttle_request_parameters_limit = 8
_enable_throttle_header_parameters = false
_enable_in_queue_checking = "strict"
max_queued_callbacks_per_service = 1000
"#,
    )
    .unwrap();
    let t = &s;
    assert_eq!(t.throttle_customer_number_limit, Some(6));
    assert_eq!(t.throttle_callbacks_per_service_2, Some(1000));
    assert_eq!(t.throttle_ttl_2, Duration::from_secs(3600));
    assert_eq!(
        t.throttle_parameters().collect::<Vec<_>>(),
        ["_customer_number", "user_id"]
    );
    assert_eq!(t.throttle_request_parameters_limit, 8);
    assert!(!t.throttle_header_parameters);
    assert_eq!(t.in_queue_checking, InQueueChecking::Strict);
    assert_eq!(t.in_queue_checking.max_active(), Some(1));
    assert_eq!(t.max_queued_callbacks_per_service, Some(1000));
    assert_eq!(
        parse("_enable_in_queue_checking = true\n")
            .unwrap()
            .in_queue_checking
            .max_active(),
        Some(2)
    );
}

#[test]
fn bad_values_and_unknown_keys_are_refused_by_name() {
    let e = parse("_enable_in_queue_checking = \"sometimes\"\n").unwrap_err();
    assert!(e.contains("_enable_in_queue_checking"), "{e}");
    let e = parse("_throttle_customer_number_limit = 0\n").unwrap_err();
    assert!(e.contains("_throttle_customer_number_limit"), "{e}");
    let e = parse("_throttle_ttl_1 = 0\n").unwrap_err();
    assert!(e.contains("_throttle_ttl_1"), "{e}");
    // Unknown keys are still refused next to the flattened throttle keys.
    let e = parse("_throttle_customer_number_limits = 6\n").unwrap_err();
    assert!(e.contains("_throttle_customer_number_limits"), "{e}");
}

/// GMS's phone-number checks: off by default, `_default_country` US, and
/// a country that is not an ISO code refused by name.
#[test]
fn phone_number_keys() {
    let s = parse("").unwrap();
    assert!(!s.phone_rules().any());
    assert_eq!(s.default_country, "US");
    let s = parse(
        "_disallow_impossible_phone_numbers = true\n_disallow_premium_phone_numbers = true\n_default_country = \"gb\"\n",
    )
    .unwrap();
    let rules = s.phone_rules();
    assert!(rules.disallow_impossible && rules.disallow_premium);
    assert_eq!(rules.check("020 7946 0958"), Ok(()));
    for bad in ["\"GBR\"", "\"\"", "44"] {
        let e = parse(&format!("_default_country = {bad}\n")).unwrap_err();
        assert!(e.contains("_default_country"), "{bad}: {e}");
    }
    let e = parse("_disallow_premium_phone_numbers = \"yes\"\n").unwrap_err();
    assert!(e.contains("_disallow_premium_phone_numbers"), "{e}");
}
