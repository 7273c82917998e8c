//! The video leg: asking for video, the room's life (ringing, answers,
//! joins, leaves, signalling, its end and expiry) and the survey after the
//! call.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::notify::party_name;
use super::{Context, Effect, Event, Service};
use crate::record::*;
use crate::video::{
    Room, RoomEnd, RoomParticipant, RoutingData, SurveyAnswer, VideoLeg, VideoRoute,
};

impl Service {
    /// Why video cannot start now, if it cannot.
    pub(super) fn video_refusal(&self, by: Party, same_agent: bool) -> Option<String> {
        if let Some(room) = self.rec.live_room() {
            return Some(self.in_state(&format!(
                "video room {} is already live for this service",
                room.code
            )));
        }
        if by == Party::Agent && !same_agent {
            return Some(self.in_state(if self.rec.agent.is_none() {
                "no agent has this service, so no agent can start its video"
            } else {
                "the agent is already in another video room; leave it first"
            }));
        }
        None
    }

    /// Records the request and its room on the leg (made on the first request).
    pub(super) fn start_video(
        &mut self,
        by: Party,
        routing: &RoutingData,
        scenario: &str,
        conversation_id: &Option<String>,
        room: &Room,
        context: &mut Context,
    ) {
        let now = self.now;
        let leg = self.rec.video.get_or_insert_with(|| {
            Box::new(VideoLeg {
                requested_at: now,
                requested_by: by,
                scenario: scenario.to_owned(),
                routing: routing.clone(),
                conversation_id: None,
                agent: None,
                routed: None,
                connected_at: None,
                rooms: Vec::new(),
                survey: None,
            })
        });
        leg.requested_at = now;
        leg.requested_by = by;
        leg.scenario = scenario.to_owned();
        leg.routing = routing.clone();
        if conversation_id.is_some() {
            leg.conversation_id = conversation_id.clone();
        }
        leg.agent = None;
        leg.routed = None;
        leg.connected_at = None;
        leg.push_room(room.clone());
        self.arm(context, TimerKind::RoomTtl, room.expires_at);
    }

    /// The queue ticket becomes the video's routingData.
    pub(super) fn retarget(&mut self, routing: &RoutingData, since: DateTime<Utc>) {
        self.rec.ticket = super::ticket_for(routing, since);
    }

    /// Entering `connected` with a video leg: the new agent takes it.
    pub(super) fn video_connected(&mut self, context: &mut Context) {
        let now = self.now;
        let Some(agent) = self.rec.agent.clone() else {
            return;
        };
        let preferred = self.rec.ticket.preferred_agent.as_deref() == Some(agent.as_str());
        let Some(leg) = self.rec.video.as_mut() else {
            return;
        };
        leg.agent = Some(agent);
        leg.routed = Some(if preferred {
            VideoRoute::PreferredAgent
        } else {
            VideoRoute::Queue
        });
        leg.connected_at = Some(now);
        let relink = leg
            .live_room()
            .map(|r| leg.agent.as_deref().is_some_and(|a| r.needs_agent_link(a)));
        if relink == Some(true) {
            // Ring once the link names this agent.
            context.effects.push(Effect::LinkAgent);
        } else if relink == Some(false) {
            self.ring(context);
        } else {
            // A booked appointment, or a room that expired while waiting.
            context.effects.push(Effect::OpenRoom);
        }
    }

    /// The other side is asked to answer: both are told, each with its link.
    pub(super) fn ring(&mut self, context: &mut Context) {
        let now = self.now;
        if let Some(room) = self.rec.video.as_mut().and_then(|v| v.live_room_mut()) {
            if room.ringing_at.is_none() {
                room.ringing_at = Some(now);
            }
        }
        self.video_notice(context, "ringing");
    }

    /// Tells the customer and the leg's agent what happened to the video.
    pub(super) fn video_notice(&mut self, context: &mut Context, what: &str) {
        let id = self.rec.id.clone();
        let Some(leg) = self.rec.video.as_ref() else {
            return;
        };
        let room = leg.last_room();
        let base = |url: Option<&str>| {
            json!({
                "_id": id,
                "_action": "video",
                "_event": what,
                "_room_code": room.map(|r| r.code.clone()),
                "_room_status": room.map(|r| r.status()),
                "_meet_url": url,
                "_expires_at": room.map(|r| r.expires_at),
                "_ringing": match leg.requested_by { Party::Agent => "customer", _ => "agent" },
                "_routed": leg.routed,
                "_agent_id": leg.agent,
                "_survey": what == "ended" && room.is_some_and(|r| r.started_at.is_some()),
            })
        };
        // Each side gets its own link and the token that proves its side
        // to the room API (`/api/v1/rooms/{code}`).
        let mut device = base(room.map(|r| r.customer_url.as_str()));
        device["_room_token"] = json!(room.map(|r| r.customer_token.clone()));
        let mut agent = base(room.map(|r| r.agent_url.as_str()));
        agent["_room_token"] = json!(room.map(|r| r.agent_token.clone()));
        let has_agent = leg.agent.is_some();
        self.notify_device(context, format!("service.video.{id}"), device);
        if has_agent {
            self.notify_agent(context, format!("agent.video.{id}"), agent);
        }
    }

    /// Ends the live room, if any: everyone still in it leaves.
    pub(super) fn end_room(&mut self, context: &mut Context, reason: RoomEnd) {
        let now = self.now;
        let Some(room) = self.rec.video.as_mut().and_then(|v| v.live_room_mut()) else {
            return;
        };
        room.ended_at = Some(now);
        room.end_reason = Some(reason);
        for p in room.participants.iter_mut().filter(|p| p.left_at.is_none()) {
            p.left_at = Some(now);
        }
        self.disarm(context, TimerKind::RoomTtl);
        let agent = self.rec.video.as_ref().and_then(|v| v.agent.clone());
        context.effects.push(Effect::RoomEnded { agent });
        self.video_notice(context, "ended");
    }

    /// The code expired: a room nobody started closes; a call in progress goes on.
    pub(super) fn room_expired(&mut self, context: &mut Context) {
        let unstarted = self
            .rec
            .video
            .as_ref()
            .and_then(|v| v.live_room())
            .is_some_and(|r| r.started_at.is_none());
        if unstarted {
            self.end_room(context, RoomEnd::Expired);
        }
    }

    pub(super) fn room_event(&mut self, context: &mut Context, event: &Event) {
        let now = self.now;
        let has_agent = self.rec.video.as_ref().is_some_and(|v| v.agent.is_some());
        let Some(room) = self.rec.video.as_ref().and_then(|v| v.live_room()).cloned() else {
            context.refuse(self.in_state("this service has no live video room"));
            return;
        };
        let party = match event {
            Event::RoomAnswered { by, .. } => *by,
            Event::RoomJoined { party } | Event::RoomLeft { party } => *party,
            Event::RoomSignal { from, .. } => *from,
            _ => return,
        };
        if party == Party::Agent && !has_agent {
            context.refuse(self.in_state("no agent has taken this video call yet"));
            return;
        }
        match event {
            Event::RoomAnswered { by, accept } => {
                if *by != self.rung_side() {
                    context.refuse(self.in_state(&format!(
                        "the {} asked for this call; only the {} answers it",
                        party_name(self.caller()),
                        party_name(self.rung_side())
                    )));
                    return;
                }
                if room.ringing_at.is_none()
                    || room.answered_by.is_some()
                    || room.started_at.is_some()
                {
                    context.refuse(self.in_state(&format!(
                        "room {} is {}: only a ringing room can be answered",
                        room.code,
                        room.status()
                    )));
                    return;
                }
                if let Some(r) = self.rec.video.as_mut().and_then(|v| v.live_room_mut()) {
                    r.answered_by = Some(*by);
                    if *accept {
                        r.accepted_at = Some(now);
                    } else {
                        r.declined_at = Some(now);
                    }
                }
                if *accept {
                    self.video_notice(context, "accepted");
                } else {
                    self.end_room(context, RoomEnd::Declined);
                }
            }
            Event::RoomJoined { party } => {
                if room.is_in(*party) {
                    // Joined again from another tab: nothing changes.
                    return;
                }
                if room.started_at.is_none() && now >= room.expires_at {
                    context.refuse(self.in_state(&format!("room {} has expired", room.code)));
                    return;
                }
                let name = match party {
                    Party::Agent => self
                        .rec
                        .video
                        .as_ref()
                        .and_then(|v| v.agent.clone())
                        .unwrap_or_default(),
                    _ => self
                        .rec
                        .chat
                        .as_ref()
                        .map_or_else(|| self.rec.customer_number.clone(), |c| c.nickname.clone()),
                };
                let rung = self.rung_side();
                let Some(r) = self.rec.video.as_mut().and_then(|v| v.live_room_mut()) else {
                    return;
                };
                r.participants.push(RoomParticipant {
                    party: *party,
                    name,
                    joined_at: now,
                    left_at: None,
                });
                if r.ringing_at.is_some() && r.answered_by.is_none() && *party == rung {
                    // The called side joining answers the ring.
                    r.answered_by = Some(*party);
                    r.accepted_at = Some(now);
                }
                let both = r.is_in(Party::Client) && r.is_in(Party::Agent);
                if both && r.started_at.is_none() {
                    r.started_at = Some(now);
                    self.disarm(context, TimerKind::RoomTtl);
                    self.video_notice(context, "started");
                } else {
                    self.video_notice(context, "joined");
                }
            }
            Event::RoomLeft { party } => {
                if !room.is_in(*party) {
                    context.refuse(self.in_state(&format!(
                        "the {} is not in room {}",
                        party_name(*party),
                        room.code
                    )));
                    return;
                }
                if room.started_at.is_some() {
                    self.end_room(context, RoomEnd::Left);
                    return;
                }
                if let Some(r) = self.rec.video.as_mut().and_then(|v| v.live_room_mut()) {
                    for p in r.participants.iter_mut() {
                        if p.party == *party && p.left_at.is_none() {
                            p.left_at = Some(now);
                        }
                    }
                }
                self.video_notice(context, "left");
            }
            Event::RoomSignal { from, signal } => {
                if room.provider != "relay" {
                    context.refuse(self.in_state(&format!(
                        "room {} is on the {} provider; only relay rooms carry signalling",
                        room.code, room.provider
                    )));
                    return;
                }
                if !room.is_in(*from) {
                    context.refuse(self.in_state(&format!(
                        "the {} must join room {} before signalling",
                        party_name(*from),
                        room.code
                    )));
                    return;
                }
                let id = self.rec.id.clone();
                let body = json!({"_id": id, "_room_code": room.code, "from": party_name(*from), "signal": signal});
                match from {
                    Party::Agent => context.effects.push(Effect::PushDevice {
                        tag: format!("service.video.signal.{id}"),
                        payload: body,
                    }),
                    _ => context.effects.push(Effect::PushAgent {
                        agent: self.rec.video.as_ref().and_then(|v| v.agent.clone()),
                        tag: format!("agent.video.signal.{id}"),
                        payload: body,
                    }),
                }
            }
            _ => {}
        }
    }

    /// Who asked for the video: the other side is the one rung.
    pub(super) fn caller(&self) -> Party {
        self.rec
            .video
            .as_ref()
            .map_or(Party::Client, |v| v.requested_by)
    }

    pub(super) fn rung_side(&self) -> Party {
        match self.caller() {
            Party::Agent => Party::Client,
            _ => Party::Agent,
        }
    }

    pub(super) fn survey(&mut self, context: &mut Context, event: &Event) {
        let Event::SurveyAnswered {
            question,
            scale,
            score,
            comment,
        } = event
        else {
            return;
        };
        let state = self.rec.state.gms_name();
        let refuse = |context: &mut Context, why: &str| {
            context.refuse(format!("service is {state}: {why}"));
        };
        let Some(leg) = self.rec.video.as_mut() else {
            refuse(context, "this service had no video call to rate");
            return;
        };
        if !leg.had_call() {
            refuse(
                context,
                "the survey opens once a video call has taken place and ended",
            );
            return;
        }
        if leg.survey.is_some() {
            refuse(context, "the survey has already been answered");
            return;
        }
        if *score == 0 || score > scale {
            refuse(context, &format!("score must be 1 to {scale}"));
            return;
        }
        leg.survey = Some(SurveyAnswer {
            question: question.clone(),
            score: *score,
            scale: *scale,
            comment: comment.clone(),
            at: self.now,
        });
        let id = self.rec.id.clone();
        let body = json!({"_id": id, "_action": "survey", "score": score, "scale": scale, "comment": comment});
        self.notify_agent(context, format!("agent.survey.{id}"), body);
    }
}
