//! What the write side found for a reference to another stream, looked up before
//! deciding (the domain never queries; it is told).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// No such stream in the tenant.
    Missing,
    /// It exists but cannot be used now (closed case, deactivated channel, locked user).
    Inactive,
    Usable,
}
