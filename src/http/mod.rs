//! The HTTP door: an axum router over the same operations as the CLI.
//!
//! - `app` assembles the [`router`]: the resources of `routes` (one module
//!   and router each), the OpenAPI document ([`openapi`]), and the layers —
//!   the request log (`trace`), the API key (`auth`) and the limits
//!   ([`limits`]). `state` holds what the handlers share ([`AppState`]).
//! - [`error`] turns every error into its response; `extract` reads what a
//!   request says, once, at the edge.
//! - [`server`] starts the server: [`run`] takes its listener and shutdown
//!   signal, so tests bind port 0 and every way of running the service
//!   shares one router; [`serve`] drives hyper's HTTP/1.1 connections
//!   itself, with the timeouts and caps of [`limits`].
//! - [`functions`] holds the routes only the Azure Functions host calls.

mod app;
mod auth;
pub mod error;
mod extract;
pub mod functions;
pub mod limits;
pub mod openapi;
mod routes;
pub mod server;
mod state;
mod trace;

pub use app::{MAX_BODY_BYTES, router, standalone_router};
pub use auth::Keys;
pub use limits::{LimitSettings, Limits};
pub use server::{functions_router, run, serve, shutdown_signal};
pub use state::{AppState, QueuedJob, Runner};
