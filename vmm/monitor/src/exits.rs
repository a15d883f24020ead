//! VM exit counters: how often the guest left KVM, and why. They give the exits-per-HGCM-call and
//! exits-per-interrupt figures, and are cheap enough to be always on (one relaxed atomic add per exit).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a vCPU left KVM, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// The serial port.
    Serial,
    /// The PCI configuration ports.
    PciConfig,
    /// A VMMDev request written to BAR0 (HGCM or not).
    VmmDevRequest,
    /// The fast acknowledge read of BAR0+8.
    VmmDevFastAck,
    /// Any other access to BAR0 or the backdoor log port.
    VmmDevOther,
    /// A port nobody claims.
    OtherPort,
    /// A memory access outside RAM and the mapped VMMDev RAM.
    Mmio,
    /// An instruction KVM could not emulate (handled or not).
    EmulationFailure,
    /// Anything else (interrupted runs, system events).
    Other,
}

const KINDS: usize = 9;

/// The request types counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// HGCM call (32- or 64-bit).
    HgcmCall,
    /// AcknowledgeEvents, sent by every interrupt handler.
    AcknowledgeEvents,
    /// Anything else.
    Other,
}

/// The counters, shared by the vCPU threads.
#[derive(Debug, Default)]
pub struct ExitCounters {
    by_kind: [AtomicU64; KINDS],
    hgcm_calls: AtomicU64,
    acknowledges: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitSnapshot {
    /// Exits by kind, in [`ExitKind`] order.
    pub by_kind: [u64; KINDS],
    /// HGCM call requests written.
    pub hgcm_calls: u64,
    /// AcknowledgeEvents requests written plus fast acknowledge reads: one per interrupt handled.
    pub acknowledges: u64,
}

impl ExitCounters {
    /// Counts one exit.
    pub fn count(&self, kind: ExitKind) {
        self.by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        if kind == ExitKind::VmmDevFastAck {
            self.acknowledges.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one request written to the request port.
    pub fn count_request(&self, kind: RequestKind) {
        self.count(ExitKind::VmmDevRequest);
        match kind {
            RequestKind::HgcmCall => self.hgcm_calls.fetch_add(1, Ordering::Relaxed),
            RequestKind::AcknowledgeEvents => self.acknowledges.fetch_add(1, Ordering::Relaxed),
            RequestKind::Other => 0,
        };
    }

    /// The counters now.
    pub fn snapshot(&self) -> ExitSnapshot {
        let mut by_kind = [0; KINDS];
        for (slot, counter) in by_kind.iter_mut().zip(&self.by_kind) {
            *slot = counter.load(Ordering::Relaxed);
        }
        ExitSnapshot {
            by_kind,
            hgcm_calls: self.hgcm_calls.load(Ordering::Relaxed),
            acknowledges: self.acknowledges.load(Ordering::Relaxed),
        }
    }
}

impl ExitSnapshot {
    /// All exits.
    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }

    /// Exits of one kind.
    pub fn of(&self, kind: ExitKind) -> u64 {
        self.by_kind[kind as usize]
    }
}

impl fmt::Display for ExitSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exits={} serial={} pci_config={} vmmdev_request={} vmmdev_fast_ack={} vmmdev_other={} \
             other_port={} mmio={} emulation_failure={} other={} hgcm_calls={} acknowledges={}",
            self.total(),
            self.of(ExitKind::Serial),
            self.of(ExitKind::PciConfig),
            self.of(ExitKind::VmmDevRequest),
            self.of(ExitKind::VmmDevFastAck),
            self.of(ExitKind::VmmDevOther),
            self.of(ExitKind::OtherPort),
            self.of(ExitKind::Mmio),
            self.of(ExitKind::EmulationFailure),
            self.of(ExitKind::Other),
            self.hgcm_calls,
            self.acknowledges
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_as_request_port_exits_and_by_type() {
        let counters = ExitCounters::default();
        counters.count_request(RequestKind::HgcmCall);
        counters.count_request(RequestKind::AcknowledgeEvents);
        counters.count_request(RequestKind::Other);
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.of(ExitKind::VmmDevRequest), 3);
        assert_eq!((snapshot.hgcm_calls, snapshot.acknowledges), (1, 1));
    }

    #[test]
    fn fast_acknowledge_reads_count_as_acknowledges() {
        let counters = ExitCounters::default();
        counters.count(ExitKind::VmmDevFastAck);
        assert_eq!(counters.snapshot().acknowledges, 1);
    }

    #[test]
    fn summary_line_names_every_counter() {
        let counters = ExitCounters::default();
        counters.count(ExitKind::Serial);
        let line = counters.snapshot().to_string();
        assert!(line.starts_with("exits=1 serial=1 "), "{line}");
        assert!(line.ends_with("hgcm_calls=0 acknowledges=0"), "{line}");
    }
}
