//! Notifications: the device and agent outboxes, the notices the machine
//! sends on its own (agent available, offer, internal messages, state), and
//! the helpers that shape their payloads (`chat_body`, `party_name`).

use serde_json::json;

use super::{Context, Effect, Service};
use crate::record::*;

impl Service {
    pub(super) fn notification_id(&mut self) -> String {
        // Unique within the service and stable in the record; the service id is unguessable.
        let seq = self.rec.next_seq();
        format!("{}-{:04}", self.rec.id, seq)
    }

    pub(super) fn notify_device(
        &mut self,
        context: &mut Context,
        tag: String,
        payload: serde_json::Value,
    ) {
        self.notify_device_with(context, tag, |_| payload);
    }

    /// Adds a device notification whose payload may carry its own id.
    pub(super) fn notify_device_with(
        &mut self,
        context: &mut Context,
        tag: String,
        payload: impl FnOnce(&str) -> serde_json::Value,
    ) {
        let id = self.notification_id();
        self.rec.push_outbox(DeviceNotification {
            id: id.clone(),
            tag: tag.clone(),
            payload: payload(&id),
            at: self.now,
        });
        context.effects.push(Effect::NotifyDevice { id, tag });
    }

    pub(super) fn notify_agent(
        &mut self,
        context: &mut Context,
        tag: String,
        message: serde_json::Value,
    ) {
        let id = self.notification_id();
        self.rec.push_agent_outbox(AgentNotification {
            id: id.clone(),
            message: message.to_string(),
            tag: tag.clone(),
            at: self.now,
        });
        let agent = self.rec.handling_agent().map(str::to_owned);
        context.effects.push(Effect::NotifyAgent { agent, id, tag });
    }

    /// The seed's agent-available push.
    pub(super) fn agent_available(&mut self, context: &mut Context) {
        let id = self.rec.id.clone();
        let tag = format!("service.agentavailable.{id}");
        self.notify_device_with(context, tag.clone(), |notification_id| {
            json!({
                "id": notification_id,
                "message": {
                    "_action": "get-dialog-user-confirmation-provide_code-false",
                    "_id": id,
                },
                "tag": tag,
            })
        });
    }

    pub(super) fn internal_notification(
        &mut self,
        context: &mut Context,
        display: &str,
        application: &str,
    ) {
        let id = self.rec.id.clone();
        self.notify_device(
            context,
            format!("service.internal.{id}"),
            json!({"_internal_message": application, "_id": id, "_display_message": display}),
        );
    }

    pub(super) fn agent_notification(
        &mut self,
        context: &mut Context,
        display: &str,
        application: &str,
    ) {
        let id = self.rec.id.clone();
        self.notify_agent(
            context,
            format!("agent.message.{id}"),
            json!({"_id": id, "_internal_message": application, "_display_message": display}),
        );
    }

    pub(super) fn offer_to_agent(&mut self, context: &mut Context) {
        let id = self.rec.id.clone();
        let mut message = json!({
            "_id": id,
            "_action": "offer",
            "_service_name": self.rec.scenario,
            "_customer_number": self.rec.customer_number,
            "_media_type": self.scenario.media_type,
            "user_data": self.rec.user_data,
        });
        if let Some(leg) = &self.rec.video {
            // The agent sees one interaction: the chat, and now its video.
            message["_media_type"] = json!("video");
            message["_video"] = json!({
                "requested_by": party_name(leg.requested_by),
                "routing": leg.routing,
                "conversation_id": leg.conversation_id,
                "chat": self.rec.chat.is_some(),
            });
        }
        self.notify_agent(context, format!("agent.offer.{id}"), message);
    }
}

impl Service {
    /// The preview the reserved agent accepts or rejects: who and what,
    /// with the user data `_agent_preview_data` names (all of it if none).
    pub(super) fn offer_preview(&mut self, context: &mut Context) {
        let id = self.rec.id.clone();
        let keys = &self.scenario.agent_preview_data;
        let data: std::collections::BTreeMap<&String, &String> = self
            .rec
            .user_data
            .iter()
            .filter(|(k, _)| keys.is_empty() || keys.contains(k))
            .collect();
        let message = json!({
            "_id": id,
            "_action": "preview",
            "_service_name": self.rec.scenario,
            "_customer_number": self.rec.customer_number,
            "_media_type": self.scenario.media_type,
            "_agent_preview_data": data,
            "_agent_preview_timeout": self.scenario.agent_preview_timeout.as_secs(),
        });
        self.notify_agent(context, format!("agent.preview.{id}"), message);
    }
}

pub(super) fn party_name(party: Party) -> &'static str {
    match party {
        Party::Client => "customer",
        Party::Agent => "agent",
        Party::External => "system",
    }
}

/// A chat notification: what was said or what happened, with its place in the transcript.
pub(super) fn chat_body(
    id: &str,
    index: u32,
    kind: ChatEntryKind,
    from: Party,
    nickname: &str,
    text: &str,
) -> serde_json::Value {
    json!({"_id": id, "index": index, "type": kind, "from": from, "nickname": nickname, "text": text})
}

/// The push that tells the device its service changed state: pushed after
/// every state change but the last (completion has its own notification in
/// the outbox). Not kept: the state can always be read again.
/// The state push of [`super::Effect::StateNotice`]: the record's state, as
/// the device sees it (none once completed).
pub fn state_notice(rec: &ServiceRecord) -> Option<(String, serde_json::Value)> {
    if rec.state == ServiceState::Completed {
        return None;
    }
    let id = &rec.id;
    let tag = format!("service.state.{id}");
    let payload = json!({
        "id": format!("{id}-v{}", rec.version),
        "message": {
            "_id": id,
            "_action": "state",
            "_callback_state": rec.state.gms_name(),
            // An agent previewing the service may still reject it: the
            // customer is not told of it before it accepts.
            "_agent_id": rec.agent.as_ref().filter(|_| !rec.preview_pending),
        },
        "tag": tag,
    });
    Some((tag, payload))
}
