//! GMS wire shapes: what the seed shows, field for field.

use axum::http::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};
use engine::record::ServiceRecord;
use engine::scenario::Scenario;
use serde_json::{json, Map, Value};

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A service as GMS's query answers it: the fixed keys, then the user data.
pub fn query_record(rec: &ServiceRecord) -> Value {
    let mut map = Map::new();
    map.insert("_id".into(), json!(rec.id));
    map.insert("_desired_time".into(), json!(time(rec.desired_time)));
    map.insert("_service_name".into(), json!(rec.scenario));
    map.insert("_callback_state".into(), json!(rec.state.gms_name()));
    map.insert("_callback_reason".into(), json!(rec.reason_name()));
    map.insert("_expiration_time".into(), json!(time(rec.expiration_time)));
    map.insert("_customer_number".into(), json!(rec.customer_number));
    for (k, v) in &rec.user_data {
        map.entry(k.clone())
            .or_insert_with(|| Value::String(v.clone()));
    }
    Value::Object(map)
}

/// The string a query condition compares against, for any queryable key.
pub fn query_value(rec: &ServiceRecord, key: &str) -> Option<String> {
    Some(match key {
        "_id" => rec.id.clone(),
        "_desired_time" => time(rec.desired_time),
        "_service_name" => rec.scenario.clone(),
        "_callback_state" => rec.state.gms_name().to_owned(),
        "_callback_reason" => rec.reason_name()?,
        "_expiration_time" => time(rec.expiration_time),
        "_customer_number" => rec.customer_number.clone(),
        "_device_os" => rec.device_os.clone()?,
        "_agent_id" => rec.served_by.clone().or_else(|| rec.agent.clone())?,
        other => rec.user_data.get(other)?.clone(),
    })
}

/// Where clients reach this server: `--public-url`, or the request's Host,
/// `https://` when this server speaks TLS itself (`tls`) or a proxy says
/// the request came over https.
pub fn base_url(public_url: Option<&str>, tls: bool, headers: &HeaderMap) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(axum::http::header::HOST))
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost:8080");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        _ if tls => "https",
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// The StartChat dialog of connect (and of create in chat-immediate).
pub fn start_chat_dialog(
    rec: &ServiceRecord,
    scenario: &Scenario,
    base: &str,
) -> Map<String, Value> {
    let mut parameters = Map::new();
    for (k, v) in &scenario.chat_parameters {
        parameters.insert(k.clone(), json!(v));
    }
    let mut map = Map::new();
    map.insert("_dialog_id".into(), json!("1"));
    map.insert("_action".into(), json!("StartChat"));
    map.insert("_label".into(), json!(scenario.texts.start_chat_label));
    map.insert(
        "_start_chat_url".into(),
        json!(format!("{base}/genesys/1/service/{}/ixn/chat", rec.id)),
    );
    map.insert("_comet_url".into(), json!(format!("{base}/genesys/cometd")));
    map.insert(
        "_user_header".into(),
        json!(rec.device_notification_id.clone().unwrap_or_default()),
    );
    map.insert("_id_to_jump_before".into(), json!("exit://"));
    map.insert("_chat_parameters".into(), Value::Object(parameters));
    map.insert("_id".into(), json!(rec.id));
    map
}
