//! Self-registration in a build without the `etcd` feature: validation
//! refuses `registration:` (see [`NO_ETCD`](super::NO_ETCD)), so this is
//! never started; it keeps the runtime's shape the same.

use crate::config::settings::RegistrationSettings;

/// No registration.
pub struct Registration;

impl Registration {
    /// Never called: the config was refused.
    pub fn start(_settings: RegistrationSettings, _ready: impl Fn() -> bool + Send + Sync + 'static) -> Registration {
        tracing::error!("{}", super::NO_ETCD);
        Registration
    }

    /// Nothing to revoke.
    pub async fn deregister(&self) {}
}
