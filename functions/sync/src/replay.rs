//! Schedule tick: webhook deliveries that were recorded while the scan queue was unreachable
//! are sent now, oldest first, and their unsent mark cleared.

use shared::ports::PortError;

use crate::Deps;

/// Deliveries replayed per tick; the rest wait for the next one.
const REPLAY_LIMIT: usize = 500;

/// Sends the messages of deliveries marked unsent; returns how many deliveries were replayed.
/// A delivery whose send fails keeps its mark for the next tick.
#[tracing::instrument(skip_all)]
pub async fn replay_deliveries(deps: &Deps) -> Result<usize, PortError> {
    let pending = deps.deliveries.unsent(REPLAY_LIMIT).await?;
    let mut replayed = 0;
    for delivery in &pending {
        if let Err(e) = deps.scan_queue.send_all(&delivery.messages).await {
            tracing::warn!(error.message = %e, "scan queue still unavailable; replay stops until the next tick");
            break;
        }
        deps.deliveries.mark_sent(delivery).await?;
        replayed += 1;
    }
    if !pending.is_empty() {
        tracing::info!(replayed, pending = pending.len(), "webhook deliveries replayed");
    }
    Ok(replayed)
}
