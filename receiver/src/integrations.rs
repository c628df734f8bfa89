//! Integrations as the handler reads them: through the store, kept in memory for at most
//! [`STALENESS`].
//!
//! Reading the integration is the one store call every request makes; cached, a busy receiver
//! reads each integration about once a second instead of once per request. The price is the
//! bound: a CLI change (`pause`, `resume`, `set-mode`, a filter, `rotate-secret --now`) reaches a
//! running receiver within [`STALENESS`]. A secret the cached integration does not know yet (a
//! rotation's new one) is checked against a fresh read before it is refused, so a rotation works
//! at once.

use crate::backend::{BackendError, Store};
use relay_protocol::Integration;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a request may be checked against an integration read from the store earlier.
pub(crate) const STALENESS: Duration = Duration::from_secs(1);

/// An integration as the handler knows it, and whether it came from memory rather than from the
/// store just now.
pub(crate) struct Known {
    pub integration: Arc<Integration>,
    pub cached: bool,
}

pub(crate) struct Integrations {
    store: Arc<dyn Store>,
    recent: Mutex<HashMap<String, (Instant, Arc<Integration>)>>,
}

impl Integrations {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Integrations {
            store,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// The integration `id`: from memory when read within [`STALENESS`], else from the store.
    /// An unknown id is never remembered, so a new integration is found at once.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<Known>, BackendError> {
        if let Some(integration) = self.remembered(id) {
            return Ok(Some(Known {
                integration,
                cached: true,
            }));
        }
        self.read(id).await
    }

    /// The integration `id` as the store has it now.
    pub(crate) async fn read(&self, id: &str) -> Result<Option<Known>, BackendError> {
        let Some(integration) = self.store.get(id).await? else {
            self.lock().remove(id);
            return Ok(None);
        };
        let integration = Arc::new(integration);
        self.lock()
            .insert(id.to_owned(), (Instant::now(), Arc::clone(&integration)));
        Ok(Some(Known {
            integration,
            cached: false,
        }))
    }

    fn remembered(&self, id: &str) -> Option<Arc<Integration>> {
        let recent = self.lock();
        let (read_at, integration) = recent.get(id)?;
        (read_at.elapsed() < STALENESS).then(|| Arc::clone(integration))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<Integration>)>> {
        // A panic while holding the lock leaves a map that is still whole: keep using it.
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
