//! One module per engine: sessdb and its peers, each running the same workloads on the same
//! sessions; `tower` drives sessdb's tower-sessions adapter and the published stores.

pub mod redis;
pub mod sessdb;
pub mod sled;
pub mod sqlite;
pub mod tower;
