//! The query side: serves reads from the projections only (never from the write side),
//! bound to the caller's tenant, optionally waiting for a command's position token.

pub mod consistency;
pub mod cursor;
pub mod field_visibility;
pub mod permissions;
pub mod routes;
pub mod startup;

pub use startup::Application;
