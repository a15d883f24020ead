//! The guest's network interfaces as `/VirtualBox/GuestInfo/Net/*` properties.
//!
//! [`interfaces`] reads every interface with `getifaddrs(3)` (netlink; works in a static binary):
//! name, index, `IFF_UP`/`IFF_LOOPBACK`, MAC (from the `AF_PACKET` entry), IPv4 address, netmask
//! and broadcast, IPv6 addresses and prefix lengths. [`net_properties`] renders them.
//!
//! Which interfaces are reported, as VirtualBox's VBoxService does it: those with at least one
//! address, numbered from 0 in kernel interface-index order, loopback skipped. Two additions:
//! an interface with only IPv6 addresses is reported too (VirtualBox sees only IPv4 ones), and
//! `--include-loopback` reports `lo` as well (useful in a guest without a network card).
//!
//! | Property under `/VirtualBox/GuestInfo/Net/` | Value |
//! |---|---|
//! | `Count` | number of interfaces reported |
//! | `<n>/Name` | interface name |
//! | `<n>/Status` | `Up` or `Down` (`IFF_UP`) |
//! | `<n>/MAC` | 12 upper-case hex digits without separators (absent without a link-layer address) |
//! | `<n>/V4/IP`, `<n>/V4/Netmask`, `<n>/V4/Broadcast` | dotted quads of the first IPv4 address; broadcast `0.0.0.0` when the interface has none (VirtualBox's value) |
//! | `<n>/V6/IP`, `<n>/V6/Prefix` | this project's extension: the interface's preferred IPv6 address (global before unique-local before link-local, then kernel order) and its prefix length in decimal |

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::published::{Desired, Value};

/// Prefix of every property this module writes.
pub const NET_PREFIX: &str = "/VirtualBox/GuestInfo/Net/";

/// One IPv4 address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Info {
    /// The address.
    pub address: Ipv4Addr,
    /// The netmask.
    pub netmask: Ipv4Addr,
    /// The broadcast address, if the interface has one.
    pub broadcast: Option<Ipv4Addr>,
}

/// One IPv6 address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Info {
    /// The address.
    pub address: Ipv6Addr,
    /// The prefix length.
    pub prefix: u8,
}

/// One network interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// The kernel's name, e.g. `eth0`.
    pub name: String,
    /// The kernel's interface index (0 if unknown).
    pub index: u32,
    /// `IFF_UP`.
    pub up: bool,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// The link-layer address, if it is a 6-byte MAC.
    pub mac: Option<[u8; 6]>,
    /// IPv4 addresses, in kernel order.
    pub ipv4: Vec<Ipv4Info>,
    /// IPv6 addresses, in kernel order.
    pub ipv6: Vec<Ipv6Info>,
}

/// Reads every interface of the guest, ordered by interface index.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is a valid out-pointer; on success it receives a list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a non-null node of the list getifaddrs returned, not yet freed.
        let node = unsafe { &*entry };
        entry = node.ifa_next;
        if node.ifa_name.is_null() {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(node.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let interface = by_name.entry(name.clone()).or_insert_with(|| Interface {
            name,
            ..Interface::default()
        });
        interface.up = node.ifa_flags & libc::IFF_UP as u32 != 0;
        interface.loopback = node.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
        if node.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points to a socket address at least as large as its family's.
        let family = i32::from(unsafe { (*node.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: the family is AF_INET, so the addresses are `sockaddr_in`s.
                let address = unsafe { ipv4_of(node.ifa_addr) };
                // SAFETY: as above; null pointers are handled by `ipv4_of`.
                let netmask = unsafe { ipv4_of(node.ifa_netmask) };
                let broadcast = if node.ifa_flags & libc::IFF_BROADCAST as u32 != 0 {
                    // SAFETY: with IFF_BROADCAST the union holds the broadcast `sockaddr_in`.
                    unsafe { ipv4_of(node.ifa_ifu) }
                } else {
                    None
                };
                if let Some(address) = address {
                    interface.ipv4.push(Ipv4Info {
                        address,
                        netmask: netmask.unwrap_or(Ipv4Addr::UNSPECIFIED),
                        broadcast,
                    });
                }
            }
            libc::AF_INET6 => {
                // SAFETY: the family is AF_INET6, so the addresses are `sockaddr_in6`s.
                let address = unsafe { ipv6_of(node.ifa_addr) };
                // SAFETY: as above.
                let netmask = unsafe { ipv6_of(node.ifa_netmask) };
                if let Some(address) = address {
                    interface.ipv6.push(Ipv6Info {
                        address,
                        prefix: netmask.map_or(128, prefix_length),
                    });
                }
            }
            libc::AF_PACKET => {
                // SAFETY: the family is AF_PACKET, so the address is a `sockaddr_ll`.
                let link = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_ll>() };
                interface.index = u32::try_from(link.sll_ifindex).unwrap_or(0);
                if link.sll_halen == 6 {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&link.sll_addr[..6]);
                    interface.mac = Some(mac);
                }
            }
            _ => {}
        }
    }
    // SAFETY: `list` came from getifaddrs and no reference into it outlives this point.
    unsafe { libc::freeifaddrs(list) };
    let mut interfaces: Vec<Interface> = by_name.into_values().collect();
    interfaces.sort_by_key(|interface| interface.index);
    Ok(interfaces)
}

/// The IPv4 address of a `sockaddr_in`, or `None` for a null pointer.
///
/// # Safety
/// `address` is null or points to a valid `sockaddr_in`.
unsafe fn ipv4_of(address: *const libc::sockaddr) -> Option<Ipv4Addr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid `sockaddr_in`; read unaligned to be safe.
    let inet = unsafe { std::ptr::read_unaligned(address.cast::<libc::sockaddr_in>()) };
    Some(Ipv4Addr::from(u32::from_be(inet.sin_addr.s_addr)))
}

/// The IPv6 address of a `sockaddr_in6`, or `None` for a null pointer.
///
/// # Safety
/// `address` is null or points to a valid `sockaddr_in6`.
unsafe fn ipv6_of(address: *const libc::sockaddr) -> Option<Ipv6Addr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid `sockaddr_in6`; read unaligned to be safe.
    let inet6 = unsafe { std::ptr::read_unaligned(address.cast::<libc::sockaddr_in6>()) };
    Some(Ipv6Addr::from(inet6.sin6_addr.s6_addr))
}

/// The number of leading one bits of an IPv6 netmask.
fn prefix_length(netmask: Ipv6Addr) -> u8 {
    // At most 128, which fits.
    u8::try_from(u128::from(netmask).leading_ones()).unwrap_or(128)
}

/// How much an IPv6 address is preferred as the one to report: lower is better.
fn ipv6_rank(address: &Ipv6Addr) -> u8 {
    let first = address.segments()[0];
    if first & 0xffc0 == 0xfe80 {
        2 // link-local
    } else if first & 0xfe00 == 0xfc00 {
        1 // unique local
    } else {
        0
    }
}

/// `mac` as 12 upper-case hex digits.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// The `/VirtualBox/GuestInfo/Net/*` properties for `interfaces` (see the module docs).
pub fn net_properties(interfaces: &[Interface], include_loopback: bool) -> Desired {
    let mut properties = Desired::new();
    let reported = interfaces.iter().filter(|interface| {
        (include_loopback || !interface.loopback)
            && (!interface.ipv4.is_empty() || !interface.ipv6.is_empty())
    });
    let mut count = 0usize;
    for (n, interface) in reported.enumerate() {
        count = n + 1;
        let mut put = |key: &str, text: String| {
            properties.insert(format!("{NET_PREFIX}{n}/{key}"), Value::plain(text));
        };
        put("Name", interface.name.clone());
        put(
            "Status",
            if interface.up { "Up" } else { "Down" }.to_owned(),
        );
        if let Some(mac) = &interface.mac {
            put("MAC", mac_text(mac));
        }
        if let Some(v4) = interface.ipv4.first() {
            put("V4/IP", v4.address.to_string());
            put("V4/Netmask", v4.netmask.to_string());
            put(
                "V4/Broadcast",
                v4.broadcast.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
            );
        }
        if let Some(v6) = interface
            .ipv6
            .iter()
            .min_by_key(|v6| ipv6_rank(&v6.address))
        {
            put("V6/IP", v6.address.to_string());
            put("V6/Prefix", v6.prefix.to_string());
        }
    }
    properties.insert(
        format!("{NET_PREFIX}Count"),
        Value::plain(count.to_string()),
    );
    properties
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Interface {
        Interface {
            name: "lo".into(),
            index: 1,
            up: true,
            loopback: true,
            mac: Some([0; 6]),
            ipv4: vec![Ipv4Info {
                address: Ipv4Addr::LOCALHOST,
                netmask: Ipv4Addr::new(255, 0, 0, 0),
                broadcast: None,
            }],
            ipv6: vec![Ipv6Info {
                address: Ipv6Addr::LOCALHOST,
                prefix: 128,
            }],
        }
    }

    fn ethernet() -> Interface {
        Interface {
            name: "eth0".into(),
            index: 2,
            up: true,
            loopback: false,
            mac: Some([0x52, 0x54, 0x00, 0xab, 0xcd, 0x0e]),
            ipv4: vec![Ipv4Info {
                address: Ipv4Addr::new(10, 0, 2, 15),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                broadcast: Some(Ipv4Addr::new(10, 0, 2, 255)),
            }],
            ipv6: vec![
                Ipv6Info {
                    address: "fe80::5054:ff:feab:cd0e".parse().unwrap(),
                    prefix: 64,
                },
                Ipv6Info {
                    address: "2001:db8::15".parse().unwrap(),
                    prefix: 64,
                },
            ],
        }
    }

    fn value<'a>(properties: &'a Desired, key: &str) -> Option<&'a str> {
        properties
            .get(&format!("{NET_PREFIX}{key}"))
            .map(|value| value.text.as_str())
    }

    #[test]
    fn loopback_is_skipped_as_virtualbox_does() {
        let properties = net_properties(&[loopback(), ethernet()], false);
        assert_eq!(value(&properties, "Count"), Some("1"));
        assert_eq!(value(&properties, "0/Name"), Some("eth0"));
        assert_eq!(value(&properties, "1/Name"), None);
    }

    #[test]
    fn ethernet_values_use_virtualbox_formats() {
        let properties = net_properties(&[ethernet()], false);
        assert_eq!(value(&properties, "0/V4/IP"), Some("10.0.2.15"));
        assert_eq!(value(&properties, "0/V4/Netmask"), Some("255.255.255.0"));
        assert_eq!(value(&properties, "0/V4/Broadcast"), Some("10.0.2.255"));
        assert_eq!(value(&properties, "0/MAC"), Some("525400ABCD0E"));
        assert_eq!(value(&properties, "0/Status"), Some("Up"));
    }

    #[test]
    fn a_global_ipv6_address_is_preferred_over_link_local() {
        let properties = net_properties(&[ethernet()], false);
        assert_eq!(value(&properties, "0/V6/IP"), Some("2001:db8::15"));
        assert_eq!(value(&properties, "0/V6/Prefix"), Some("64"));
    }

    #[test]
    fn included_loopback_reports_both_localhost_addresses_and_no_broadcast() {
        let properties = net_properties(&[loopback(), ethernet()], true);
        assert_eq!(value(&properties, "Count"), Some("2"));
        assert_eq!(value(&properties, "0/Name"), Some("lo"));
        assert_eq!(value(&properties, "0/V4/IP"), Some("127.0.0.1"));
        assert_eq!(value(&properties, "0/V4/Broadcast"), Some("0.0.0.0"));
        assert_eq!(value(&properties, "0/V6/IP"), Some("::1"));
        assert_eq!(value(&properties, "0/V6/Prefix"), Some("128"));
        assert_eq!(value(&properties, "1/Name"), Some("eth0"));
    }

    #[test]
    fn an_interface_without_addresses_is_not_reported_and_a_down_one_says_down() {
        let bare = Interface {
            name: "eth1".into(),
            index: 3,
            ..Interface::default()
        };
        let down = Interface {
            up: false,
            ..ethernet()
        };
        let properties = net_properties(&[bare, down], false);
        assert_eq!(value(&properties, "Count"), Some("1"));
        assert_eq!(value(&properties, "0/Name"), Some("eth0"));
        assert_eq!(value(&properties, "0/Status"), Some("Down"));
    }

    #[test]
    fn an_ipv6_only_interface_has_no_v4_entries() {
        let v6_only = Interface {
            ipv4: Vec::new(),
            ..ethernet()
        };
        let properties = net_properties(&[v6_only], false);
        assert_eq!(value(&properties, "0/V4/IP"), None);
        assert_eq!(value(&properties, "0/V6/IP"), Some("2001:db8::15"));
    }

    #[test]
    fn no_interfaces_gives_a_zero_count_only() {
        let properties = net_properties(&[], false);
        assert_eq!(properties.len(), 1);
        assert_eq!(value(&properties, "Count"), Some("0"));
    }

    #[test]
    fn prefix_length_counts_the_leading_ones_of_the_netmask() {
        assert_eq!(prefix_length("ffff:ffff:ffff:ffff::".parse().unwrap()), 64);
        assert_eq!(prefix_length(Ipv6Addr::UNSPECIFIED), 0);
    }

    #[test]
    fn this_machine_has_a_loopback_interface_with_127_0_0_1() {
        let found = interfaces().unwrap();
        let lo = found.iter().find(|interface| interface.loopback);
        let lo = lo.expect("a loopback interface");
        assert!(lo.ipv4.iter().any(|v4| v4.address == Ipv4Addr::LOCALHOST));
    }
}
