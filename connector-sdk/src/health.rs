use std::sync::Arc;

use parking_lot::Mutex;

/// A handle a connector uses to tell the host whether its system is reachable.
///
/// The host shows the state on `/health` and `/pipelines`. Set it unhealthy with a reason an
/// operator can act on ("HEC answered 403 code 4: Invalid token"); set it healthy again once a
/// request succeeds. Cloning shares the state.
#[derive(Clone, Default, Debug)]
pub struct Health {
    state: Arc<Mutex<Option<String>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_unhealthy(&self, reason: impl Into<String>) {
        *self.state.lock() = Some(reason.into());
    }

    pub fn set_healthy(&self) {
        let mut s = self.state.lock();
        if s.is_some() {
            *s = None;
        }
    }

    /// `None` when healthy, else the reason.
    pub fn problem(&self) -> Option<String> {
        self.state.lock().clone()
    }
}
