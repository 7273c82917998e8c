//! The GMS create and reschedule bodies, parsed once against their scenario.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use engine::machine::NewService;
use engine::record::{Booking, Party};
use engine::scenario::Scenario;
use engine::schedule::{Schedule, Tz};
use engine::video::{RoutingData, VideoLeg};

use super::fields::{at_most, check_id, fits, time};
use super::routing::RoutingRequest;
use crate::error::AppError;
use crate::form::GmsForm;

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

/// Reschedule fields that are not user data.
const RESCHEDULE_FIELDS: [&str; 3] = ["_new_desired_time", "_timezone", "_customer_number"];

/// POST /genesys/1/service/callback/{scenario}, checked against the scenario.
#[derive(Debug)]
pub struct CreateCallback {
    pub customer_number: String,
    /// `None`: now (absent, blank or `now`).
    pub desired_time: Option<DateTime<Utc>>,
    pub device_os: Option<String>,
    pub device_notification_id: Option<String>,
    /// The customer's zone, when a desired time books a slot of the schedule.
    pub zone: Option<Tz>,
    pub preferred_agent: Option<String>,
    /// In a video scenario: where the leg is routed and the chat it continues.
    pub video: Option<VideoRequest>,
    pub user_data: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct VideoRequest {
    pub routing: RoutingData,
    pub conversation_id: Option<String>,
}

impl CreateCallback {
    /// `form` as a create of `scenario`; `headers` may carry the device (`gms_user`).
    pub fn parse(
        form: &GmsForm,
        headers: &HeaderMap,
        scenario: &Scenario,
    ) -> Result<CreateCallback, AppError> {
        for field in &scenario.mandatory_fields {
            form.require(field)?;
        }
        let customer_number = form.require("_customer_number")?.trim().to_owned();
        at_most("_customer_number", &customer_number, 64)?;
        scenario
            .phone_rules()
            .check(&customer_number)
            .map_err(|why| AppError::field("_customer_number", why.to_string()))?;
        let desired_time = match form.get("_desired_time").map(str::trim) {
            None | Some("") => None,
            Some(text) if text.eq_ignore_ascii_case("now") => None,
            Some(text) => Some(time(
                "_desired_time",
                text,
                "UTC time such as 2026-11-21T15:30:00.000Z",
            )?),
        };
        let (device_os, device_notification_id) = device(form, headers, scenario)?;
        let zone = match (&scenario.schedule, desired_time) {
            (Some(schedule), Some(_)) => Some(customer_zone(form, schedule)?),
            _ => None,
        };
        let preferred_agent = match form.get("_preferred_agent").map(str::trim) {
            None | Some("") => None,
            Some(agent) => {
                check_id("_preferred_agent", agent)?;
                Some(agent.to_owned())
            }
        };
        let video = match scenario.video_config() {
            None => None,
            Some(_) => {
                let mut routing =
                    RoutingRequest::from_text("routingData", form.get("routingData"))?
                        .over(&scenario.target);
                if preferred_agent.is_some() {
                    routing.preferred_agent = preferred_agent.clone();
                }
                let conversation_id = conversation_id(form)?;
                Some(VideoRequest {
                    routing,
                    conversation_id,
                })
            }
        };
        let user_data = form
            .fields
            .iter()
            .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(CreateCallback {
            customer_number,
            desired_time,
            device_os,
            device_notification_id,
            zone,
            preferred_agent,
            video,
            user_data,
        })
    }

    /// The service to create as `id` of `scenario` at `now`, with its
    /// booking when the desired time booked a slot.
    pub fn into_service(
        self,
        id: String,
        scenario: &Scenario,
        now: DateTime<Utc>,
        booking: Option<Booking>,
    ) -> NewService {
        let video = self.video.map(|v| VideoLeg {
            requested_at: now,
            requested_by: Party::Client,
            scenario: scenario.name.clone(),
            routing: v.routing,
            conversation_id: v.conversation_id,
            agent: None,
            routed: None,
            connected_at: None,
            rooms: Vec::new(),
            survey: None,
        });
        NewService {
            id,
            customer_number: self.customer_number,
            desired_time: match &booking {
                // The appointment is the slot: its start is the desired time.
                Some(booking) => Some(booking.slot),
                // A desired time in the past means "as soon as possible".
                None => self.desired_time.map(|t| t.max(now)),
            },
            device_notification_id: self.device_notification_id,
            device_os: self.device_os,
            user_data: self.user_data,
            booking,
            preferred_agent: self.preferred_agent,
            video,
        }
    }
}

/// `_device_os` and `_device_notification_id` (else the `gms_user` header).
fn device(
    form: &GmsForm,
    headers: &HeaderMap,
    scenario: &Scenario,
) -> Result<(Option<String>, Option<String>), AppError> {
    let httpcb = push::httpcb::DEVICE_OS;
    let device_os = form.get("_device_os").map(str::to_owned);
    if device_os.as_ref().is_some_and(|os| !fits(os, 32)) {
        return Err(AppError::field(
            "_device_os",
            "must be at most 32 characters",
        ));
    }
    if device_os.as_deref() == Some(httpcb) && scenario.httpcb_url.is_none() {
        return Err(AppError::field(
            "_device_os",
            format!(
                "is httpcb, but scenario `{}` has no _httpcb_url to post notifications to",
                scenario.name
            ),
        ));
    }
    let notification_id = form
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
    if let Some(d) = &notification_id {
        at_most("_device_notification_id", d, 256)?;
    }
    if device_os.as_deref() == Some(httpcb) && notification_id.is_none() {
        return Err(AppError::field(
            "_device_notification_id",
            "is required with _device_os=httpcb: it tells the receiving server which device a notification is for",
        ));
    }
    Ok((device_os, notification_id))
}

/// The chat a video continues (`conversationId`), if one is named.
pub fn conversation_id(form: &GmsForm) -> Result<Option<String>, AppError> {
    match form.get("conversationId").map(str::trim) {
        None | Some("") => Ok(None),
        Some(c) => {
            at_most("conversationId", c, 128)?;
            Ok(Some(c.to_owned()))
        }
    }
}

/// The customer's zone for showing times: `_timezone`, else the schedule's.
pub fn customer_zone(form: &GmsForm, schedule: &Schedule) -> Result<Tz, AppError> {
    match form.get("_timezone").map(str::trim) {
        None | Some("") => Ok(schedule.timezone),
        Some(text) => super::fields::zone("_timezone", text),
    }
}

/// PUT /genesys/1/service/callback/{scenario}/{id} with `_new_desired_time`.
#[derive(Debug)]
pub struct Reschedule {
    /// `None`: now.
    pub desired_time: Option<DateTime<Utc>>,
    /// A new `_customer_number` (checked as a create's is), and user data:
    /// every other field, as a create keeps them.
    pub changes: engine::machine::Changes,
    /// The zone `_timezone` names (the schedule's when blank); `None` when
    /// absent (the booking keeps its zone) or the scenario has no schedule.
    pub zone: Option<Tz>,
}

impl Reschedule {
    pub fn parse(form: &GmsForm, scenario: &Scenario) -> Result<Reschedule, AppError> {
        let text = form.require("_new_desired_time")?.trim();
        let desired_time = if text.eq_ignore_ascii_case("now") {
            None
        } else {
            Some(time(
                "_new_desired_time",
                text,
                "time such as 2026-11-23T14:00:00.000Z",
            )?)
        };
        let zone = match (&scenario.schedule, form.get("_timezone")) {
            (Some(schedule), Some(_)) => Some(customer_zone(form, schedule)?),
            _ => None,
        };
        let customer_number = match form.get("_customer_number").map(str::trim) {
            None => None,
            Some("") => return Err(AppError::field("_customer_number", "is empty")),
            Some(number) => {
                at_most("_customer_number", number, 64)?;
                scenario
                    .phone_rules()
                    .check(number)
                    .map_err(|why| AppError::field("_customer_number", why.to_string()))?;
                Some(number.to_owned())
            }
        };
        let user_data = form
            .fields
            .iter()
            .filter(|(k, _)| !RESCHEDULE_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Reschedule {
            desired_time,
            zone,
            changes: engine::machine::Changes {
                customer_number,
                user_data,
            },
        })
    }
}

/// The values of the scenario's `_throttle_request_parameters` a create
/// carries: a header of the parameter's name wins over the body's field
/// when `_enable_throttle_header_parameters` is on (GMS's rule). A
/// parameter the request does not carry is not counted.
pub fn throttled_values<'s>(
    form: &GmsForm,
    headers: &HeaderMap,
    scenario: &'s Scenario,
) -> Vec<(&'s str, String)> {
    /// Longer values are cut: each distinct value is a counter in the store.
    const MAX_VALUE: usize = 128;
    scenario
        .throttle_parameters()
        .filter_map(|name| {
            let header = scenario
                .throttle_header_parameters
                .then(|| headers.get(name).and_then(|v| v.to_str().ok()))
                .flatten();
            let value = header.or_else(|| form.get(name))?.trim();
            (!value.is_empty()).then(|| (name, value.chars().take(MAX_VALUE).collect()))
        })
        .collect()
}
