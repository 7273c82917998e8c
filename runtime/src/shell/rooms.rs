//! Video rooms: made here (codes, tokens and links need randomness and
//! secrets), recorded by the machine.

use std::borrow::Cow;
use std::sync::Arc;

use engine::machine::{Event, NewService};
use engine::record::{Party, ServiceRecord};
use engine::scenario::Scenario;
use engine::store::StoreError;
use engine::video::{RoutingData, VideoConfig};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{Shell, ShellError};

/// How many fresh codes a room gets before giving up (a code is taken only
/// if another stored service holds it: 25^7 codes make one retry rare).
const ROOM_CODE_ATTEMPTS: usize = 5;

impl Shell {
    /// Opens the rooms that transitions asked for, one service at a time.
    pub(super) async fn open_room_task(
        self: Arc<Self>,
        mut ids: mpsc::UnboundedReceiver<String>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let id = tokio::select! {
                id = ids.recv() => match id { Some(id) => id, None => return },
                _ = shutdown.changed() => return,
            };
            match self.prepare_room(&id).await {
                Ok(record) => {
                    let code = record.room_code().unwrap_or_default().to_owned();
                    info!(service_id = %id, room = %code, "Video room ready for its agent.");
                }
                // Opened meanwhile (the agent asked), or the service ended.
                Err(ShellError::NotAllowed(_)) | Err(ShellError::UnknownService(_)) => {}
                Err(e) => warn!(service_id = %id, error = %e, "Video room not opened."),
            }
        }
    }

    /// The `[_video]` config a service's rooms are made with: its leg's
    /// scenario's, else its own scenario's, else the defaults.
    pub fn video_config(&self, record: &ServiceRecord) -> Cow<'_, VideoConfig> {
        let from = |name: &str| self.scenarios.get(name).and_then(|s| s.video_config());
        record
            .video
            .as_ref()
            .and_then(|v| from(&v.scenario))
            .or_else(|| from(&record.scenario))
            .unwrap_or_default()
    }

    /// Who the room's links name: the customer's chat nickname or number, and the agent.
    pub(super) fn room_names(record: &ServiceRecord) -> (String, Option<String>) {
        let customer = record
            .chat
            .as_ref()
            .map(|c| c.nickname.clone())
            .or_else(|| record.user_data.get("name").cloned())
            .unwrap_or_else(|| record.customer_number.clone());
        let agent = record
            .video
            .as_ref()
            .and_then(|v| v.agent.clone())
            .or_else(|| record.agent.clone());
        (customer, agent)
    }

    /// Readies the room of a leg whose agent just connected: a new room when
    /// it has none live (`Effect::OpenRoom`), else that agent's link in the
    /// live one (`Effect::LinkAgent`).
    pub(super) async fn prepare_room(&self, id: &str) -> Result<ServiceRecord, ShellError> {
        let record = self.get(id).await?;
        let agent = record.video.as_ref().and_then(|v| v.agent.clone());
        let Some((agent, room)) = agent.zip(record.live_room().cloned()) else {
            return self.open_room(id).await;
        };
        if !room.needs_agent_link(&agent) {
            return Ok(record);
        }
        let config = self.video_config(&record).into_owned();
        let made = self.transition_built(id, Some(record), |_| {
            let (url, token) = self.rooms.agent_link(
                &config,
                &room.code,
                Some(&agent),
                self.now(),
                room.expires_at,
            );
            Cow::Owned(Event::AgentLinked {
                agent: agent.clone(),
                url,
                token,
            })
        });
        made.await.map(|(_, after)| after)
    }

    /// Opens a room for a service's video leg that has an agent and no live
    /// room (a booked appointment was taken, or the agent calls again).
    pub async fn open_room(&self, id: &str) -> Result<ServiceRecord, ShellError> {
        let mut last = None;
        for _ in 0..ROOM_CODE_ATTEMPTS {
            let made = self.transition_built(id, None, |record| {
                let (customer, agent) = Self::room_names(record);
                let config = self.video_config(record);
                let room = self
                    .rooms
                    .make(&config, &customer, agent.as_deref(), self.now());
                Cow::Owned(Event::OpenRoom { room })
            });
            match made.await {
                Err(ShellError::Store(e @ StoreError::RoomTaken { .. })) => last = Some(e),
                other => return other.map(|(_, after)| after),
            }
        }
        Err(last.map_or_else(|| ShellError::Contended(id.to_owned()), ShellError::from))
    }

    /// Starts video on `record` (as the caller read it): the room is made
    /// here, the machine decides whether the chat's agent takes it or it is
    /// routed by `routing`.
    pub async fn start_video(
        &self,
        record: ServiceRecord,
        by: Party,
        video: &Scenario,
        routing: RoutingData,
        conversation_id: Option<String>,
    ) -> Result<ServiceRecord, ShellError> {
        let config = video.video_config().unwrap_or_default();
        let id = record.id.clone();
        let id = id.as_str();
        let mut read = Some(record);
        let mut last = None;
        for _ in 0..ROOM_CODE_ATTEMPTS {
            let record = match read.take() {
                Some(record) => record,
                None => self.get(id).await?,
            };
            // The chat's agent can take the video unless it is in another room.
            let agent_free = match &record.agent {
                Some(agent) => match self.store.agent(agent).await? {
                    Some(a) => a.room.as_deref().is_none_or(|r| r == id),
                    None => false,
                },
                None => false,
            };
            let made = self.transition_built(id, Some(record), |record| {
                let (customer, agent) = Self::room_names(record);
                let agent = agent.filter(|_| agent_free);
                let room = self
                    .rooms
                    .make(&config, &customer, agent.as_deref(), self.now());
                Cow::Owned(Event::StartVideo {
                    by,
                    routing: routing.clone(),
                    scenario: video.name.clone(),
                    conversation_id: conversation_id.clone(),
                    room: Box::new(room),
                    agent_free,
                })
            });
            match made.await {
                // A taken code gets a new one; an agent that entered another
                // room meanwhile is seen as busy on the next read.
                Err(ShellError::Store(
                    e @ (StoreError::RoomTaken { .. } | StoreError::AgentInRoom { .. }),
                )) => last = Some(e),
                other => return other.map(|(_, after)| after),
            }
        }
        Err(last.map_or_else(|| ShellError::Contended(id.to_owned()), ShellError::from))
    }

    /// Creates a service in a video scenario with its room open from the
    /// start, so the create's answer holds the link. A code another service
    /// holds gets a fresh one.
    pub async fn create_with_room(
        &self,
        scenario: &Arc<Scenario>,
        mut new: NewService,
    ) -> Result<Arc<ServiceRecord>, ShellError> {
        let config = scenario.video_config().unwrap_or_default();
        let name = new
            .user_data
            .get("name")
            .cloned()
            .unwrap_or_else(|| new.customer_number.clone());
        let mut last = None;
        for _ in 0..ROOM_CODE_ATTEMPTS {
            let room = self.rooms.make(&config, &name, None, self.now());
            if let Some(leg) = new.video.as_mut() {
                leg.rooms = vec![room];
            }
            match self.create(scenario, new.clone()).await {
                Err(ShellError::Store(e @ StoreError::RoomTaken { .. })) => last = Some(e),
                other => return other,
            }
        }
        Err(last.map_or_else(|| ShellError::Contended(new.id.clone()), ShellError::from))
    }
}
