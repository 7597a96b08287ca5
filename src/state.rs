//! The one [`AppState`] every handler reads. It sits below the routes and the
//! conversation layer and depends on neither; [`crate::startup`] only assembles it.

use std::sync::Arc;

use crate::{
    auth::KeyRing,
    config::Settings,
    llm::{registry::ModelRegistry, router::Router},
    metering::backlog::Backlog,
    shutdown::{ActiveLeases, Draining},
    store::Store,
};

/// Everything a request handler may need, built once.
pub struct AppState {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub keys: KeyRing,
    pub models: ModelRegistry,
    /// Breakers, retry budget and timeouts of upstream calls (per instance).
    pub router: Router,
    pub draining: Arc<Draining>,
    pub leases: Arc<ActiveLeases>,
    /// Usage and cost writes the store refused, waiting to be made again.
    pub usage_backlog: Arc<Backlog>,
    /// Compaction jobs asked for by this instance's sends.
    pub compaction: Arc<crate::conversation::compaction::Jobs>,
}
