//! Live sources: a watched file, an HTTP poller for Unleash's client API, and Redis.
