//! What the supervisors know right now, for readers outside their loops (the HTTP server): one
//! view per target, updated by its loop at every sample, and the channel that carries admin
//! requests into that loop. The lock is held only to copy a view in or out, never across an
//! await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use plimsoll_analysis::LevelConfig;
use plimsoll_http::TargetStatus;
use tokio::sync::{mpsc, oneshot};

/// One target as its supervisor last saw it, with the way into its loop.
#[derive(Debug, Clone)]
pub(crate) struct TargetView {
    /// What the HTTP server shows of it.
    pub(crate) status: TargetStatus,
    /// Admin requests to the target's loop; `None` when it takes none.
    pub(crate) admin: Option<mpsc::Sender<AdminRequest>>,
}

impl TargetView {
    /// A view of a target before its first sample.
    pub(crate) fn new(name: &str, levels: LevelConfig, owned: bool) -> TargetView {
        TargetView {
            status: TargetStatus::new(name, levels, owned),
            admin: None,
        }
    }
}

/// An action an admin asks of a target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AdminAction {
    /// Restart it gracefully.
    Restart,
    /// Ask its runtime for a heap snapshot.
    Snapshot,
    /// Ask its runtime for a full garbage collection.
    Gc,
    /// Ask the app to clear its caches.
    ClearCache,
    /// Report the leak detector's current view.
    LeakCheck,
    /// Replace the level marks and holds.
    Thresholds(LevelConfig),
}

/// The answer of a target's loop to an admin request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AdminReply {
    /// Done; what happened, as JSON.
    Done(serde_json::Value),
    /// The target cannot do this (e.g. gc of a process without a runtime agent); why.
    Unsupported(String),
    /// It was tried and failed; why.
    Failed(String),
}

/// One admin request with the channel for its reply.
#[derive(Debug)]
pub(crate) struct AdminRequest {
    pub(crate) action: AdminAction,
    pub(crate) reply: oneshot::Sender<AdminReply>,
}

/// The views of all targets, shared by the supervisors and their readers.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    targets: Mutex<BTreeMap<String, TargetView>>,
}

impl Registry {
    pub(crate) fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds or replaces a target's view.
    pub(crate) fn insert(&self, view: TargetView) {
        self.lock().insert(view.status.name.clone(), view);
    }

    /// Changes a target's view in place; nothing when it is not registered.
    pub(crate) fn update(&self, name: &str, change: impl FnOnce(&mut TargetView)) {
        if let Some(view) = self.lock().get_mut(name) {
            change(view);
        }
    }

    /// Forgets a target.
    pub(crate) fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    /// One target's view.
    pub(crate) fn get(&self, name: &str) -> Option<TargetView> {
        self.lock().get(name).cloned()
    }

    /// Every target's view, by name.
    pub(crate) fn all(&self) -> Vec<TargetView> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TargetView>> {
        // A panic while holding the lock cannot leave a view half-written (updates are plain
        // field assignments), so a poisoned lock is still good to use.
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_inserted_updated_and_removed() {
        let registry = Registry::new();
        registry.insert(TargetView::new("api", LevelConfig::recommended(), true));
        registry.update("api", |v| v.status.rss_bytes = Some(42));
        registry.update("missing", |v| v.status.rss_bytes = Some(1));
        assert_eq!(
            registry.get("api").and_then(|v| v.status.rss_bytes),
            Some(42)
        );
        assert_eq!(registry.all().len(), 1);
        registry.remove("api");
        assert!(registry.get("api").is_none());
    }
}
