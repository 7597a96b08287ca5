//! The one integration-test binary: the real server over HTTP, private `redis-server`s (one
//! server, a Redis Cluster, and servers of their own for tests that break them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod cli;
mod cluster;
mod command_line;
mod compaction;
mod compaction_interleaving;
mod exposure;
mod fake_upstream;
mod faults;
mod hardening;
mod helpers;
mod import_edges;
mod import_export;
mod key_secrecy;
mod keys;
mod limits;
mod messages;
mod migrations;
mod observability;
mod openapi;
mod out_of_memory;
mod outage;
mod playground;
mod readiness;
mod redis_cluster;
mod redis_server;
mod redis_tls;
mod resilience;
mod responses;
mod restart;
mod round_trip;
mod send_faults;
mod sentinel;
mod sessions;
mod shutdown;
mod store_suite;
mod tenancy;
mod tenant_ids;
mod tools;
mod user_index;
