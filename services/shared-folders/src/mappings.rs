//! The share table: root IDs 0–63, their versions, and the change counter guests wait on.
//!
//! Root IDs are handed out lowest-free-first, so an ID can name a different share after a
//! removal; each slot has a version (incremented whenever the slot is assigned or released) that
//! lets guests and handles detect the reuse. A share the host removes while a guest still has it
//! mapped becomes a *placeholder*: it keeps its ID but every operation on it fails, and it
//! disappears when the last client unmaps it. Every change bumps the table version, which
//! WAIT_FOR_MAPPINGS_CHANGES reports.

use vmmdev_protocol::services::shared_folders::SHFL_MAX_MAPPINGS;

use crate::config::{ShareConfig, names_match};
use crate::share::ShareRoot;

/// Why the host could not change the table.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A share with that name (ignoring case) exists.
    #[error("a share named {0:?} already exists")]
    DuplicateName(String),
    /// All 64 root IDs are in use.
    #[error("all {SHFL_MAX_MAPPINGS} root IDs are in use")]
    TableFull,
    /// No share with that name.
    #[error("no share named {0:?}")]
    NotFound(String),
}

/// One share as the service holds it.
#[derive(Debug)]
pub struct Mapping {
    /// The configuration it was added with.
    pub config: ShareConfig,
    /// The open root; `None` if the host directory was missing when added, or for a
    /// placeholder.
    pub root: Option<ShareRoot>,
    /// Removed by the host while still mapped.
    pub placeholder: bool,
    /// Maps by all clients together.
    pub map_count: u32,
    /// Whether the guest mappers asked for case-sensitive names (set by the first map).
    pub guest_case_sensitive: Option<bool>,
}

impl Mapping {
    /// The root, if the share is usable.
    pub fn usable_root(&self) -> Option<&ShareRoot> {
        if self.placeholder {
            None
        } else {
            self.root.as_ref()
        }
    }
}

/// What REMOVE_MAPPING did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The share is gone and its root ID free.
    Removed,
    /// The share is still mapped; it stays as a placeholder until the last unmap.
    Placeholder,
}

/// The share table.
#[derive(Debug)]
pub struct MappingTable {
    slots: Vec<Option<Mapping>>,
    slot_versions: Vec<u32>,
    version: u32,
}

impl Default for MappingTable {
    fn default() -> Self {
        MappingTable {
            slots: (0..SHFL_MAX_MAPPINGS).map(|_| None).collect(),
            slot_versions: vec![0; SHFL_MAX_MAPPINGS as usize],
            version: 1,
        }
    }
}

impl MappingTable {
    /// The table version (changes with every add, removal and placeholder release).
    pub fn version(&self) -> u32 {
        self.version
    }

    fn changed(&mut self) {
        self.version = self.version.wrapping_add(1).max(1);
    }

    fn bump_slot(&mut self, root: u32) {
        if let Some(version) = self.slot_versions.get_mut(root as usize) {
            *version = version.wrapping_add(1);
        }
    }

    /// The version of a root ID's slot.
    pub fn slot_version(&self, root: u32) -> u32 {
        self.slot_versions.get(root as usize).copied().unwrap_or(0)
    }

    /// Adds a share under the lowest free root ID.
    pub fn add(
        &mut self,
        config: ShareConfig,
        root: Option<ShareRoot>,
    ) -> Result<u32, MappingError> {
        if self.find(&config.name).is_some() {
            return Err(MappingError::DuplicateName(config.name));
        }
        let index = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(MappingError::TableFull)?;
        self.slots[index] = Some(Mapping {
            config,
            root,
            placeholder: false,
            map_count: 0,
            guest_case_sensitive: None,
        });
        // The table has 64 slots, so the index fits.
        let id = index as u32;
        self.bump_slot(id);
        self.changed();
        Ok(id)
    }

    /// Removes the share named `name` (or turns it into a placeholder while mapped).
    pub fn remove(&mut self, name: &str) -> Result<(u32, Removal), MappingError> {
        let id = self
            .find(name)
            .ok_or_else(|| MappingError::NotFound(name.to_owned()))?;
        let Some(mapping) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return Err(MappingError::NotFound(name.to_owned()));
        };
        let removal = if mapping.map_count > 0 {
            mapping.placeholder = true;
            mapping.root = None;
            Removal::Placeholder
        } else {
            self.slots[id as usize] = None;
            self.bump_slot(id);
            Removal::Removed
        };
        self.changed();
        Ok((id, removal))
    }

    /// The root ID of the non-placeholder share named `name` (ignoring case).
    pub fn find(&self, name: &str) -> Option<u32> {
        self.iter()
            .find(|(_, m)| !m.placeholder && names_match(&m.config.name, name))
            .map(|(id, _)| id)
    }

    /// The mapping with this root ID.
    pub fn get(&self, root: u32) -> Option<&Mapping> {
        self.slots.get(root as usize)?.as_ref()
    }

    /// The mapping with this root ID, mutably.
    pub fn get_mut(&mut self, root: u32) -> Option<&mut Mapping> {
        self.slots.get_mut(root as usize)?.as_mut()
    }

    /// Frees a placeholder nobody maps any more; returns whether it did.
    pub fn release_if_unused_placeholder(&mut self, root: u32) -> bool {
        let unused = self
            .get(root)
            .is_some_and(|m| m.placeholder && m.map_count == 0);
        if unused {
            self.slots[root as usize] = None;
            self.bump_slot(root);
            self.changed();
        }
        unused
    }

    /// Every mapping with its root ID, in ID order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Mapping)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| slot.as_ref().map(|m| (id as u32, m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(name: &str) -> ShareConfig {
        ShareConfig::new(name, "/nonexistent")
    }

    #[test]
    fn ids_are_assigned_lowest_free_first_and_reused() {
        let mut table = MappingTable::default();
        assert_eq!(table.add(share("a"), None), Ok(0));
        assert_eq!(table.add(share("b"), None), Ok(1));
        assert_eq!(table.remove("a"), Ok((0, Removal::Removed)));
        assert_eq!(table.add(share("c"), None), Ok(0));
    }

    #[test]
    fn reused_slot_has_a_new_version() {
        let mut table = MappingTable::default();
        table.add(share("a"), None).expect("added");
        let before = table.slot_version(0);
        table.remove("a").expect("removed");
        table.add(share("b"), None).expect("added");
        assert_ne!(table.slot_version(0), before);
    }

    #[test]
    fn duplicate_names_are_refused_ignoring_case() {
        let mut table = MappingTable::default();
        table.add(share("Data"), None).expect("added");
        assert_eq!(
            table.add(share("DATA"), None),
            Err(MappingError::DuplicateName("DATA".into()))
        );
    }

    #[test]
    fn table_holds_sixty_four_shares() {
        let mut table = MappingTable::default();
        for i in 0..64 {
            table.add(share(&format!("s{i}")), None).expect("room");
        }
        assert_eq!(table.add(share("x"), None), Err(MappingError::TableFull));
    }

    #[test]
    fn mapped_share_becomes_a_placeholder_until_released() {
        let mut table = MappingTable::default();
        table.add(share("a"), None).expect("added");
        table.get_mut(0).expect("mapping").map_count = 1;
        assert_eq!(table.remove("a"), Ok((0, Removal::Placeholder)));
        assert_eq!(table.find("a"), None);
        assert!(table.get(0).is_some());
        table.get_mut(0).expect("mapping").map_count = 0;
        assert!(table.release_if_unused_placeholder(0));
        assert!(table.get(0).is_none());
    }

    #[test]
    fn every_change_bumps_the_table_version() {
        let mut table = MappingTable::default();
        let v0 = table.version();
        table.add(share("a"), None).expect("added");
        let v1 = table.version();
        table.remove("a").expect("removed");
        assert!(v0 != v1 && v1 != table.version());
    }

    #[test]
    fn removing_an_unknown_share_fails() {
        let mut table = MappingTable::default();
        assert_eq!(table.remove("x"), Err(MappingError::NotFound("x".into())));
    }
}
