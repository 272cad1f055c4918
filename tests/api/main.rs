//! Integration tests: the three services over HTTP against the real servers.

#![allow(clippy::unwrap_used)]

mod abuse;
mod accepted_means_projected;
mod audit_search;
mod bad_input;
mod bench_smoke;
mod broker_loss;
mod case_reads;
mod case_types;
mod channels;
mod concurrency;
mod crash_safety;
mod custom_fields;
mod documents;
mod entities;
mod flow;
mod input_contract;
mod isolation;
mod log_gaps;
mod notes;
mod notifications;
mod openapi;
mod operations;
mod parking;
mod presence;
mod projector_crash;
mod query_plans;
mod read_models;
mod scale_out;
mod searching;
mod security_audit;
mod security_credentials;
mod security_grants;
mod security_ids;
mod security_live_state;
mod security_second_pass;
mod security_sessions;
mod store_pause;
mod tasks;
mod teams;
mod templates;
mod tenants;
mod users;
mod verify_repair;
mod workflows;
