//! Watching one file for changes, the way config maps change it.
//!
//! Why the folder and not the file: a Kubernetes ConfigMap volume publishes
//! a new version by swapping the `..data` symlink, so the file's inode never
//! changes and a watch on the file itself goes quiet after the first swap.
//! Editors and `mv`-style atomic writes replace the inode too. Watching the
//! folder sees all of these. A burst of events (truncate, write, close,
//! rename) is folded into one tick by a short debounce, so readers see the
//! finished file, once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::BoxError;

/// How long the folder must stay quiet before a burst counts as one change.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// How long an empty file may stay empty before it is believed. A
/// truncate-then-write is seen empty in between, and on a loaded machine the
/// write can land well after the debounce has settled.
pub const EMPTY_GRACE: Duration = Duration::from_secs(1);

/// A live watch on a folder; dropped, it stops.
pub struct DirWatch {
    /// Kept only so the OS watch lives as long as this value.
    _watcher: RecommendedWatcher,
    /// One pending tick is enough: a reader re-reads the whole file.
    ticks: mpsc::Receiver<()>,
    window: Duration,
}

impl DirWatch {
    /// Watches the folder that holds `file` (not recursively).
    pub fn new(file: &Path, window: Duration) -> Result<DirWatch, BoxError> {
        let (tx, ticks) = mpsc::channel(1);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if changes_content(&ev.kind) {
                    let _ = tx.try_send(());
                }
            }
        })?;
        let dir = folder_of(file);
        watcher.watch(&dir, RecursiveMode::NonRecursive).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        Ok(DirWatch { _watcher: watcher, ticks, window })
    }

    /// Waits for the next change to settle. Returns false when the watch
    /// has ended (the OS side went away).
    pub async fn changed(&mut self) -> bool {
        if self.ticks.recv().await.is_none() {
            return false;
        }
        loop {
            match tokio::time::timeout(self.window, self.ticks.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }
}

/// Reads `path` once a change has settled: an empty file is read again
/// until it has content or [`EMPTY_GRACE`] has passed, so a writer caught
/// between truncate and write is not taken at its word.
pub async fn read_settled(path: &Path) -> std::io::Result<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + EMPTY_GRACE;
    loop {
        let bytes = tokio::fs::read(path).await?;
        if !bytes.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(bytes);
        }
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// Reads (opens, closes without writing) are our own and change nothing;
/// everything else may have.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The folder a file lives in (`.` for a bare file name).
pub fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rewrite of a watched file gives exactly one settled tick, however
    /// many OS events the write made.
    #[tokio::test]
    async fn a_burst_of_writes_is_one_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.yaml");
        std::fs::write(&file, "a").unwrap();
        let mut w = DirWatch::new(&file, Duration::from_millis(100)).unwrap();
        for i in 0..5 {
            std::fs::write(&file, format!("b{i}")).unwrap();
        }
        assert!(tokio::time::timeout(Duration::from_secs(3), w.changed()).await.unwrap());
        let again = tokio::time::timeout(Duration::from_millis(300), w.changed()).await;
        assert!(again.is_err(), "a second tick for the same burst");
    }

    /// A file read between truncate and write waits for the write; one that
    /// stays empty is believed after the grace.
    #[tokio::test]
    async fn an_empty_read_waits_for_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.yaml");
        std::fs::write(&file, "").unwrap();
        let writer = {
            let file = file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                std::fs::write(file, "written").unwrap();
            })
        };
        assert_eq!(read_settled(&file).await.unwrap(), b"written");
        writer.join().unwrap();

        std::fs::write(&file, "").unwrap();
        assert_eq!(read_settled(&file).await.unwrap(), b"");
    }
}
