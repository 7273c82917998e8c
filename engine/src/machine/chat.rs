//! The chat: its transcript, the agent joining and leaving it, typing, and
//! what each side is told.

use serde_json::json;
use statig::blocking::*;

use super::notify::chat_body;
use super::{Context, Effect, Event, Service, State};
use crate::record::*;

impl Service {
    /// Appends a chat event to the transcript and tells the other side.
    pub(super) fn chat_event(&mut self, context: &mut Context, event: &Event) -> Outcome<State> {
        let now = self.now;
        let agent_name = self.rec.handling_agent().unwrap_or_default().to_owned();
        match event {
            Event::ChatStarted {
                nickname,
                subject,
                parameters,
            } => {
                if self.rec.chat.is_some() {
                    context.refuse(
                        self.in_state("the chat has already been started for this service"),
                    );
                    return Handled;
                }
                let mut chat = Chat {
                    started_at: now,
                    ended_at: None,
                    nickname: nickname.clone(),
                    subject: subject.clone(),
                    parameters: parameters.clone(),
                    transcript: Vec::new(),
                    agent_joined: false,
                };
                chat.push(
                    ChatEntryKind::Joined,
                    Party::Client,
                    nickname,
                    "has joined the session",
                    now,
                );
                self.rec.chat = Some(Box::new(chat));
                if self.agent_is_connected() {
                    let id = self.rec.id.clone();
                    let body = chat_body(
                        &id,
                        1,
                        ChatEntryKind::Joined,
                        Party::Client,
                        nickname,
                        "has joined the session",
                    );
                    self.notify_agent(context, format!("agent.chat.{id}"), body);
                }
                self.agent_joins_chat(context);
            }
            Event::ChatMessage { from, text } => {
                let Some(chat) = self.rec.chat.as_mut().filter(|c| c.is_open()) else {
                    context.refuse(
                        self.in_state("no chat is open for this service; start it with ixn/chat"),
                    );
                    return Handled;
                };
                if *from == Party::Agent && !chat.agent_joined {
                    context.refuse(self.in_state("the agent has not joined this chat"));
                    return Handled;
                }
                let nickname = match from {
                    Party::Client => chat.nickname.clone(),
                    Party::Agent => agent_name,
                    Party::External => "system".to_owned(),
                };
                let index = chat.push(ChatEntryKind::Text, *from, &nickname, text, now);
                let id = self.rec.id.clone();
                let body = chat_body(&id, index, ChatEntryKind::Text, *from, &nickname, text);
                if *from == Party::Client {
                    self.notify_agent(context, format!("agent.chat.{id}"), body);
                } else {
                    self.notify_device(context, format!("service.chat.{id}"), body);
                }
            }
            Event::ChatLeft { by } => {
                let Some(chat) = self.rec.chat.as_mut().filter(|c| c.is_open()) else {
                    context.refuse(self.in_state("no chat is open for this service"));
                    return Handled;
                };
                let nickname = match by {
                    Party::Client => chat.nickname.clone(),
                    _ => agent_name,
                };
                let index = chat.push(
                    ChatEntryKind::Left,
                    *by,
                    &nickname,
                    "has left the session",
                    now,
                );
                chat.ended_at = Some(now);
                let agent_joined = chat.agent_joined;
                let id = self.rec.id.clone();
                let body = chat_body(
                    &id,
                    index,
                    ChatEntryKind::Left,
                    *by,
                    &nickname,
                    "has left the session",
                );
                match by {
                    // The agent hears of it only if it was in the chat.
                    Party::Client if agent_joined => {
                        self.notify_agent(context, format!("agent.chat.{id}"), body)
                    }
                    Party::Client => {}
                    _ => self.notify_device(context, format!("service.chat.{id}"), body),
                }
            }
            Event::ChatTyping { by, typing } => {
                let Some(chat) = self.rec.chat.as_ref().filter(|c| c.is_open()) else {
                    context.refuse(self.in_state("no chat is open for this service"));
                    return Handled;
                };
                if *by == Party::Agent && !chat.agent_joined {
                    context.refuse(self.in_state("the agent has not joined this chat"));
                    return Handled;
                }
                let id = self.rec.id.clone();
                let (kind, text) = if *typing {
                    ("Notice.TypingStarted", "is typing")
                } else {
                    ("Notice.TypingStopped", "stopped typing")
                };
                let nickname = match by {
                    Party::Client => chat.nickname.clone(),
                    _ => agent_name,
                };
                let body = json!({"_id": id, "type": kind, "from": by, "nickname": nickname, "text": text});
                match by {
                    Party::Client => context.effects.push(Effect::PushAgent {
                        agent: self.rec.handling_agent().map(str::to_owned),
                        tag: format!("agent.chat.typing.{id}"),
                        payload: body,
                    }),
                    _ => context.effects.push(Effect::PushDevice {
                        tag: format!("service.chat.typing.{id}"),
                        payload: body,
                    }),
                }
            }
            _ => {}
        }
        Handled
    }

    /// Whether the machine is in (or entering) `connected`: the record's
    /// `state` field is only updated after dispatch, so ask what entering
    /// `connected` sets instead.
    pub(super) fn agent_is_connected(&self) -> bool {
        self.rec.agent.is_some() && self.rec.connected_at.is_some()
    }

    /// The reserved agent joins once both it and the chat are there.
    pub(super) fn agent_joins_chat(&mut self, context: &mut Context) {
        if self.agent_is_connected() {
            let agent = self.rec.agent.clone();
            let now = self.now;
            if let (Some(agent), Some(chat)) = (agent, self.rec.chat.as_mut()) {
                if chat.is_open() && !chat.agent_joined {
                    chat.agent_joined = true;
                    let index = chat.push(
                        ChatEntryKind::Joined,
                        Party::Agent,
                        &agent,
                        "has joined the session",
                        now,
                    );
                    let id = self.rec.id.clone();
                    let body = chat_body(
                        &id,
                        index,
                        ChatEntryKind::Joined,
                        Party::Agent,
                        &agent,
                        "has joined the session",
                    );
                    self.notify_device(context, format!("service.chat.{id}"), body);
                }
            }
        }
    }

    /// The agent leaves the customer's open chat, saying why in `text`.
    pub(super) fn agent_leaves_chat(&mut self, context: &mut Context, text: &str) {
        let now = self.now;
        let agent = self.rec.agent.clone().unwrap_or_default();
        let Some(chat) = self
            .rec
            .chat
            .as_mut()
            .filter(|c| c.is_open() && c.agent_joined)
        else {
            return;
        };
        chat.agent_joined = false;
        let index = chat.push(ChatEntryKind::Left, Party::Agent, &agent, text, now);
        let id = self.rec.id.clone();
        let body = chat_body(&id, index, ChatEntryKind::Left, Party::Agent, &agent, text);
        self.notify_device(context, format!("service.chat.{id}"), body);
    }
}
