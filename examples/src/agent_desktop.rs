//! An agent desktop: makes an agent ready, takes the services the router
//! reserves for it, chats with the customer and completes them.
//!
//! PUT /api/v1/agents/{id} → POST ready → poll GET /api/v1/agents/{id} for
//! services → for each: poll retrieve-agent-notifications (offers, customer
//! chat messages, device notifications) and GET /api/v1/services/{id}; once
//! the customer's chat has started and the agent joined it, send an
//! internal-notification and a greeting, reply to each customer message,
//! then POST complete → after `serve` services, POST not-ready.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::api::{text, Api, Log, TranscriptRow};

#[derive(Debug, Clone)]
pub struct Options {
    pub agent_id: String,
    /// The agent's display name; the id when empty.
    pub name: String,
    pub queues: Vec<String>,
    pub max_concurrent: u32,
    /// Stop after this many services have ended (completed, by us or otherwise).
    pub serve: usize,
    /// Complete a chat after replying to this many customer messages...
    pub complete_after: usize,
    /// ...or once the customer has been silent this long after the greeting.
    pub idle: Duration,
    /// How often to poll.
    pub poll: Duration,
    /// Give up (going not-ready) after this long; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Print each step to stdout (the lines are kept in the summary either way).
    pub print: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            agent_id: "alice".into(),
            name: String::new(),
            queues: vec!["support".into()],
            max_concurrent: 1,
            serve: 1,
            complete_after: 3,
            idle: Duration::from_secs(20),
            poll: Duration::from_millis(500),
            timeout: None,
            print: true,
        }
    }
}

/// A notification from retrieve-agent-notifications, its `message` decoded.
#[derive(Debug, Clone)]
pub struct AgentNote {
    pub tag: String,
    pub message: Value,
}

/// One service the agent handled.
#[derive(Debug, Clone)]
pub struct Served {
    pub service_id: String,
    pub scenario: String,
    pub customer_number: String,
    pub final_state: String,
    pub final_reason: Option<String>,
    /// Whether this desktop completed it (rather than the customer leaving).
    pub completed_by_agent: bool,
    /// Every notification retrieved for it, in order.
    pub notifications: Vec<AgentNote>,
    /// The chat messages the agent sent.
    pub sent: Vec<String>,
    /// The whole transcript at the end.
    pub transcript: Vec<TranscriptRow>,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub agent_id: String,
    /// Services that ended while this desktop held them.
    pub served: Vec<Served>,
    /// Services whose reservation went away before the end (e.g. requeued
    /// because the customer did not confirm).
    pub lost: Vec<String>,
    /// GET /api/v1/agents/{id} after the final not-ready.
    pub final_agent: Value,
    /// Every line printed.
    pub log: Vec<String>,
}

/// Runs the desktop against `base` until `opts.serve` services have ended.
pub async fn run(base: &str, opts: &Options) -> Result<Summary> {
    if opts.serve == 0 {
        bail!("serve must be at least 1");
    }
    let name = if opts.name.trim().is_empty() {
        opts.agent_id.clone()
    } else {
        opts.name.clone()
    };
    let mut desk = Desktop {
        api: Api::new(base, None)?,
        log: Log::new(format!("agent {}", opts.agent_id), opts.print),
        opts,
        name,
        ready: false,
        served: Vec::new(),
        lost: Vec::new(),
    };
    let outcome = match opts.timeout {
        Some(limit) => match tokio::time::timeout(limit, desk.flow()).await {
            Ok(result) => result,
            Err(_) => Err(anyhow!(
                "agent desktop timed out after {}s",
                limit.as_secs_f64()
            )),
        },
        None => desk.flow().await,
    };
    // Whatever happened, stop taking services.
    let not_ready = desk.set_ready(false).await;
    if let Err(e) = outcome {
        desk.log.line(format!("failed: {e:#}"));
        return Err(e);
    }
    not_ready?;
    let final_agent = desk
        .api
        .get(&format!("/api/v1/agents/{}", opts.agent_id))
        .await?
        .ok("agent")?;
    desk.log.line(format!(
        "done: served {} service(s); agent is {} with {} service(s)",
        desk.served.len(),
        text(&final_agent["state"]),
        final_agent["services"].as_array().map_or(0, Vec::len)
    ));
    Ok(Summary {
        agent_id: opts.agent_id.clone(),
        served: desk.served,
        lost: desk.lost,
        final_agent,
        log: desk.log.lines(),
    })
}

struct Desktop<'a> {
    api: Api,
    log: Log,
    opts: &'a Options,
    name: String,
    ready: bool,
    served: Vec<Served>,
    lost: Vec<String>,
}

impl Desktop<'_> {
    async fn flow(&mut self) -> Result<()> {
        let opts = self.opts;
        let profile = json!({
            "name": self.name,
            "queues": opts.queues,
            "skills": {},
            "max_concurrent": opts.max_concurrent,
        });
        let agent = self
            .api
            .put_json(&format!("/api/v1/agents/{}", opts.agent_id), &profile)
            .await?
            .ok("agent upsert")?;
        self.log.line(format!(
            "signed in as {} on queues {} (max {} at once)",
            text(&agent["name"]),
            agent["queues"],
            text(&agent["max_concurrent"])
        ));
        self.set_ready(true).await?;

        let mut sessions: Vec<Session> = Vec::new();
        let mut known: BTreeSet<String> = BTreeSet::new();
        while self.served.len() < opts.serve || !sessions.is_empty() {
            let agent = self
                .api
                .get(&format!("/api/v1/agents/{}", opts.agent_id))
                .await?
                .ok("agent")?;
            for service in agent["services"].as_array().cloned().unwrap_or_default() {
                let Some(id) = service["_id"].as_str() else {
                    continue;
                };
                if !known.insert(id.to_owned()) {
                    continue;
                }
                self.log.line(format!(
                    "reserved for service {id} ({}, customer {}, {})",
                    text(&service["_service_name"]),
                    text(&service["_customer_number"]),
                    text(&service["_callback_state"])
                ));
                sessions.push(Session::new(&service));
            }
            // Enough in hand: stop the router from reserving more for us.
            let wanted = self.served.len() + sessions.len() < opts.serve;
            if wanted != self.ready {
                self.set_ready(wanted).await?;
            }

            let mut i = 0;
            while i < sessions.len() {
                match sessions[i].tick(self).await? {
                    None => i += 1,
                    Some(End::Served(served)) => {
                        sessions.remove(i);
                        self.served.push(*served);
                    }
                    Some(End::Lost(id)) => {
                        sessions.remove(i);
                        known.remove(&id);
                        self.lost.push(id);
                    }
                }
            }
            if self.served.len() >= opts.serve && sessions.is_empty() {
                break;
            }
            tokio::time::sleep(opts.poll).await;
        }
        Ok(())
    }

    async fn set_ready(&mut self, ready: bool) -> Result<()> {
        let what = if ready { "ready" } else { "not-ready" };
        let agent = self
            .api
            .post_empty(&format!("/api/v1/agents/{}/{what}", self.opts.agent_id))
            .await?
            .ok(what)?;
        if ready != self.ready {
            self.log.line(format!(
                "now {} ({} service(s) in hand)",
                text(&agent["state"]),
                agent["services"].as_array().map_or(0, Vec::len)
            ));
        }
        self.ready = ready;
        Ok(())
    }
}

enum End {
    Served(Box<Served>),
    Lost(String),
}

/// One service in the agent's hands.
struct Session {
    served: Served,
    state: String,
    chat_seen: bool,
    greeted: bool,
    /// The last customer message replied to.
    replied_up_to: u32,
    replies: usize,
    last_activity: Instant,
    completing: bool,
}

impl Session {
    fn new(service: &Value) -> Session {
        Session {
            served: Served {
                service_id: text(&service["_id"]),
                scenario: text(&service["_service_name"]),
                customer_number: text(&service["_customer_number"]),
                final_state: String::new(),
                final_reason: None,
                completed_by_agent: false,
                notifications: Vec::new(),
                sent: Vec::new(),
                transcript: Vec::new(),
            },
            state: text(&service["_callback_state"]),
            chat_seen: false,
            greeted: false,
            replied_up_to: 0,
            replies: 0,
            last_activity: Instant::now(),
            completing: false,
        }
    }

    /// One poll of this service; `Some` when the desktop is done with it.
    async fn tick(&mut self, desk: &Desktop<'_>) -> Result<Option<End>> {
        let id = self.served.service_id.clone();
        let answer = desk.api.get(&format!("/api/v1/services/{id}")).await?;
        if answer.status == 404 {
            desk.log.line(format!("service {id} is gone"));
            return Ok(Some(End::Lost(id)));
        }
        let record = answer.ok("service")?;
        let state = text(&record["_callback_state"]);
        if state != self.state {
            desk.log.line(format!("service {id} is {state}"));
            self.state = state.clone();
        }
        if state == "COMPLETED" {
            // Anything the customer sent at the very end.
            self.notifications(desk, &id).await?;
            return Ok(Some(End::Served(Box::new(self.finish(desk, &record)))));
        }
        if record["agent"] != json!(desk.opts.agent_id) {
            desk.log.line(format!(
                "service {id} is {state} and no longer reserved for us"
            ));
            return Ok(Some(End::Lost(id)));
        }
        let chat = record.get("chat");
        if let Some(chat) = chat.filter(|_| !self.chat_seen) {
            self.chat_seen = true;
            self.last_activity = Instant::now();
            desk.log.line(format!(
                "customer {} started the chat (subject \"{}\")",
                text(&chat["nickname"]),
                text(&chat["subject"])
            ));
        }
        self.notifications(desk, &id).await?;
        let Some(chat) = chat else {
            return Ok(None);
        };
        if chat["agent_joined"] != json!(true) || chat.get("ended_at").is_some() {
            return Ok(None);
        }
        let nickname = text(&chat["nickname"]);
        let first_name = nickname.split(' ').next().unwrap_or("there").to_owned();
        if !self.greeted {
            self.greeted = true;
            self.last_activity = Instant::now();
            let display = format!("{} has joined your chat", desk.name);
            let sent = desk
                .api
                .post_form(
                    &format!("/genesys/1/service/{id}/internal-notification"),
                    &[
                        ("_display_message", &display),
                        ("_application_message", "AGENT_JOINED_CHAT"),
                    ],
                )
                .await?
                .ok_or_conflict("internal-notification")?;
            if let Some(sent) = sent {
                desk.log.line(format!(
                    "internal-notification to the device \"{display}\": {}",
                    text(&sent["message"])
                ));
            }
            let greeting = format!(
                "Hi {first_name}, this is {}. How can I help you today?",
                desk.name
            );
            if !self.say(desk, &id, &greeting).await? {
                return Ok(None);
            }
        }

        for row in TranscriptRow::all_from_record(&record) {
            if !row.is_from_client() || row.index <= self.replied_up_to {
                continue;
            }
            self.replied_up_to = row.index;
            self.replies += 1;
            self.last_activity = Instant::now();
            let reply = match self.replies {
                1 => format!("Sure, let me look into \"{}\".", row.text),
                2 => "I found it and corrected it; you will get a new invoice.".to_owned(),
                _ => format!("Noted: \"{}\".", row.text),
            };
            if !self.say(desk, &id, &reply).await? {
                return Ok(None);
            }
        }

        let done_talking = self.replies >= desk.opts.complete_after;
        let silent = self.last_activity.elapsed() >= desk.opts.idle;
        if !self.completing && (done_talking || silent) {
            self.completing = true;
            if silent && !done_talking {
                desk.log
                    .line(format!("customer silent for {:?}; closing", desk.opts.idle));
            }
            self.say(desk, &id, "Thank you for contacting us. Goodbye!")
                .await?;
            let done = desk
                .api
                .post_json(&format!("/api/v1/services/{id}/complete"), &json!({}))
                .await?
                .ok_or_conflict("complete")?;
            if let Some(record) = done {
                self.served.completed_by_agent = true;
                desk.log.line(format!(
                    "completed service {id}: {} ({})",
                    text(&record["_callback_state"]),
                    text(&record["_callback_reason"])
                ));
            }
        }
        Ok(None)
    }

    async fn notifications(&mut self, desk: &Desktop<'_>, id: &str) -> Result<()> {
        let answer = desk
            .api
            .post_form(
                &format!("/genesys/1/service/{id}/retrieve-agent-notifications"),
                &[],
            )
            .await?;
        if answer.status == 404 {
            return Ok(());
        }
        let notes = answer.ok("retrieve-agent-notifications")?;
        for note in notes.as_array().cloned().unwrap_or_default() {
            let tag = text(&note["tag"]);
            // GMS sends the message as JSON text.
            let message = note["message"]
                .as_str()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_else(|| note["message"].clone());
            let line = if tag.starts_with("agent.offer.") {
                format!(
                    "offer for {}: {} {} from customer {}, user data {}",
                    text(&message["_id"]),
                    text(&message["_service_name"]),
                    text(&message["_media_type"]),
                    text(&message["_customer_number"]),
                    message["user_data"]
                )
            } else if tag.starts_with("agent.chat.") {
                format!(
                    "customer {} says: {}",
                    text(&message["nickname"]),
                    text(&message["text"])
                )
            } else if tag.starts_with("agent.message.") {
                format!(
                    "device notification: \"{}\" (app message {})",
                    text(&message["_display_message"]),
                    text(&message["_internal_message"])
                )
            } else {
                format!("notification {tag}: {message}")
            };
            desk.log.line(line);
            self.served.notifications.push(AgentNote { tag, message });
        }
        Ok(())
    }

    /// Sends one agent chat message; false when the service refused it
    /// (the chat closed or the service completed meanwhile).
    async fn say(&mut self, desk: &Desktop<'_>, id: &str, message: &str) -> Result<bool> {
        let answer = desk
            .api
            .post_json(
                &format!("/api/v1/services/{id}/chat"),
                &json!({"text": message}),
            )
            .await?;
        if answer.is_conflict() {
            desk.log.line(format!(
                "could not send \"{message}\": {}",
                answer.message()
            ));
            return Ok(false);
        }
        answer.ok("agent chat")?;
        desk.log.line(format!("sent: {message}"));
        self.served.sent.push(message.to_owned());
        Ok(true)
    }

    fn finish(&self, desk: &Desktop<'_>, record: &Value) -> Served {
        let mut served = self.served.clone();
        served.final_state = text(&record["_callback_state"]);
        served.final_reason = record["_callback_reason"].as_str().map(str::to_owned);
        served.transcript = TranscriptRow::all_from_record(record);
        desk.log.line(format!(
            "service {} ended {} ({}) after {} transcript rows",
            served.service_id,
            served.final_state,
            served.final_reason.as_deref().unwrap_or("-"),
            served.transcript.len()
        ));
        served
    }
}
