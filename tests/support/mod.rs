pub mod app;
pub mod broker;
pub mod poll;
pub mod stores;
