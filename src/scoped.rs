//! A thread-local value set for a scope.

use std::cell::Cell;
use std::thread::LocalKey;

/// Sets a thread-local `Cell` for as long as it lives, and restores what
/// it held before when it drops, even if what ran in the scope panicked
/// (the timeout's cutting-off flag and wake-up collection, the clock's
/// reading per poll).
pub(crate) struct Scoped<T: Copy + 'static> {
    cell: &'static LocalKey<Cell<T>>,
    before: T,
}

impl<T: Copy + 'static> Scoped<T> {
    pub(crate) fn set(cell: &'static LocalKey<Cell<T>>, value: T) -> Self {
        Scoped { cell, before: cell.with(|c| c.replace(value)) }
    }
}

impl<T: Copy + 'static> Drop for Scoped<T> {
    fn drop(&mut self) {
        self.cell.with(|c| c.set(self.before));
    }
}
