//! The customer's mobile app, as in the seed's "Chat Delayed" flow.
//!
//! create (multipart, `gms_user` header) → poll check-queue-position and
//! retrieve-notifications → on `service.agentavailable.<id>` POST connect and
//! read the StartChat dialog (chat-immediate: the create answer already is
//! the dialog, no connect) → POST ixn/chat → chat through ixn/chat/send and
//! ixn/chat/refresh → stop when the chat is DISCONNECTED or the service is
//! COMPLETED.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use crate::api::{text, Answer, Api, Log, TranscriptRow};

/// The seed's device id, also sent as the `gms_user` header.
pub const SEED_DEVICE_ID: &str = "b16416334828b1d26ef14f329628b55b5a8c631d8928a371a5584722dd7fb673";

#[derive(Debug, Clone)]
pub struct Options {
    /// Scenario name: the `{scenario}` of POST /genesys/1/service/callback/{scenario}.
    pub scenario: String,
    /// `_customer_number`.
    pub customer_number: String,
    /// `usr_customer_name`; its first word is the chat's `firstName`, the rest `lastName`.
    pub customer_name: String,
    /// `usr_reason`, also the chat's `subject`.
    pub reason: String,
    /// `_device_notification_id` and the `gms_user` header.
    pub device_id: String,
    /// The chat's `email`.
    pub email: String,
    /// Sent once the chat has started.
    pub messages: Vec<String>,
    /// Answers to the agent's messages, one per agent message, in order;
    /// agent messages after the last answer are only read.
    pub answers: Vec<String>,
    /// How often to poll.
    pub poll: Duration,
    /// The whole flow must end within this; on timeout the service is cancelled.
    pub timeout: Duration,
    /// Print each step to stdout (the lines are kept in the summary either way).
    pub print: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            scenario: "chat-delay".into(),
            customer_number: "4082652649".into(),
            customer_name: "Bob Markel".into(),
            reason: "billing question".into(),
            device_id: SEED_DEVICE_ID.into(),
            email: "bob.markel@example.com".into(),
            messages: vec![
                "Hello, I have a billing question.".into(),
                "My last invoice is higher than usual.".into(),
            ],
            answers: vec![
                "Thanks! It is invoice 2024-117.".into(),
                "Great, that is all I needed. Bye!".into(),
            ],
            poll: Duration::from_millis(500),
            timeout: Duration::from_secs(120),
            print: true,
        }
    }
}

/// One answer of check-queue-position.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePosition {
    pub position: u64,
    /// `_eta` in seconds; `None` when the server says "n/a".
    pub eta: Option<u64>,
    pub total_waiting: u64,
}

/// What the mobile app saw, for a caller to check.
#[derive(Debug, Clone)]
pub struct Summary {
    pub service_id: String,
    pub scenario: String,
    /// The create answer.
    pub created: Value,
    /// The StartChat dialog the chat was started from.
    pub dialog: Option<Value>,
    /// Whether the dialog came from POST connect (chat-delay) rather than
    /// from the create answer (chat-immediate).
    pub used_connect: bool,
    /// Each distinct check-queue-position answer, in order.
    pub queue_positions: Vec<QueuePosition>,
    /// Every payload retrieve-notifications returned, in order.
    pub notifications: Vec<Value>,
    /// The ixn/chat answer.
    pub chat_started: Option<Value>,
    /// The chat messages this app sent.
    pub sent: Vec<String>,
    /// The whole transcript, read after the end.
    pub transcript: Vec<TranscriptRow>,
    /// The last `chatIxnState` seen.
    pub chat_state: Option<String>,
    /// `_callback_state` / `_callback_reason` at the end.
    pub final_state: String,
    pub final_reason: Option<String>,
    /// Every line printed.
    pub log: Vec<String>,
}

impl Summary {
    pub fn ended_connected(&self) -> bool {
        self.final_state == "COMPLETED" && self.final_reason.as_deref() == Some("AGENT_CONNECTED")
    }
}

/// Runs the mobile app against `base` (e.g. `http://127.0.0.1:8080`) until
/// the service completes. Errors on a failed request or after `opts.timeout`
/// (having cancelled the service).
pub async fn run(base: &str, opts: &Options) -> Result<Summary> {
    let mut app = Mobile {
        api: Api::new(base, Some(&opts.device_id))?,
        log: Log::new("mobile", opts.print),
        opts,
        id: None,
        summary: None,
    };
    match tokio::time::timeout(opts.timeout, app.flow()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            app.log.line(format!("failed: {e:#}"));
            return Err(e);
        }
        Err(_) => {
            let secs = opts.timeout.as_secs_f64();
            app.log.line(format!("timed out after {secs}s"));
            if let Some(id) = app.id.clone() {
                app.cancel(&id).await;
            }
            bail!("mobile app timed out after {secs}s");
        }
    }
    let mut summary = app
        .summary
        .take()
        .ok_or_else(|| anyhow!("the flow ended without a summary"))?;
    summary.log = app.log.lines();
    Ok(summary)
}

struct Mobile<'a> {
    api: Api,
    log: Log,
    opts: &'a Options,
    /// Known as soon as create answered, so a timeout can cancel it.
    id: Option<String>,
    summary: Option<Summary>,
}

/// Where the chat is, from the app's side.
struct ChatProgress {
    /// The next `transcriptPosition` to ask for.
    next: u32,
    /// How many agent messages were answered.
    answered: usize,
    state: Option<String>,
}

impl Mobile<'_> {
    async fn flow(&mut self) -> Result<()> {
        let opts = self.opts;
        let created = self
            .api
            .post_form(
                &format!("/genesys/1/service/callback/{}", opts.scenario),
                &[
                    ("_customer_number", &opts.customer_number),
                    ("usr_customer_name", &opts.customer_name),
                    ("usr_reason", &opts.reason),
                    ("_device_notification_id", &opts.device_id),
                    ("_device_os", "comet"),
                ],
            )
            .await?
            .ok("create")?;
        let id = created["_id"]
            .as_str()
            .ok_or_else(|| anyhow!("create answered no _id: {created}"))?
            .to_owned();
        self.id = Some(id.clone());
        self.log.line(format!(
            "created service {id} ({}) : {}",
            opts.scenario,
            text(&created["_text"])
        ));
        let mut s = Summary {
            service_id: id.clone(),
            scenario: opts.scenario.clone(),
            created: created.clone(),
            dialog: None,
            used_connect: false,
            queue_positions: Vec::new(),
            notifications: Vec::new(),
            chat_started: None,
            sent: Vec::new(),
            transcript: Vec::new(),
            chat_state: None,
            final_state: String::new(),
            final_reason: None,
            log: Vec::new(),
        };
        // Chat-immediate: the create answer is the StartChat dialog; no connect.
        if created.get("_start_chat_url").is_some() {
            self.log.line(format!(
                "the create answer holds the {} dialog: {}",
                text(&created["_action"]),
                text(&created["_start_chat_url"])
            ));
            s.dialog = Some(created);
        }

        let mut state = String::new();
        let mut chat: Option<ChatProgress> = None;
        loop {
            let (now, reason) = self.service_state(&id).await?;
            if now != state {
                self.log.line(format!("service is {now}"));
                state = now;
            }
            if state == "COMPLETED" {
                s.final_reason = reason;
                break;
            }
            if state == "QUEUED" {
                self.queue_position(&id, &mut s).await?;
            }
            self.notifications(&id, &mut s).await?;
            if chat.is_none() && s.dialog.is_some() {
                chat = self.start_chat(&id, &mut s).await?;
            }
            if let Some(progress) = chat.as_mut() {
                self.chat_round(&id, progress, &mut s).await?;
                if progress.state.as_deref() == Some("DISCONNECTED") {
                    break;
                }
            }
            tokio::time::sleep(opts.poll).await;
        }

        // The end: last notifications and transcript rows, then the final record.
        self.notifications(&id, &mut s).await?;
        if let Some(progress) = chat.as_mut() {
            self.chat_round(&id, progress, &mut s).await?;
            s.chat_state = progress.state.clone();
            s.transcript = self.transcript_from(&id, 1).await?.0;
        }
        let (state, reason) = self.service_state(&id).await?;
        self.log.line(format!(
            "done: service {id} is {state} ({}), {} transcript rows",
            reason.as_deref().unwrap_or("-"),
            s.transcript.len()
        ));
        s.final_state = state;
        s.final_reason = reason;
        self.summary = Some(s);
        Ok(())
    }

    /// `_callback_state` and `_callback_reason`, by GET /genesys/1/service/callback?_id=.
    async fn service_state(&self, id: &str) -> Result<(String, Option<String>)> {
        let found = self
            .api
            .get(&format!("/genesys/1/service/callback?_id={id}"))
            .await?
            .ok("query by _id")?;
        let record = &found[0];
        let state = record["_callback_state"]
            .as_str()
            .ok_or_else(|| anyhow!("query by _id answered no _callback_state: {found}"))?;
        Ok((
            state.to_owned(),
            record["_callback_reason"].as_str().map(str::to_owned),
        ))
    }

    async fn queue_position(&self, id: &str, s: &mut Summary) -> Result<()> {
        let answer = self
            .api
            .post_form(
                &format!("/genesys/1/service/{id}/check-queue-position"),
                &[],
            )
            .await?;
        // 409: it left the queue (completed) since the state was read.
        let Some(body) = answer.ok_or_conflict("check-queue-position")? else {
            return Ok(());
        };
        let position = QueuePosition {
            position: body["_position"].as_u64().unwrap_or_default(),
            eta: body["_eta"].as_u64(),
            total_waiting: body["_total_waiting"].as_u64().unwrap_or_default(),
        };
        if s.queue_positions.last() != Some(&position) {
            self.log.line(format!(
                "queue position {} of {} waiting, EWT {} ({})",
                position.position,
                position.total_waiting,
                position
                    .eta
                    .map(|e| format!("{e}s"))
                    .unwrap_or_else(|| "n/a".into()),
                text(&body["_agent_ready_threshold_passed_reason"])
            ));
            s.queue_positions.push(position);
        }
        Ok(())
    }

    async fn notifications(&self, id: &str, s: &mut Summary) -> Result<()> {
        let pushed = self
            .api
            .post_form(
                &format!("/genesys/1/service/{id}/retrieve-notifications"),
                &[],
            )
            .await?
            .ok("retrieve-notifications")?;
        for n in pushed.as_array().cloned().unwrap_or_default() {
            let tag = n["tag"].as_str().unwrap_or_default();
            if tag == format!("service.agentavailable.{id}") {
                self.log
                    .line(format!("push {tag}: {}", text(&n["message"]["_action"])));
                if s.dialog.is_none() {
                    self.connect(id, s).await?;
                }
            } else if n.get("_display_message").is_some() {
                self.log.line(format!(
                    "push from the agent desktop: \"{}\" (app message {})",
                    text(&n["_display_message"]),
                    text(&n["_internal_message"])
                ));
            } else if n["_action"] == "completed" {
                self.log.line(format!(
                    "push: service {} ({})",
                    text(&n["_callback_state"]),
                    text(&n["_callback_reason"])
                ));
            } else if n.get("text").is_some() && n.get("from").is_some() {
                // A chat push; the transcript rows print it.
            } else {
                self.log.line(format!("push: {n}"));
            }
            s.notifications.push(n);
        }
        Ok(())
    }

    /// The customer confirms: POST connect answers the StartChat dialog.
    async fn connect(&self, id: &str, s: &mut Summary) -> Result<()> {
        let answer = self
            .api
            .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
            .await?;
        if answer.is_conflict() {
            // E.g. the confirmation timed out and the service went back to the queue.
            self.log
                .line(format!("connect refused: {}", answer.message()));
            return Ok(());
        }
        let dialog = answer.ok("connect")?;
        self.log.line(format!(
            "connected: dialog {} \"{}\" {} (chat parameters {})",
            text(&dialog["_action"]),
            text(&dialog["_label"]),
            text(&dialog["_start_chat_url"]),
            dialog["_chat_parameters"]
        ));
        s.dialog = Some(dialog);
        s.used_connect = true;
        Ok(())
    }

    /// POST the dialog's `_start_chat_url`, tell the agent desktop, say hello.
    async fn start_chat(&self, id: &str, s: &mut Summary) -> Result<Option<ChatProgress>> {
        let opts = self.opts;
        let dialog = s.dialog.as_ref().expect("a dialog");
        let url = dialog["_start_chat_url"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("/genesys/1/service/{id}/ixn/chat"));
        let (first, last) = opts
            .customer_name
            .trim()
            .split_once(' ')
            .unwrap_or((opts.customer_name.trim(), ""));
        let answer = self
            .api
            .post_form(
                &url,
                &[
                    ("notify_by", "comet"),
                    ("firstName", first),
                    ("lastName", last.trim()),
                    ("_verbose", "false"),
                    ("subject", &opts.reason),
                    ("email", &opts.email),
                ],
            )
            .await?;
        let Some(started) = answer.ok_or_conflict("ixn/chat")? else {
            return Ok(None);
        };
        self.log.line(format!(
            "chat started as {first} {last} (comet channel {})",
            text(&started["comet_channel"])
        ));
        s.chat_started = Some(started);
        let notified = self
            .api
            .post_form(
                &format!("/genesys/1/service/{id}/agent-notification"),
                &[
                    (
                        "_display_message",
                        &format!("{} opened the chat from the app", opts.customer_name),
                    ),
                    ("_application_message", "MOBILE_APP_CHAT_OPENED"),
                ],
            )
            .await?;
        if let Some(body) = notified.ok_or_conflict("agent-notification")? {
            self.log.line(format!(
                "sent a notification to the agent desktop: {}",
                text(&body["message"])
            ));
        }
        let mut progress = ChatProgress {
            next: 1,
            answered: 0,
            state: None,
        };
        for message in &opts.messages {
            if !self.say(id, message, &mut progress, s).await? {
                break;
            }
        }
        Ok(Some(progress))
    }

    /// Sends one chat message; false when the chat is no longer open.
    async fn say(
        &self,
        id: &str,
        message: &str,
        progress: &mut ChatProgress,
        s: &mut Summary,
    ) -> Result<bool> {
        let answer: Answer = self
            .api
            .post_form(
                &format!("/genesys/1/service/{id}/ixn/chat/send"),
                &[("message", message)],
            )
            .await?;
        if answer.is_conflict() {
            self.log.line(format!(
                "could not send \"{message}\": {}",
                answer.message()
            ));
            return Ok(false);
        }
        let body = answer.ok("ixn/chat/send")?;
        self.log.line(format!("sent: {message}"));
        s.sent.push(message.to_owned());
        self.note_chat_state(&body, progress);
        Ok(true)
    }

    /// One refresh: print new rows and answer the agent's new messages.
    async fn chat_round(
        &self,
        id: &str,
        progress: &mut ChatProgress,
        s: &mut Summary,
    ) -> Result<()> {
        let (rows, body) = self.transcript_from(id, progress.next).await?;
        self.note_chat_state(&body, progress);
        let mut to_answer = 0;
        for row in rows {
            progress.next = progress.next.max(row.index + 1);
            // Our own messages were printed when sent.
            if !row.is_from_client() {
                self.log.line(format!("chat {row}"));
            }
            if row.is_from_agent() {
                to_answer += 1;
            }
        }
        for _ in 0..to_answer {
            if progress.state.as_deref() == Some("DISCONNECTED") {
                break;
            }
            let Some(answer) = self.opts.answers.get(progress.answered) else {
                break;
            };
            progress.answered += 1;
            if !self.say(id, answer, progress, s).await? {
                break;
            }
        }
        Ok(())
    }

    fn note_chat_state(&self, body: &Value, progress: &mut ChatProgress) {
        if let Some(state) = body["chatIxnState"].as_str() {
            if progress.state.as_deref() != Some(state) {
                self.log.line(format!("chat is {state}"));
                progress.state = Some(state.to_owned());
            }
        }
    }

    /// Transcript rows from `from` on, and the refresh answer.
    async fn transcript_from(&self, id: &str, from: u32) -> Result<(Vec<TranscriptRow>, Value)> {
        let body = self
            .api
            .post_form(
                &format!("/genesys/1/service/{id}/ixn/chat/refresh"),
                &[("transcriptPosition", &from.to_string())],
            )
            .await?
            .ok("ixn/chat/refresh")?;
        let rows = body["transcriptToShow"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .enumerate()
                    .map(|(i, row)| TranscriptRow::from_refresh(from + i as u32, row))
                    .collect()
            })
            .unwrap_or_default();
        Ok((rows, body))
    }

    async fn cancel(&self, id: &str) {
        let path = format!("/genesys/1/service/callback/{}/{id}", self.opts.scenario);
        match self.api.delete(&path).await {
            Ok(answer) if answer.is_ok() => self.log.line(format!(
                "cancelled service {id}: {} ({})",
                text(&answer.body["_callback_state"]),
                text(&answer.body["_callback_reason"])
            )),
            Ok(answer) => self
                .log
                .line(format!("could not cancel {id}: {}", answer.message())),
            Err(e) => self.log.line(format!("could not cancel {id}: {e:#}")),
        }
    }
}
