//! How a model's attempts are bounded and retried: `[routing]`'s settings, with those a
//! `[[models]]` entry gives for itself taking their place.

use std::time::Duration;

use crate::config::{ModelSettings, RoutingSettings};

/// How one model's attempts are bounded and retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub attempt: Duration,
    pub first_byte: Duration,
    pub first_token: Duration,
    pub max_retries: u32,
}

/// A model's own attempt settings (`[[models]]`); `None` keeps `[routing]`'s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub attempt: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub first_token: Option<Duration>,
    pub max_retries: Option<u32>,
}

impl Timing {
    pub fn from_routing(routing: &RoutingSettings) -> Timing {
        Timing {
            attempt: Duration::from_millis(routing.attempt_timeout_ms),
            first_byte: Duration::from_millis(routing.first_byte_timeout_ms),
            first_token: Duration::from_millis(routing.first_token_timeout_ms),
            max_retries: routing.max_retries,
        }
    }

    pub fn with(self, overrides: &Overrides) -> Timing {
        Timing {
            attempt: overrides.attempt.unwrap_or(self.attempt),
            first_byte: overrides.first_byte.unwrap_or(self.first_byte),
            first_token: overrides.first_token.unwrap_or(self.first_token),
            max_retries: overrides.max_retries.unwrap_or(self.max_retries),
        }
    }
}

impl Overrides {
    pub fn from_model(model: &ModelSettings) -> Overrides {
        Overrides {
            attempt: model.attempt_timeout_ms.map(Duration::from_millis),
            first_byte: model.first_byte_timeout_ms.map(Duration::from_millis),
            first_token: model.first_token_timeout_ms.map(Duration::from_millis),
            max_retries: model.max_retries,
        }
    }
}
