//! Bulkheads: bounded concurrency and queues.

mod settings;

pub use settings::BulkheadSettings;
