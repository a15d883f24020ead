//! The property store and VirtualBox's write rules.
//!
//! A write is decided in two steps: [`Store::plan_set`] / [`Store::plan_delete`] check the rules
//! against the current store and return a [`Decision`] without changing anything; the caller
//! then makes the change durable (see `persist`) and only then [`Store::apply`]s it. So a change
//! that cannot be persisted is never visible, and a change the guest saw succeed is on disk.
//!
//! The rules (guest-properties reference §3.2, `checkPermission` / `checkHostReserved` order):
//! 1. the *existing* property's flags: RDONLYGUEST refuses guest writes and deletes, RDONLYHOST
//!    host ones (`VERR_PERMISSION_DENIED`);
//! 2. the global RDONLYGUEST flag turns every other guest write or delete of an existing
//!    property into a successful no-op (`VINF_PERMISSION_DENIED`);
//! 3. names under a host-reserved prefix cannot be set by the guest at all; the host's sets there
//!    gain RDONLYGUEST;
//! 4. a set replaces value, flags and timestamp; creating a property beyond the count limit is
//!    refused (`VERR_TOO_MUCH_DATA`); deleting a missing property succeeds and does nothing.

use std::collections::BTreeMap;

use vmmdev_protocol::services::guest_props::{HOST_RESERVED_PREFIXES, PropertyFlags};
use vmmdev_protocol::status::Status;

use crate::clock::Clock;

/// One property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The name (case-sensitive).
    pub name: String,
    /// The value (possibly empty).
    pub value: String,
    /// Nanoseconds since the epoch of the last change.
    pub timestamp: u64,
    /// The flags.
    pub flags: PropertyFlags,
}

impl Property {
    /// Whether the property is dropped at power-off (TRANSIENT or TRANSRESET) and never stored.
    pub fn is_transient(&self) -> bool {
        self.flags
            .intersects(PropertyFlags::TRANSIENT | PropertyFlags::TRANSRESET)
    }

    /// The flags in VirtualBox's text form.
    pub fn flags_text(&self) -> String {
        render_flags(self.flags)
    }
}

/// `flags` in VirtualBox's text form. Stored flags never carry unknown bits (they come from
/// the parser or from `PropertyFlags` constants), so nothing is lost by ignoring them.
pub fn render_flags(flags: PropertyFlags) -> String {
    PropertyFlags::from_bits_truncate(flags.bits())
        .render()
        .map(|text| text.to_string())
        .unwrap_or_default()
}

/// Who asks for a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A guest call.
    Guest,
    /// A host call (the embedder) or the service itself.
    Host,
}

/// Why a write was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A read-only flag of the property, or a host-reserved name, forbids the change.
    #[error("property {0:?} is read-only for this caller")]
    PermissionDenied(String),
    /// Creating the property would exceed the property count limit.
    #[error("the store already holds its limit of {0} properties")]
    TooManyProperties(usize),
}

impl StoreError {
    /// The status VirtualBox answers this with.
    pub fn status(&self) -> Status {
        match self {
            Self::PermissionDenied(_) => Status::VERR_PERMISSION_DENIED,
            Self::TooManyProperties(_) => Status::VERR_TOO_MUCH_DATA,
        }
    }
}

/// A change to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Create or replace this property.
    Set(Property),
    /// Delete the property `name`; `timestamp` dates the deletion event.
    Delete {
        /// The property to delete.
        name: String,
        /// When it was deleted.
        timestamp: u64,
    },
}

impl Change {
    /// The name of the property concerned.
    pub fn name(&self) -> &str {
        match self {
            Self::Set(property) => &property.name,
            Self::Delete { name, .. } => name,
        }
    }
}

/// The outcome of planning a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Make this change.
    Change(Change),
    /// Nothing to do, and that is a success (delete of a missing property).
    Nothing,
    /// The guest may not write while the store is globally read-only for it: a success status
    /// (`VINF_PERMISSION_DENIED`), nothing changed.
    GuestReadOnly,
}

/// Whether `name` lies in a namespace only the host may write.
pub fn is_host_reserved(name: &str) -> bool {
    HOST_RESERVED_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The properties, ordered by name.
#[derive(Clone, Debug, Default)]
pub struct Store {
    properties: BTreeMap<String, Property>,
    max_properties: usize,
    global_flags: PropertyFlags,
}

impl Store {
    /// An empty store that lets writes create at most `max_properties` properties.
    pub fn new(max_properties: usize) -> Self {
        Store {
            properties: BTreeMap::new(),
            max_properties,
            global_flags: PropertyFlags::NILFLAG,
        }
    }

    /// The property called `name`.
    pub fn get(&self, name: &str) -> Option<&Property> {
        self.properties.get(name)
    }

    /// Every property, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Property> {
        self.properties.values()
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.properties.len()
    }

    /// The global flags (only RDONLYGUEST has an effect).
    pub fn global_flags(&self) -> PropertyFlags {
        self.global_flags
    }

    /// Replaces the global flags.
    pub fn set_global_flags(&mut self, flags: PropertyFlags) {
        self.global_flags = flags;
    }

    /// Rule 1 and 2: may `actor` change or delete a property with `flags`?
    fn check_permission(
        &self,
        name: &str,
        flags: PropertyFlags,
        actor: Actor,
    ) -> Result<Option<Decision>, StoreError> {
        let forbidden = match actor {
            Actor::Guest => PropertyFlags::RDONLYGUEST,
            Actor::Host => PropertyFlags::RDONLYHOST,
        };
        if flags.contains(forbidden) {
            return Err(StoreError::PermissionDenied(name.to_owned()));
        }
        if actor == Actor::Guest && self.global_flags.contains(PropertyFlags::RDONLYGUEST) {
            return Ok(Some(Decision::GuestReadOnly));
        }
        Ok(None)
    }

    /// Plans setting `name` to `value` with `flags` (replacing the old flags entirely).
    pub fn plan_set(
        &self,
        actor: Actor,
        name: &str,
        value: &str,
        mut flags: PropertyFlags,
        clock: &mut Clock,
    ) -> Result<Decision, StoreError> {
        let existing = self.properties.get(name);
        let old_flags = existing.map_or(PropertyFlags::NILFLAG, |p| p.flags);
        if let Some(decision) = self.check_permission(name, old_flags, actor)? {
            return Ok(decision);
        }
        if is_host_reserved(name) {
            match actor {
                Actor::Guest => return Err(StoreError::PermissionDenied(name.to_owned())),
                Actor::Host => flags |= PropertyFlags::RDONLYGUEST,
            }
        }
        if existing.is_none() && self.properties.len() >= self.max_properties {
            return Err(StoreError::TooManyProperties(self.max_properties));
        }
        Ok(Decision::Change(Change::Set(Property {
            name: name.to_owned(),
            value: value.to_owned(),
            timestamp: clock.now(),
            flags,
        })))
    }

    /// Plans deleting `name`.
    pub fn plan_delete(
        &self,
        actor: Actor,
        name: &str,
        clock: &mut Clock,
    ) -> Result<Decision, StoreError> {
        let Some(existing) = self.properties.get(name) else {
            return Ok(Decision::Nothing);
        };
        if let Some(decision) = self.check_permission(name, existing.flags, actor)? {
            return Ok(decision);
        }
        Ok(Decision::Change(Change::Delete {
            name: name.to_owned(),
            timestamp: clock.now(),
        }))
    }

    /// Makes a planned change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Set(property) => {
                self.properties
                    .insert(property.name.clone(), property.clone());
            }
            Change::Delete { name, .. } => {
                self.properties.remove(name);
            }
        }
    }

    /// Inserts or replaces a property without any rule or limit (host bulk load, stored
    /// properties at start, restore). Host-reserved names gain RDONLYGUEST.
    pub fn load(&mut self, mut property: Property) {
        if is_host_reserved(&property.name) {
            property.flags |= PropertyFlags::RDONLYGUEST;
        }
        self.properties.insert(property.name.clone(), property);
    }

    /// Removes every property `pick` selects; returns them.
    pub fn remove_where(&mut self, pick: impl Fn(&Property) -> bool) -> Vec<Property> {
        let names: Vec<String> = self
            .properties
            .values()
            .filter(|p| pick(p))
            .map(|p| p.name.clone())
            .collect();
        names
            .iter()
            .filter_map(|name| self.properties.remove(name))
            .collect()
    }

    /// Whether making `change` alters the set of persistent (non-transient) properties.
    pub fn changes_persistent_set(&self, change: &Change) -> bool {
        let was_persistent = self
            .properties
            .get(change.name())
            .is_some_and(|p| !p.is_transient());
        let becomes_persistent = matches!(change, Change::Set(p) if !p.is_transient());
        was_persistent || becomes_persistent
    }

    /// The persistent properties as they would be after `change` (all of them for `None`), by
    /// name.
    pub fn persistent_after<'a>(
        &'a self,
        change: Option<&'a Change>,
    ) -> impl Iterator<Item = &'a Property> + 'a {
        let changed_name = change.map(Change::name);
        let replacement = match change {
            Some(Change::Set(property)) => Some(property),
            _ => None,
        };
        let kept = self
            .properties
            .values()
            .filter(move |p| Some(p.name.as_str()) != changed_name);
        let mut merged: Vec<&Property> = kept.chain(replacement).collect();
        merged.sort_by(|a, b| a.name.cmp(&b.name));
        merged.into_iter().filter(|p| !p.is_transient())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::new(|| 100)
    }

    fn set(store: &mut Store, actor: Actor, name: &str, value: &str, flags: PropertyFlags) {
        match store.plan_set(actor, name, value, flags, &mut clock()) {
            Ok(Decision::Change(change)) => store.apply(&change),
            other => panic!("set {name} refused: {other:?}"),
        }
    }

    fn with(name: &str, flags: PropertyFlags) -> Store {
        let mut store = Store::new(256);
        set(&mut store, Actor::Host, name, "old", flags);
        store
    }

    #[test]
    fn guest_set_creates_a_property_with_the_given_flags() {
        let mut store = Store::new(256);
        set(
            &mut store,
            Actor::Guest,
            "/a",
            "1",
            PropertyFlags::TRANSIENT,
        );
        let property = store.get("/a").expect("created");
        assert_eq!(property.value, "1");
        assert_eq!(property.flags, PropertyFlags::TRANSIENT);
        assert_eq!(property.timestamp, 100);
    }

    #[test]
    fn set_without_flags_clears_the_old_flags() {
        let mut store = with("/a", PropertyFlags::TRANSIENT);
        set(&mut store, Actor::Guest, "/a", "2", PropertyFlags::NILFLAG);
        assert_eq!(
            store.get("/a").map(|p| p.flags),
            Some(PropertyFlags::NILFLAG)
        );
    }

    #[test]
    fn guest_cannot_change_or_delete_rdonlyguest_property() {
        let store = with("/a", PropertyFlags::RDONLYGUEST);
        let set = store.plan_set(
            Actor::Guest,
            "/a",
            "x",
            PropertyFlags::NILFLAG,
            &mut clock(),
        );
        assert_eq!(set.unwrap_err().status(), Status::VERR_PERMISSION_DENIED);
        let del = store.plan_delete(Actor::Guest, "/a", &mut clock());
        assert_eq!(del.unwrap_err().status(), Status::VERR_PERMISSION_DENIED);
    }

    #[test]
    fn host_may_change_rdonlyguest_property() {
        let store = with("/a", PropertyFlags::RDONLYGUEST);
        let set = store.plan_set(Actor::Host, "/a", "x", PropertyFlags::NILFLAG, &mut clock());
        assert!(matches!(set, Ok(Decision::Change(_))));
    }

    #[test]
    fn host_cannot_change_or_delete_rdonlyhost_property() {
        let store = with("/a", PropertyFlags::RDONLYHOST);
        let set = store.plan_set(Actor::Host, "/a", "x", PropertyFlags::NILFLAG, &mut clock());
        assert_eq!(set.unwrap_err().status(), Status::VERR_PERMISSION_DENIED);
        let del = store.plan_delete(Actor::Host, "/a", &mut clock());
        assert_eq!(del.unwrap_err().status(), Status::VERR_PERMISSION_DENIED);
    }

    #[test]
    fn guest_may_change_and_delete_rdonlyhost_property() {
        let store = with("/a", PropertyFlags::RDONLYHOST);
        let set = store.plan_set(
            Actor::Guest,
            "/a",
            "x",
            PropertyFlags::NILFLAG,
            &mut clock(),
        );
        assert!(matches!(set, Ok(Decision::Change(_))));
        let del = store.plan_delete(Actor::Guest, "/a", &mut clock());
        assert!(matches!(del, Ok(Decision::Change(Change::Delete { .. }))));
    }

    #[test]
    fn readonly_property_refuses_both_sides() {
        let store = with("/a", PropertyFlags::READONLY);
        for actor in [Actor::Guest, Actor::Host] {
            let set = store.plan_set(actor, "/a", "x", PropertyFlags::NILFLAG, &mut clock());
            assert!(set.is_err(), "{actor:?}");
        }
    }

    #[test]
    fn guest_can_lock_the_host_out_with_rdonlyhost() {
        let mut store = Store::new(256);
        set(
            &mut store,
            Actor::Guest,
            "/g",
            "v",
            PropertyFlags::RDONLYHOST,
        );
        let del = store.plan_delete(Actor::Host, "/g", &mut clock());
        assert_eq!(del.unwrap_err().status(), Status::VERR_PERMISSION_DENIED);
    }

    #[test]
    fn global_rdonlyguest_makes_guest_writes_successful_no_ops() {
        let mut store = with("/a", PropertyFlags::NILFLAG);
        store.set_global_flags(PropertyFlags::RDONLYGUEST);
        let set = store.plan_set(
            Actor::Guest,
            "/a",
            "x",
            PropertyFlags::NILFLAG,
            &mut clock(),
        );
        assert_eq!(set, Ok(Decision::GuestReadOnly));
        let create = store.plan_set(
            Actor::Guest,
            "/new",
            "x",
            PropertyFlags::NILFLAG,
            &mut clock(),
        );
        assert_eq!(create, Ok(Decision::GuestReadOnly));
        let del = store.plan_delete(Actor::Guest, "/a", &mut clock());
        assert_eq!(del, Ok(Decision::GuestReadOnly));
    }

    #[test]
    fn global_rdonlyguest_still_reports_property_read_only_as_error() {
        let mut store = with("/a", PropertyFlags::RDONLYGUEST);
        store.set_global_flags(PropertyFlags::RDONLYGUEST);
        let set = store.plan_set(
            Actor::Guest,
            "/a",
            "x",
            PropertyFlags::NILFLAG,
            &mut clock(),
        );
        assert_eq!(set.unwrap_err().status(), Status::VERR_PERMISSION_DENIED);
    }

    #[test]
    fn global_rdonlyguest_does_not_affect_the_host() {
        let mut store = with("/a", PropertyFlags::NILFLAG);
        store.set_global_flags(PropertyFlags::RDONLYGUEST);
        let set = store.plan_set(Actor::Host, "/a", "x", PropertyFlags::NILFLAG, &mut clock());
        assert!(matches!(set, Ok(Decision::Change(_))));
    }

    #[test]
    fn guest_cannot_set_host_reserved_names_even_when_missing() {
        let store = Store::new(256);
        for name in [
            "/VirtualBox/HostInfo/VBoxVer",
            "/VirtualBox/GuestAdd/VBoxService/--timesync-interval",
            "/VirtualBox/VMInfo/ResetCounter",
        ] {
            let set = store.plan_set(
                Actor::Guest,
                name,
                "x",
                PropertyFlags::NILFLAG,
                &mut clock(),
            );
            assert_eq!(
                set.unwrap_err().status(),
                Status::VERR_PERMISSION_DENIED,
                "{name}"
            );
        }
    }

    #[test]
    fn guest_may_set_names_that_only_resemble_reserved_prefixes() {
        let store = Store::new(256);
        let set = store.plan_set(
            Actor::Guest,
            "/VirtualBox/GuestInfo/OS/Product",
            "Linux",
            PropertyFlags::NILFLAG,
            &mut clock(),
        );
        assert!(matches!(set, Ok(Decision::Change(_))));
    }

    #[test]
    fn host_set_of_reserved_name_gains_rdonlyguest() {
        let mut store = Store::new(256);
        set(
            &mut store,
            Actor::Host,
            "/VirtualBox/HostInfo/X",
            "1",
            PropertyFlags::TRANSIENT,
        );
        assert_eq!(
            store.get("/VirtualBox/HostInfo/X").map(|p| p.flags),
            Some(PropertyFlags::TRANSIENT | PropertyFlags::RDONLYGUEST)
        );
    }

    #[test]
    fn creating_beyond_the_limit_is_too_much_data_but_replacing_is_not() {
        let mut store = Store::new(2);
        set(&mut store, Actor::Guest, "/a", "1", PropertyFlags::NILFLAG);
        set(&mut store, Actor::Guest, "/b", "1", PropertyFlags::NILFLAG);
        let third = store.plan_set(
            Actor::Guest,
            "/c",
            "1",
            PropertyFlags::NILFLAG,
            &mut clock(),
        );
        assert_eq!(third.unwrap_err().status(), Status::VERR_TOO_MUCH_DATA);
        let replace = store.plan_set(
            Actor::Guest,
            "/a",
            "2",
            PropertyFlags::NILFLAG,
            &mut clock(),
        );
        assert!(matches!(replace, Ok(Decision::Change(_))));
    }

    #[test]
    fn deleting_a_missing_property_is_nothing() {
        let store = Store::new(256);
        assert_eq!(
            store.plan_delete(Actor::Guest, "/missing", &mut clock()),
            Ok(Decision::Nothing)
        );
    }

    #[test]
    fn load_ignores_the_count_limit_and_marks_reserved_names() {
        let mut store = Store::new(0);
        store.load(Property {
            name: "/VirtualBox/GuestAdd/PAM/CredsWait".into(),
            value: "1".into(),
            timestamp: 5,
            flags: PropertyFlags::NILFLAG,
        });
        assert_eq!(
            store
                .get("/VirtualBox/GuestAdd/PAM/CredsWait")
                .map(|p| p.flags),
            Some(PropertyFlags::RDONLYGUEST)
        );
    }

    #[test]
    fn transient_changes_do_not_touch_the_persistent_set() {
        let store = with("/t", PropertyFlags::TRANSIENT);
        let change = Change::Set(Property {
            name: "/t".into(),
            value: "2".into(),
            timestamp: 1,
            flags: PropertyFlags::TRANSRESET,
        });
        assert!(!store.changes_persistent_set(&change));
        let delete = Change::Delete {
            name: "/t".into(),
            timestamp: 1,
        };
        assert!(!store.changes_persistent_set(&delete));
    }

    #[test]
    fn making_a_property_transient_touches_the_persistent_set() {
        let store = with("/p", PropertyFlags::NILFLAG);
        let change = Change::Set(Property {
            name: "/p".into(),
            value: "2".into(),
            timestamp: 1,
            flags: PropertyFlags::TRANSIENT,
        });
        assert!(store.changes_persistent_set(&change));
        assert_eq!(store.persistent_after(Some(&change)).count(), 0);
    }

    #[test]
    fn persistent_after_includes_the_planned_set_in_name_order() {
        let mut store = Store::new(256);
        set(&mut store, Actor::Guest, "/b", "1", PropertyFlags::NILFLAG);
        set(
            &mut store,
            Actor::Guest,
            "/t",
            "1",
            PropertyFlags::TRANSIENT,
        );
        let change = Change::Set(Property {
            name: "/a".into(),
            value: "new".into(),
            timestamp: 1,
            flags: PropertyFlags::NILFLAG,
        });
        let names: Vec<&str> = store
            .persistent_after(Some(&change))
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["/a", "/b"]);
    }

    #[test]
    fn persistent_after_leaves_out_a_planned_delete() {
        let store = with("/a", PropertyFlags::NILFLAG);
        let delete = Change::Delete {
            name: "/a".into(),
            timestamp: 1,
        };
        assert_eq!(store.persistent_after(Some(&delete)).count(), 0);
    }

    #[test]
    fn flags_render_in_virtualbox_order() {
        let property = Property {
            name: "/a".into(),
            value: String::new(),
            timestamp: 0,
            flags: PropertyFlags::TRANSRESET | PropertyFlags::RDONLYGUEST,
        };
        assert_eq!(property.flags_text(), "TRANSIENT, RDONLYGUEST, TRANSRESET");
        assert!(property.is_transient());
    }
}
