//! The operations: what the CLI, the HTTP API and the Functions handler all
//! call. Each one takes the store and storage it works on and returns a
//! report; none of them prints.

pub mod backup;
pub mod ingest;
pub mod load;
pub mod sample;
