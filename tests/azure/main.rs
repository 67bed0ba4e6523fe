//! Azure, without Azure: Blob Storage through Azurite (the Python Azure SDK,
//! `tests/blob_client.py`, is the independent client that creates
//! containers, uploads the CSVs and checks what hrmig wrote; see
//! `common::azurite` for what the tests need), the same behind a relay that
//! fails the network, managed identity against a fake identity endpoint, and
//! the Functions app: its packaging and the custom handler played as the
//! host plays it.

#[path = "../common"]
mod common {
    pub mod app;
    pub mod azurite;
    pub mod fake;
    pub mod files;
    pub mod port;
    pub mod tables;
}

mod cli;
mod functions;
mod host;

mod blob;
mod handler;
mod identity;
mod packaging;
mod relay;
mod routes;
mod triggers;
