//! The host's side of the real-guest checks: the verbs each topic's guest steps ask the
//! [host agent](crate::host_agent) for, one module per topic, each with a `register` function that adds
//! its verbs to an agent.

pub mod clipboard;
pub mod guestd;
pub mod guestprops;

use crate::host_agent::HostAgent;

/// Every topic's `register`, in no particular order (verbs must not collide).
const TOPICS: &[fn(HostAgent) -> HostAgent] =
    &[clipboard::register, guestd::register, guestprops::register];

/// An agent serving every topic's verbs.
pub fn agent() -> HostAgent {
    TOPICS
        .iter()
        .fold(HostAgent::new(), |agent, register| register(agent))
}
