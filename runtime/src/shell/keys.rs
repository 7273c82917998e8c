//! Agent keys an admin mints: what the API stores, lists, revokes and looks
//! up by a presented key's id. The store keeps only a hash of each secret.

use engine::store::AgentKey;
use tracing::info;

use super::{Shell, ShellError};

impl Shell {
    /// Stores a newly minted key; `KeyExists` when the agent has one of that name.
    pub async fn add_agent_key(&self, key: &AgentKey) -> Result<(), ShellError> {
        self.store.put_agent_key(key).await?;
        info!(agent_id = %key.agent, key = %key.name, "Agent key minted.");
        Ok(())
    }

    /// The key entry a presented key's id finds (every request with a
    /// minted key reads it, so a revoke holds at once on every node).
    pub async fn agent_key(&self, id: &str) -> Result<Option<AgentKey>, ShellError> {
        Ok(self.store.agent_key(id).await?)
    }

    /// An agent's keys, by name.
    pub async fn agent_keys(&self, agent: &str) -> Result<Vec<AgentKey>, ShellError> {
        Ok(self.store.agent_keys(agent).await?)
    }

    /// Revokes the agent's key `name`; whether there was one.
    pub async fn revoke_agent_key(&self, agent: &str, name: &str) -> Result<bool, ShellError> {
        let revoked = self.store.revoke_agent_key(agent, name).await?;
        if revoked {
            info!(agent_id = %agent, key = %name, "Agent key revoked.");
        }
        Ok(revoked)
    }
}
