//! Runtime state that outlives a config reload: a route's breaker, a
//! cluster's bulkhead, a retry budget. Looked up by (kind, scope, name)
//! when a table is built; reused when its settings are unchanged, made
//! fresh otherwise. Entries no table uses any more are dropped.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Whose state it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A route's own.
    Route,
    /// Shared by every route to a cluster.
    Cluster,
}

impl Scope {
    /// The `scope` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Scope::Route => "route",
            Scope::Cluster => "cluster",
        }
    }
}

/// The kind of a circuit breaker's entry.
pub const BREAKER: &str = "circuit_breaker";
/// The kind of a bulkhead's entry.
pub const BULKHEAD: &str = "bulkhead";

type Key = (&'static str, Scope, String);
type Entry = (Box<dyn Any + Send + Sync>, Arc<dyn Any + Send + Sync>, u64);

/// The store. Locked only while a table is built, never per request.
#[derive(Default)]
pub struct StateStore {
    entries: Mutex<(u64, HashMap<Key, Entry>)>,
}

impl StateStore {
    /// The state of `kind` for `(scope, name)`: the existing one when it was
    /// made from equal `settings`, else a new one from `make`.
    pub fn get_or_make<S, T>(
        &self,
        kind: &'static str,
        scope: Scope,
        name: &str,
        settings: &S,
        make: impl FnOnce() -> T,
    ) -> Arc<T>
    where
        S: PartialEq + Clone + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        let mut guard = self.entries.lock().expect("state store poisoned");
        let (generation, map) = &mut *guard;
        let key = (kind, scope, name.to_owned());
        if let Some((old_settings, state, used)) = map.get_mut(&key) {
            if old_settings.downcast_ref::<S>() == Some(settings) {
                if let Ok(state) = Arc::clone(state).downcast::<T>() {
                    *used = *generation;
                    return state;
                }
            }
        }
        let state = Arc::new(make());
        map.insert(key, (Box::new(settings.clone()), state.clone() as Arc<dyn Any + Send + Sync>, *generation));
        state
    }

    /// Every live state of `kind`, with its scope and name, sorted.
    pub fn all<T: Send + Sync + 'static>(&self, kind: &'static str) -> Vec<(Scope, String, Arc<T>)> {
        let guard = self.entries.lock().expect("state store poisoned");
        let mut out: Vec<(Scope, String, Arc<T>)> = guard
            .1
            .iter()
            .filter(|((k, _, _), _)| *k == kind)
            .filter_map(|((_, scope, name), (_, state, _))| {
                Some((*scope, name.clone(), Arc::clone(state).downcast::<T>().ok()?))
            })
            .collect();
        out.sort_by(|a, b| (a.0.label(), &a.1).cmp(&(b.0.label(), &b.1)));
        out
    }

    /// Starts building a new table: entries not looked up before [`sweep`]
    /// are dropped then.
    ///
    /// [`sweep`]: StateStore::sweep
    pub fn begin(&self) {
        self.entries.lock().expect("state store poisoned").0 += 1;
    }

    /// Drops entries the last build did not use, and says which.
    pub fn sweep(&self) -> Vec<(&'static str, Scope, String)> {
        let mut guard = self.entries.lock().expect("state store poisoned");
        let (generation, map) = &mut *guard;
        let g = *generation;
        let gone: Vec<_> = map.iter().filter(|(_, (_, _, used))| *used != g).map(|(k, _)| k.clone()).collect();
        for k in &gone {
            map.remove(k);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same settings -> same state; changed settings -> fresh state; unused
    /// entries go at the sweep.
    #[test]
    fn keeps_state_while_settings_hold() {
        let store = StateStore::default();
        store.begin();
        let a = store.get_or_make("breaker", Scope::Route, "r", &1u32, || 10u64);
        store.sweep();
        store.begin();
        let b = store.get_or_make("breaker", Scope::Route, "r", &1u32, || 20u64);
        assert!(Arc::ptr_eq(&a, &b));
        let c = store.get_or_make("breaker", Scope::Route, "r", &2u32, || 30u64);
        assert_eq!(*c, 30);
        store.sweep();
        store.begin();
        store.sweep();
        let d = store.get_or_make("breaker", Scope::Route, "r", &2u32, || 40u64);
        assert_eq!(*d, 40);
    }
}
