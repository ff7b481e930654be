//! `file`: a YAML or JSON list of endpoints in a file, watched.
//!
//! The file is re-read whenever its folder changes (see [`crate::fswatch`]
//! for why the folder) and, as a safety net for filesystems without change
//! events, every [`RESYNC`]. Only a changed file produces an update, so a
//! noisy folder costs a read, not a rebalance. A file that does not parse
//! is reported as an error and the last good set stays.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};

use super::{wire, Discover, Update};
use crate::fswatch::{read_settled, DirWatch, DEBOUNCE};

/// Re-read this often even without change events.
pub const RESYNC: Duration = Duration::from_secs(10);

/// Retry a folder that cannot be watched (yet) this often.
const NO_WATCH_RETRY: Duration = Duration::from_secs(1);

/// A watched endpoints file.
pub struct FileSource {
    /// Absolute, or relative to the working directory.
    pub path: PathBuf,
}

/// What the stream carries between answers.
struct State {
    path: PathBuf,
    watch: Option<DirWatch>,
    /// What the file held last time (or why it could not be read), so an
    /// unchanged file is not reported again.
    last: Option<Result<Vec<u8>, String>>,
}

impl Discover for FileSource {
    fn updates(&self) -> BoxStream<'static, Update> {
        let state = State { path: self.path.clone(), watch: None, last: None };
        stream::unfold(state, next).boxed()
    }
}

async fn next(mut st: State) -> Option<(Update, State)> {
    loop {
        if st.watch.is_none() {
            // Watch before reading, so a change between the two is not lost.
            st.watch = DirWatch::new(&st.path, DEBOUNCE)
                .inspect_err(|e| tracing::warn!(path = %st.path.display(), error = %e, "cannot watch"))
                .ok();
        }
        let read = read_settled(&st.path).await.map_err(|e| format!("cannot read {}: {e}", st.path.display()));
        if st.last.as_ref() != Some(&read) {
            st.last = Some(read.clone());
            let update = read.map_err(Into::into).and_then(|bytes| {
                let text = String::from_utf8_lossy(&bytes);
                wire::parse_list(&text).map_err(|e| format!("{}: {e}", st.path.display()).into())
            });
            return Some((update, st));
        }
        match &mut st.watch {
            Some(w) => {
                tokio::select! {
                    alive = w.changed() => if !alive { st.watch = None },
                    _ = tokio::time::sleep(RESYNC) => {}
                }
            }
            None => tokio::time::sleep(NO_WATCH_RETRY).await,
        }
    }
}
