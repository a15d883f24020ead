//! The guest properties a subservice owns on the host, and bringing them to a new set of values
//! with as few writes as possible.
//!
//! [`Published`] remembers what the host holds for every name the subservice owns. Each round
//! the subservice computes the complete set of values it wants ([`Desired`]);
//! [`Published::publish`] writes the names whose value or flags differ, then deletes the names
//! that are no longer wanted (stale `Net/<n>` entries of an interface that went away). A write
//! that fails leaves that name's record as it was, so the next round tries again.

use std::collections::BTreeMap;

use vmmdev_guest_ioctl::GuestTransport;
use vmmdev_guest_ioctl::guest_props::{GuestPropClient, GuestPropError, Property, PropertyFlags};

/// One property's value and flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The value.
    pub text: String,
    /// The flags it is written with.
    pub flags: PropertyFlags,
}

impl Value {
    /// A value without flags.
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            flags: PropertyFlags::empty(),
        }
    }

    /// A value with `flags`.
    pub fn with_flags(text: impl Into<String>, flags: PropertyFlags) -> Self {
        Self {
            text: text.into(),
            flags,
        }
    }
}

/// Every property a subservice wants on the host, by name.
pub type Desired = BTreeMap<String, Value>;

/// Where writes go: the guest-properties service, or a test's record.
pub trait PropertySink {
    /// Creates or replaces `name`.
    fn set(&mut self, name: &str, value: &Value) -> Result<(), GuestPropError>;
    /// Deletes `name` (deleting a missing property succeeds).
    fn delete(&mut self, name: &str) -> Result<(), GuestPropError>;
}

impl<T: GuestTransport> PropertySink for GuestPropClient<'_, T> {
    /// A value without flags is written with SET_PROP_VALUE's two-parameter form, as VirtualBox
    /// writes its fixed properties; one with flags with the three-parameter form.
    fn set(&mut self, name: &str, value: &Value) -> Result<(), GuestPropError> {
        if value.flags.is_empty() {
            self.set_value(name, &value.text)
        } else {
            GuestPropClient::set(self, name, &value.text, value.flags)
        }
    }

    fn delete(&mut self, name: &str) -> Result<(), GuestPropError> {
        GuestPropClient::delete(self, name)
    }
}

/// What one [`Published::publish`] did.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Names written.
    pub written: usize,
    /// Names deleted.
    pub deleted: usize,
    /// Names whose write or delete failed, with the error; they are retried next round.
    pub failed: Vec<(String, GuestPropError)>,
}

/// The properties this subservice has on the host.
#[derive(Debug, Default)]
pub struct Published {
    on_host: BTreeMap<String, Value>,
}

impl Published {
    /// Nothing published yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes over properties an earlier run left on the host (found by enumeration), so that
    /// unchanged ones are not rewritten and stale ones are deleted by the next
    /// [`publish`](Self::publish).
    pub fn adopt(&mut self, leftovers: impl IntoIterator<Item = Property>) {
        for property in leftovers {
            self.on_host.insert(
                property.name,
                Value::with_flags(property.value, property.flags),
            );
        }
    }

    /// Brings the host to `desired`: writes what differs (in name order), then deletes what is
    /// no longer wanted.
    pub fn publish(&mut self, sink: &mut dyn PropertySink, desired: &Desired) -> PublishReport {
        let mut report = PublishReport::default();
        for (name, value) in desired {
            if self.on_host.get(name) == Some(value) {
                continue;
            }
            match sink.set(name, value) {
                Ok(()) => {
                    self.on_host.insert(name.clone(), value.clone());
                    report.written += 1;
                }
                Err(error) => report.failed.push((name.clone(), error)),
            }
        }
        let stale: Vec<String> = self
            .on_host
            .keys()
            .filter(|name| !desired.contains_key(*name))
            .cloned()
            .collect();
        for name in stale {
            match sink.delete(&name) {
                Ok(()) => {
                    self.on_host.remove(&name);
                    report.deleted += 1;
                }
                Err(error) => report.failed.push((name, error)),
            }
        }
        report
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sink that records every call and can refuse one name.
    #[derive(Debug, Default)]
    pub(crate) struct RecordingSink {
        pub(crate) calls: Vec<String>,
        pub(crate) refuse: Option<String>,
    }

    impl PropertySink for RecordingSink {
        fn set(&mut self, name: &str, value: &Value) -> Result<(), GuestPropError> {
            if self.refuse.as_deref() == Some(name) {
                return Err(GuestPropError::InvalidArgument {
                    what: "name",
                    reason: "refused by the test",
                });
            }
            self.calls.push(format!("set {name}={}", value.text));
            Ok(())
        }

        fn delete(&mut self, name: &str) -> Result<(), GuestPropError> {
            self.calls.push(format!("delete {name}"));
            Ok(())
        }
    }

    fn desired(entries: &[(&str, &str)]) -> Desired {
        entries
            .iter()
            .map(|(name, text)| ((*name).to_owned(), Value::plain(*text)))
            .collect()
    }

    #[test]
    fn first_publish_writes_everything_in_name_order() {
        let (mut published, mut sink) = (Published::new(), RecordingSink::default());
        let report = published.publish(&mut sink, &desired(&[("/B", "2"), ("/A", "1")]));
        assert_eq!(sink.calls, ["set /A=1", "set /B=2"]);
        assert_eq!((report.written, report.deleted), (2, 0));
    }

    #[test]
    fn unchanged_values_are_not_written_again() {
        let (mut published, mut sink) = (Published::new(), RecordingSink::default());
        published.publish(&mut sink, &desired(&[("/A", "1"), ("/B", "2")]));
        sink.calls.clear();
        let report = published.publish(&mut sink, &desired(&[("/A", "1"), ("/B", "3")]));
        assert_eq!(sink.calls, ["set /B=3"]);
        assert_eq!(report.written, 1);
    }

    #[test]
    fn a_changed_flag_alone_rewrites_the_property() {
        let (mut published, mut sink) = (Published::new(), RecordingSink::default());
        published.publish(&mut sink, &desired(&[("/A", "1")]));
        sink.calls.clear();
        let mut flagged = Desired::new();
        flagged.insert(
            "/A".into(),
            Value::with_flags("1", PropertyFlags::TRANSIENT),
        );
        published.publish(&mut sink, &flagged);
        assert_eq!(sink.calls, ["set /A=1"]);
    }

    #[test]
    fn names_no_longer_wanted_are_deleted_after_the_writes() {
        let (mut published, mut sink) = (Published::new(), RecordingSink::default());
        published.publish(
            &mut sink,
            &desired(&[("/Net/0/IP", "a"), ("/Net/1/IP", "b")]),
        );
        sink.calls.clear();
        let report = published.publish(&mut sink, &desired(&[("/Net/0/IP", "c")]));
        assert_eq!(sink.calls, ["set /Net/0/IP=c", "delete /Net/1/IP"]);
        assert_eq!(report.deleted, 1);
    }

    #[test]
    fn adopted_leftovers_are_deleted_unless_wanted_and_kept_when_equal() {
        let (mut published, mut sink) = (Published::new(), RecordingSink::default());
        let leftover = |name: &str, value: &str| Property {
            name: name.into(),
            value: value.into(),
            timestamp: 1,
            flags: PropertyFlags::empty(),
        };
        published.adopt([leftover("/Net/0/IP", "a"), leftover("/Net/7/IP", "old")]);
        published.publish(&mut sink, &desired(&[("/Net/0/IP", "a")]));
        assert_eq!(sink.calls, ["delete /Net/7/IP"]);
    }

    #[test]
    fn a_failed_write_is_retried_next_round() {
        let mut published = Published::new();
        let mut sink = RecordingSink {
            refuse: Some("/A".into()),
            ..RecordingSink::default()
        };
        let report = published.publish(&mut sink, &desired(&[("/A", "1")]));
        assert_eq!(report.failed.len(), 1);
        sink.refuse = None;
        published.publish(&mut sink, &desired(&[("/A", "1")]));
        assert_eq!(sink.calls, ["set /A=1"]);
    }
}
