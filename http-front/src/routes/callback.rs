//! Create, query and cancel callback services.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use engine::machine::{Event, NewService};
use engine::record::{ServiceRecord, ServiceState};
use engine::store::IndexKey;
use serde_json::{json, Value};

use super::check_id;
use super::schedule::{self, parse_time};
use super::video;
use crate::error::AppError;
use crate::form::GmsForm;
use crate::wire;
use crate::AppState;
use engine::record::Party;
use engine::video::VideoLeg;

/// Create fields that configure the service rather than being user data.
const OWN_FIELDS: [&str; 8] = [
    "_customer_number",
    "_desired_time",
    "_device_notification_id",
    "_device_os",
    "_timezone",
    "_preferred_agent",
    "_video_scenario",
    "routingData",
];

#[tracing::instrument(skip_all, fields(scenario = %scenario))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(scenario): Path<String>,
    headers: HeaderMap,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    let scenario = state.shell.scenario(&scenario)?.clone();
    let now = state.shell.now();
    for field in &scenario.mandatory_fields {
        form.require(field)?;
    }
    let customer_number = form.require("_customer_number")?.trim().to_owned();
    if customer_number.chars().count() > 64 || customer_number.chars().any(char::is_control) {
        return Err(AppError::field(
            "_customer_number",
            "must be at most 64 printable characters",
        ));
    }
    let desired_time = match form.get("_desired_time").map(str::trim) {
        None | Some("") => None,
        Some(text) if text.eq_ignore_ascii_case("now") => None,
        Some(text) => Some(parse_time(text).ok_or_else(|| {
            AppError::field(
                "_desired_time",
                format!("`{text}` is not an ISO-8601 UTC time such as 2026-11-21T15:30:00.000Z"),
            )
        })?),
    };
    let device_os = form.get("_device_os").map(str::to_owned);
    if device_os.as_ref().is_some_and(|os| os.len() > 32) {
        return Err(AppError::field(
            "_device_os",
            "must be at most 32 characters",
        ));
    }
    if device_os.as_deref() == Some(push::httpcb::DEVICE_OS) && scenario.httpcb_url.is_none() {
        return Err(AppError::field(
            "_device_os",
            format!(
                "is httpcb, but scenario `{}` has no _httpcb_url to post notifications to",
                scenario.name
            ),
        ));
    }
    let device_notification_id = form
        .get("_device_notification_id")
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get("gms_user")
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if device_notification_id
        .as_ref()
        .is_some_and(|d| d.chars().count() > 256 || d.chars().any(char::is_control))
    {
        return Err(AppError::field(
            "_device_notification_id",
            "must be at most 256 printable characters",
        ));
    }
    if device_os.as_deref() == Some(push::httpcb::DEVICE_OS) && device_notification_id.is_none() {
        return Err(AppError::field(
            "_device_notification_id",
            "is required with _device_os=httpcb: it tells the receiving server which device a notification is for",
        ));
    }
    let user_data: BTreeMap<String, String> = form
        .fields
        .iter()
        .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Unguessable: a v4 UUID is 122 random bits.
    let id = uuid::Uuid::new_v4().to_string();
    // In a scenario with a schedule, a desired time books the slot holding it.
    let booked = match (&scenario.schedule, desired_time) {
        (Some(schedule), Some(t)) => {
            let zone = schedule::customer_zone(&form, schedule)?;
            let base = state.link_base.clone();
            let booking = schedule::booking_for(
                &state,
                &scenario,
                schedule,
                "_desired_time",
                t,
                zone,
                &id,
                &base,
            )
            .await?;
            Some((schedule, zone, booking))
        }
        _ => None,
    };
    let preferred_agent = match form.get("_preferred_agent").map(str::trim) {
        None | Some("") => None,
        Some(agent) => {
            check_id("_preferred_agent", agent)?;
            Some(agent.to_owned())
        }
    };
    // A video scenario: the service is a video leg from the start.
    let mut video = None;
    if scenario.video_config().is_some() {
        let mut routing = video::routing_data(form.get("routingData"), &scenario, "routingData")?;
        if preferred_agent.is_some() {
            routing.preferred_agent = preferred_agent.clone();
        }
        let conversation = video::conversation_id(&form)?;
        if booked.is_none() {
            // The seed's escalation: `desired_time=now` with the chat's
            // conversationId. A chat of ours gains the video on its record.
            if let Some(chat) = conversation.as_deref() {
                if let Some(found) = live_chat(&state, chat).await? {
                    let record = state
                        .shell
                        .start_video(found, Party::Client, &scenario, routing, conversation)
                        .await?;
                    let mut answer = video::customer_view(&state, &record);
                    answer["_text"] = json!(scenario.texts.created);
                    return Ok(Json(answer));
                }
            }
        }
        video = Some(VideoLeg {
            requested_at: now,
            requested_by: Party::Client,
            scenario: scenario.name.clone(),
            routing,
            conversation_id: conversation,
            agent: None,
            routed: None,
            connected_at: None,
            rooms: Vec::new(),
            survey: None,
        });
    }
    let new = NewService {
        id,
        customer_number,
        desired_time: match &booked {
            // The appointment is the slot: its start is the desired time.
            Some((_, _, booking)) => Some(booking.slot),
            // A desired time in the past means "as soon as possible".
            None => desired_time.map(|t| t.max(now)),
        },
        device_notification_id,
        device_os,
        user_data,
        booking: booked.as_ref().map(|(_, _, b)| b.clone()),
        preferred_agent: preferred_agent.clone(),
        video,
    };
    // Video now: the room is open from the start, so the answer holds the link.
    let created = if new.video.is_some() && booked.is_none() {
        state.shell.create_with_room(&scenario, new).await
    } else {
        state.shell.create(&scenario, new).await
    };
    let record = match created {
        Ok(record) => record,
        Err(e) => {
            return Err(match &booked {
                Some((schedule, zone, _)) => {
                    schedule::refused_seat(&state, &scenario, schedule, "_desired_time", e, *zone)
                        .await
                }
                None => e.into(),
            })
        }
    };
    let mut answer = serde_json::Map::new();
    if !scenario.wait_for_agent {
        // Chat-immediate: the customer can start the chat right away.
        let base = wire::base_url(state.public_url.as_deref(), &headers);
        answer = wire::start_chat_dialog(&record, &scenario, &base);
    }
    answer.insert("_id".into(), json!(record.id));
    answer.insert("_text".into(), json!(scenario.texts.created));
    if record.video.is_some() && record.booking.is_none() {
        if let Value::Object(v) = video::customer_view(&state, &record) {
            answer.extend(v);
        }
    }
    if record.booking.is_some() {
        return Ok(Json(schedule::booking_answer(
            &record,
            Value::Object(answer),
        )));
    }
    Ok(Json(Value::Object(answer)))
}

/// The live service a `conversationId` names, if it is one of ours.
async fn live_chat(state: &AppState, id: &str) -> Result<Option<ServiceRecord>, AppError> {
    if check_id("conversationId", id).is_err() {
        return Ok(None);
    }
    let found = state.shell.find_service(id).await?;
    Ok(found.filter(|r| r.state != ServiceState::Completed))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operand {
    And,
    Or,
}

/// One `key=value` condition; a value starting with `!` negates it.
struct Condition {
    key: String,
    value: String,
    negate: bool,
}

impl Condition {
    fn holds(&self, rec: &ServiceRecord) -> bool {
        let equal = wire::query_value(rec, &self.key).is_some_and(|v| {
            if self.key == "_callback_state" || self.key == "_callback_reason" {
                v.eq_ignore_ascii_case(&self.value)
            } else {
                v == self.value
            }
        });
        equal != self.negate
    }
}

fn conditions(params: &[(String, String)]) -> Result<(Operand, Vec<Condition>), AppError> {
    let mut operand = Operand::And;
    let mut conds = Vec::new();
    for (key, value) in params {
        if key.eq_ignore_ascii_case("operand") {
            operand = match value.to_ascii_uppercase().as_str() {
                "AND" => Operand::And,
                "OR" => Operand::Or,
                _ => {
                    return Err(AppError::field(
                        "operand",
                        format!("`{value}` is not AND or OR"),
                    ))
                }
            };
            continue;
        }
        let (negate, value) = match value.strip_prefix('!') {
            Some(rest) => (true, rest.to_owned()),
            None => (false, value.clone()),
        };
        if key == "_callback_state" && ServiceState::from_gms_name(&value).is_none() {
            return Err(AppError::field(
                "_callback_state",
                format!(
                    "`{value}` is not one of SCHEDULED, QUEUED, ROUTING, PROCESSING, COMPLETED"
                ),
            ));
        }
        conds.push(Condition {
            key: key.clone(),
            value,
            negate,
        });
    }
    Ok((operand, conds))
}

fn matches(rec: &ServiceRecord, operand: Operand, conds: &[Condition]) -> bool {
    match operand {
        Operand::And => conds.iter().all(|c| c.holds(rec)),
        Operand::Or => conds.is_empty() || conds.iter().any(|c| c.holds(rec)),
    }
}

fn answer(mut records: Vec<ServiceRecord>) -> Json<Value> {
    records.sort_by(|a, b| (a.desired_time, &a.id).cmp(&(b.desired_time, &b.id)));
    Json(Value::Array(
        records.iter().map(wire::query_record).collect(),
    ))
}

/// GET /genesys/1/service/callback/{scenario}?key=value&...&operand=AND|OR
#[tracing::instrument(skip_all, fields(scenario = %scenario))]
pub async fn query(
    State(state): State<Arc<AppState>>,
    Path(scenario): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, AppError> {
    state.shell.scenario(&scenario)?;
    let (operand, conds) = conditions(&params)?;
    // Narrow by the customer index when an AND query names the customer.
    let key = match conds
        .iter()
        .find(|c| c.key == "_customer_number" && !c.negate)
    {
        Some(c) if operand == Operand::And => IndexKey::Customer(c.value.clone()),
        _ => IndexKey::Scenario(scenario.clone()),
    };
    let records = state.shell.services_by(&key).await?;
    Ok(answer(
        records
            .into_iter()
            .filter(|r| r.scenario == scenario && matches(r, operand, &conds))
            .collect(),
    ))
}

/// GET /genesys/1/service/callback?_id=...
#[tracing::instrument(skip_all)]
pub async fn query_by_id(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    let id = params.get("_id").ok_or_else(|| AppError::missing("_id"))?;
    check_id("_id", id)?;
    let record = state.shell.get(id).await?;
    Ok(answer(vec![record]))
}

/// DELETE /genesys/1/service/callback/{scenario}/{id}
#[tracing::instrument(skip_all, fields(service_id = %id))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path((scenario, id)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    state.shell.scenario(&scenario)?;
    check_id("id", &id)?;
    let record = state.shell.get(&id).await?;
    if record.scenario != scenario {
        return Err(AppError::NotFound(format!(
            "service `{id}` does not exist in scenario `{scenario}`"
        )));
    }
    let record = state.shell.transition(&id, &Event::Cancel).await?;
    Ok(Json(json!({
        "_id": record.id,
        "_callback_state": record.state.gms_name(),
        "_callback_reason": record.reason.map(|r| r.gms_name()),
    })))
}
