//! Server-side message counters: how many vfio-user messages of each kind the client sent.
//!
//! The counts are the transport's cost model: the figures in `docs/PERFORMANCE.md` (messages per
//! HGCM call, per interrupt) come from them. They are lock-free, cumulative over the server's
//! life, and read as a [`MessageCounts`] snapshot; two snapshots subtract to the traffic between
//! them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::NUM_REGIONS;
use crate::wire::Command;

const COMMANDS: usize = Command::ALL.len();

/// Live counters, shared by the relay and whoever reports them.
#[derive(Debug, Default)]
pub struct MessageCounters {
    commands: [AtomicU64; COMMANDS],
    unknown: AtomicU64,
    region_reads: [AtomicU64; NUM_REGIONS],
    region_writes: [AtomicU64; NUM_REGIONS],
    refused: AtomicU64,
    failed: AtomicU64,
}

impl MessageCounters {
    /// Counts one received message with command number `raw`.
    pub(crate) fn count_command(&self, raw: u16) {
        match Command::from_raw(raw) {
            Some(command) => bump(&self.commands[command.index()]),
            None => bump(&self.unknown),
        }
    }

    /// Counts a region read (`write == false`) or write of region `region`.
    pub(crate) fn count_region_access(&self, region: u32, write: bool) {
        let table = if write {
            &self.region_writes
        } else {
            &self.region_reads
        };
        if let Some(counter) = usize::try_from(region).ok().and_then(|i| table.get(i)) {
            bump(counter);
        }
    }

    /// Counts a message refused before it reached the device.
    pub(crate) fn count_refused(&self) {
        bump(&self.refused);
    }

    /// Counts a message the device answered with an error.
    pub(crate) fn count_failed(&self) {
        bump(&self.failed);
    }

    /// The current values.
    pub fn snapshot(&self) -> MessageCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MessageCounts {
            commands: self.commands.each_ref().map(load),
            unknown: load(&self.unknown),
            region_reads: self.region_reads.each_ref().map(load),
            region_writes: self.region_writes.each_ref().map(load),
            refused: load(&self.refused),
            failed: load(&self.failed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of [`MessageCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    commands: [u64; COMMANDS],
    unknown: u64,
    region_reads: [u64; NUM_REGIONS],
    region_writes: [u64; NUM_REGIONS],
    refused: u64,
    failed: u64,
}

impl MessageCounts {
    /// Messages received with `command`.
    pub fn command(&self, command: Command) -> u64 {
        self.commands[command.index()]
    }

    /// Messages with a command number the protocol does not define.
    pub fn unknown(&self) -> u64 {
        self.unknown
    }

    /// All messages received.
    pub fn total(&self) -> u64 {
        self.commands.iter().sum::<u64>() + self.unknown
    }

    /// Region reads of region `region` (vfio-pci numbering: 0 = BAR0, 7 = config space).
    pub fn region_reads(&self, region: u32) -> u64 {
        usize::try_from(region)
            .ok()
            .and_then(|i| self.region_reads.get(i).copied())
            .unwrap_or(0)
    }

    /// Region writes of region `region`.
    pub fn region_writes(&self, region: u32) -> u64 {
        usize::try_from(region)
            .ok()
            .and_then(|i| self.region_writes.get(i).copied())
            .unwrap_or(0)
    }

    /// Messages refused before they reached the device (malformed, out of range, unsupported).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Messages the device answered with an error.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// The traffic between `earlier` and `self` (counters only grow).
    pub fn since(&self, earlier: &MessageCounts) -> MessageCounts {
        let sub = |a: u64, b: u64| a.saturating_sub(b);
        MessageCounts {
            commands: std::array::from_fn(|i| sub(self.commands[i], earlier.commands[i])),
            unknown: sub(self.unknown, earlier.unknown),
            region_reads: std::array::from_fn(|i| {
                sub(self.region_reads[i], earlier.region_reads[i])
            }),
            region_writes: std::array::from_fn(|i| {
                sub(self.region_writes[i], earlier.region_writes[i])
            }),
            refused: sub(self.refused, earlier.refused),
            failed: sub(self.failed, earlier.failed),
        }
    }
}

impl fmt::Display for MessageCounts {
    /// One line: the total, then every non-zero count as `name=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "messages={}", self.total())?;
        for command in Command::ALL {
            let count = self.command(command);
            if count > 0 {
                write!(f, " {}={count}", command.name())?;
            }
        }
        for (name, table) in [("read", &self.region_reads), ("write", &self.region_writes)] {
            for (region, &count) in table.iter().enumerate() {
                if count > 0 {
                    write!(f, " {name}[{}]={count}", crate::layout::region_name(region))?;
                }
            }
        }
        for (name, count) in [
            ("unknown", self.unknown),
            ("refused", self.refused),
            ("failed", self.failed),
        ] {
            if count > 0 {
                write!(f, " {name}={count}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_by_command() {
        let counters = MessageCounters::default();
        counters.count_command(Command::RegionWrite.raw());
        counters.count_command(Command::RegionWrite.raw());
        counters.count_command(Command::SetIrqs.raw());
        counters.count_command(99);

        let counts = counters.snapshot();

        assert_eq!(counts.command(Command::RegionWrite), 2);
        assert_eq!(counts.command(Command::SetIrqs), 1);
        assert_eq!(counts.unknown(), 1);
        assert_eq!(counts.total(), 4);
    }

    #[test]
    fn region_accesses_are_counted_per_region_and_direction() {
        let counters = MessageCounters::default();
        counters.count_region_access(0, true);
        counters.count_region_access(7, false);
        counters.count_region_access(1000, false);

        let counts = counters.snapshot();

        assert_eq!(counts.region_writes(0), 1);
        assert_eq!(counts.region_reads(0), 0);
        assert_eq!(counts.region_reads(7), 1);
        assert_eq!(counts.region_reads(1000), 0);
    }

    #[test]
    fn since_gives_the_traffic_between_two_snapshots() {
        let counters = MessageCounters::default();
        counters.count_command(Command::RegionRead.raw());
        let before = counters.snapshot();
        counters.count_command(Command::RegionRead.raw());
        counters.count_refused();

        let delta = counters.snapshot().since(&before);

        assert_eq!(delta.command(Command::RegionRead), 1);
        assert_eq!(delta.refused(), 1);
        assert_eq!(delta.total(), 1);
    }

    #[test]
    fn summary_line_lists_only_non_zero_counts() {
        let counters = MessageCounters::default();
        counters.count_command(Command::RegionWrite.raw());
        counters.count_region_access(0, true);
        counters.count_failed();

        let line = counters.snapshot().to_string();

        assert_eq!(line, "messages=1 region_write=1 write[bar0]=1 failed=1");
    }
}
