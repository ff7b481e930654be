//! The data path: listeners accept, the router picks a route, the route's
//! stack sends, and the edge turns errors into local responses.

pub mod cluster;
pub mod edge;
pub mod forward;
pub mod listener;
pub mod origin;
pub mod parse_errors;
pub mod route;
pub mod router;
pub mod state;
pub mod table;

pub use route::HttpService;
