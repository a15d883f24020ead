//! Logged-in users as `/VirtualBox/GuestInfo/OS/LoggedInUsers*` properties.
//!
//! Users come from the utmp file (`/var/run/utmp`): every `USER_PROCESS` record whose process
//! still runs (a crashed login leaves a stale record). The file is read as bytes and parsed in
//! the C library's `struct utmpx` layout; no NSS or C library state is involved, so this works
//! in a static binary.
//!
//! | Property under `/VirtualBox/GuestInfo/OS/` | Value (flags `TRANSIENT, TRANSRESET`) |
//! |---|---|
//! | `LoggedInUsers` | number of distinct users |
//! | `LoggedInUsersList` | the distinct names in utmp order, comma-separated; absent when nobody is logged in |
//! | `NoLoggedInUsers` | `true` or `false` |
//!
//! Names with a comma, white space or control characters are skipped (they would break the
//! list's format). A list longer than the guest-properties service's default value limit (1024
//! bytes) ends at the last name that fits; the count still counts every user.

use std::path::Path;

use vmmdev_guest_ioctl::guest_props::PropertyFlags;

use super::published::{Desired, Value};

/// `LoggedInUsers`.
pub const LOGGED_IN_USERS: &str = "/VirtualBox/GuestInfo/OS/LoggedInUsers";
/// `LoggedInUsersList`.
pub const LOGGED_IN_USERS_LIST: &str = "/VirtualBox/GuestInfo/OS/LoggedInUsersList";
/// `NoLoggedInUsers`.
pub const NO_LOGGED_IN_USERS: &str = "/VirtualBox/GuestInfo/OS/NoLoggedInUsers";

/// The default utmp file.
pub const DEFAULT_UTMP: &str = "/var/run/utmp";

/// The longest list value written (the service's default value limit, 1024 bytes with its NUL).
const MAX_LIST_LEN: usize = 1023;

/// The largest utmp file read; larger files are read up to this size.
const MAX_UTMP_SIZE: u64 = 4 << 20;

/// `ut_type` of a login session.
const USER_PROCESS: i16 = 7;

const RECORD_SIZE: usize = std::mem::size_of::<libc::utmpx>();
const TYPE_OFFSET: usize = std::mem::offset_of!(libc::utmpx, ut_type);
const PID_OFFSET: usize = std::mem::offset_of!(libc::utmpx, ut_pid);
const USER_OFFSET: usize = std::mem::offset_of!(libc::utmpx, ut_user);
const USER_LEN: usize = 32;

/// The flags of the user properties (what VirtualBox's `TRANSRESET` reads back as).
pub fn user_flags() -> PropertyFlags {
    PropertyFlags::TRANSIENT | PropertyFlags::TRANSRESET
}

/// The logged-in users recorded in utmp file bytes `utmp`, distinct, in file order;
/// `is_running(pid)` tells live sessions from stale records.
pub fn logged_in_users(utmp: &[u8], is_running: impl Fn(i32) -> bool) -> Vec<String> {
    let mut users: Vec<String> = Vec::new();
    for record in utmp.chunks_exact(RECORD_SIZE) {
        let field = |offset: usize, len: usize| record.get(offset..offset + len);
        let Some(kind) = field(TYPE_OFFSET, 2).and_then(|b| b.try_into().ok()) else {
            continue;
        };
        let Some(pid) = field(PID_OFFSET, 4).and_then(|b| b.try_into().ok()) else {
            continue;
        };
        if i16::from_ne_bytes(kind) != USER_PROCESS || !is_running(i32::from_ne_bytes(pid)) {
            continue;
        }
        let Some(raw) = field(USER_OFFSET, USER_LEN) else {
            continue;
        };
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let Ok(name) = std::str::from_utf8(&raw[..end]) else {
            continue;
        };
        let acceptable = !name.is_empty()
            && !name
                .chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control());
        if acceptable && !users.iter().any(|known| known == name) {
            users.push(name.to_owned());
        }
    }
    users
}

/// Whether process `pid` exists.
pub fn process_is_running(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// The users logged in according to the utmp file at `path`; a missing file means nobody.
pub fn read_logged_in_users(path: &Path) -> std::io::Result<Vec<String>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut bytes = Vec::new();
    file.take(MAX_UTMP_SIZE).read_to_end(&mut bytes)?;
    Ok(logged_in_users(&bytes, process_is_running))
}

/// The user properties for `users`.
pub fn user_properties(users: &[String]) -> Desired {
    let mut properties = Desired::new();
    let flagged = |text: String| Value::with_flags(text, user_flags());
    properties.insert(LOGGED_IN_USERS.into(), flagged(users.len().to_string()));
    properties.insert(
        NO_LOGGED_IN_USERS.into(),
        flagged(users.is_empty().to_string()),
    );
    let mut list = String::new();
    for user in users {
        let needed = user.len() + usize::from(!list.is_empty());
        if list.len() + needed > MAX_LIST_LEN {
            break;
        }
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(user);
    }
    if !list.is_empty() {
        properties.insert(LOGGED_IN_USERS_LIST.into(), flagged(list));
    }
    properties
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: i16, pid: i32, user: &str) -> Vec<u8> {
        let mut bytes = vec![0u8; RECORD_SIZE];
        bytes[TYPE_OFFSET..TYPE_OFFSET + 2].copy_from_slice(&kind.to_ne_bytes());
        bytes[PID_OFFSET..PID_OFFSET + 4].copy_from_slice(&pid.to_ne_bytes());
        bytes[USER_OFFSET..USER_OFFSET + user.len()].copy_from_slice(user.as_bytes());
        bytes
    }

    #[test]
    fn record_layout_is_glibcs_x86_64_utmpx() {
        // The e2e step writes records in this layout with printf.
        assert_eq!(
            (RECORD_SIZE, TYPE_OFFSET, PID_OFFSET, USER_OFFSET),
            (384, 0, 4, 44)
        );
    }

    #[test]
    fn only_live_user_processes_count_once_each_in_file_order() {
        let utmp = [
            record(USER_PROCESS, 10, "bob"),
            record(2, 11, "reboot"),
            record(USER_PROCESS, 12, "alice"),
            record(USER_PROCESS, 13, "bob"),
            record(USER_PROCESS, 99, "ghost"),
        ]
        .concat();
        let users = logged_in_users(&utmp, |pid| pid != 99);
        assert_eq!(users, ["bob", "alice"]);
    }

    #[test]
    fn names_that_would_break_the_list_are_skipped() {
        let utmp = [
            record(USER_PROCESS, 1, "a,b"),
            record(USER_PROCESS, 1, "c d"),
            record(USER_PROCESS, 1, ""),
            record(USER_PROCESS, 1, "ok"),
        ]
        .concat();
        assert_eq!(logged_in_users(&utmp, |_| true), ["ok"]);
    }

    #[test]
    fn a_truncated_trailing_record_is_ignored() {
        let mut utmp = record(USER_PROCESS, 1, "root");
        utmp.extend_from_slice(&record(USER_PROCESS, 1, "late")[..100]);
        assert_eq!(logged_in_users(&utmp, |_| true), ["root"]);
    }

    #[test]
    fn nobody_logged_in_gives_zero_true_and_no_list() {
        let properties = user_properties(&[]);
        assert_eq!(properties[LOGGED_IN_USERS].text, "0");
        assert_eq!(properties[NO_LOGGED_IN_USERS].text, "true");
        assert!(!properties.contains_key(LOGGED_IN_USERS_LIST));
        assert_eq!(properties[LOGGED_IN_USERS].flags, user_flags());
    }

    #[test]
    fn users_give_count_comma_list_and_false() {
        let properties = user_properties(&["alice".into(), "bob".into()]);
        assert_eq!(properties[LOGGED_IN_USERS].text, "2");
        assert_eq!(properties[LOGGED_IN_USERS_LIST].text, "alice,bob");
        assert_eq!(properties[NO_LOGGED_IN_USERS].text, "false");
    }

    #[test]
    fn a_long_list_stops_at_the_last_name_that_fits_but_counts_everyone() {
        let users: Vec<String> = (0..200).map(|n| format!("user{n:04}")).collect();
        let properties = user_properties(&users);
        let list = &properties[LOGGED_IN_USERS_LIST].text;
        assert!(list.len() <= MAX_LIST_LEN);
        assert!(list.ends_with(|c: char| c.is_ascii_digit()));
        assert_eq!(properties[LOGGED_IN_USERS].text, "200");
    }

    #[test]
    fn a_missing_utmp_file_means_nobody() {
        let users = read_logged_in_users(Path::new("/nonexistent/utmp")).unwrap();
        assert!(users.is_empty());
    }
}
