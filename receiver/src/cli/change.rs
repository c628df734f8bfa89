//! The one way the `integrations` commands change an integration: load it, apply the change,
//! stamp the time, write it back, and report the result.

use super::common::{load, CliResult, Report, Shown};
use crate::backend::Store;
use chrono::{DateTime, Utc};
use relay_protocol::{Integration, Mode};
use serde::Serialize;
use std::fmt::{self, Write};

/// A status or mode change, written back with its time.
pub(super) trait Change: Copy {
    /// Changes the integration, or says why it cannot.
    fn apply(self, integration: &mut Integration) -> CliResult;
}

pub(super) async fn update(
    store: &dyn Store,
    id: &str,
    now: DateTime<Utc>,
    change: impl Change,
) -> CliResult<Updated> {
    let mut integration = load(store, id).await?;
    change.apply(&mut integration)?;
    integration.updated_at = now;
    store.put(&integration).await?;
    Ok(Updated(integration))
}

/// The changed integration, as `pause`, `resume`, `set-mode`, `set-horizon` and `set-limits`
/// report it.
pub(super) struct Updated(pub(super) Integration);

impl Serialize for Updated {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Shown(&self.0).serialize(serializer)
    }
}

impl Report for Updated {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let i = &self.0;
        let net = match i.safety_net_secs {
            Some(secs) if i.mode == Mode::Event => format!(
                ", with a safety net listing every {}",
                humantime::format_duration(std::time::Duration::from_secs(secs))
            ),
            _ => String::new(),
        };
        writeln!(
            out,
            "Integration {} is now {}, mode {}{net}.",
            i.id, i.status, i.mode
        )
    }
}
