//! One module per engine: sessdb and its peers, each running the same workloads on the same
//! sessions.

pub mod redis;
pub mod sessdb;
pub mod sled;
pub mod sqlite;
