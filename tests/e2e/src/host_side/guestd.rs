//! The host's side of the guest service daemon's checks (`tests/e2e/guest/steps/75-guestd.sh`): what
//! `vboxservice` published, seen through the control endpoint, and shares added and removed while the
//! guest's automounter runs.
//!
//! | Verb | Does | Answers |
//! |---|---|---|
//! | `guestd-info RELEASE USERS` | enumerates `/VirtualBox/GuestInfo/*` and `/VirtualBox/GuestAdd/*`; checks the version, `OS/Product` = `Linux`, `OS/Release` = RELEASE, a `Net/<n>` for `lo` (`127.0.0.1`/`255.0.0.0`, `::1`/`128`, `Up`, MAC `000000000000`) within `Net/Count`, and the users (USERS: comma list, `-` for nobody) | `Version=.. Count=.. lo=Net/<n> users=..` |
//! | `guestd-stamp NAME` | `guestproperty.get` of NAME | its timestamp (ns), or fails if NAME is not set |
//! | `guestd-after-stop` | checks what a stopped daemon leaves: no `Net/*`, `LoggedInUsers` `0`, `NoLoggedInUsers` `true`, no list, `OS/Release` kept | `ok` |
//! | `guestd-share-add NAME` | creates `<run dir>/guestd-shares/NAME/hello.txt` (`hello from NAME`) and adds the share with `automount` | the host directory |
//! | `guestd-share-remove NAME` | removes the share | `deferred=<bool>` (true while the guest still has it mapped) |
//! | `guestd-share-gone NAME` | fails while `sharedfolder.list` still lists NAME | `gone` |
//!
//! [`prepare_auto_share`] makes the share that is offered with `,auto` before boot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::host_agent::{HostAgent, HostContext};

/// The share offered with `,auto` before boot; the guest finds it mounted at `/media/sf_e2e-auto`.
pub const AUTO_SHARE: &str = "e2e-auto";

/// The text of `auto.txt` in [`AUTO_SHARE`].
pub const AUTO_SHARE_TEXT: &str = "auto share\n";

/// Creates the host directory of [`AUTO_SHARE`] under `dir` (emptied first) and returns it.
pub fn prepare_auto_share(dir: &Path) -> std::io::Result<PathBuf> {
    let share = dir.join("share-auto");
    if share.exists() {
        std::fs::remove_dir_all(&share)?;
    }
    std::fs::create_dir_all(&share)?;
    std::fs::write(share.join("auto.txt"), AUTO_SHARE_TEXT)?;
    Ok(share)
}

/// The `--share` argument that offers [`AUTO_SHARE`] from `path`.
pub fn auto_share_argument(path: &Path) -> String {
    format!("{AUTO_SHARE}={},auto", path.display())
}

/// Adds the verbs of this topic to `agent`.
pub fn register(agent: HostAgent) -> HostAgent {
    agent
        .on("guestd-info", |ctx, args| {
            let [release, users] = args else {
                return Err("usage: guestd-info RELEASE USERS".to_owned());
            };
            check_guest_info(&properties(ctx)?, release, users)
        })
        .on("guestd-stamp", |ctx, args| {
            let [name] = args else {
                return Err("usage: guestd-stamp NAME".to_owned());
            };
            let response = ctx.control(json!({"op": "guestproperty.get", "name": name}))?;
            if response.get("value").is_none_or(Value::is_null) {
                return Err(format!("{name} is not set"));
            }
            response
                .get("timestamp")
                .and_then(Value::as_u64)
                .map(|timestamp| timestamp.to_string())
                .ok_or_else(|| format!("{name} has no timestamp"))
        })
        .on("guestd-after-stop", |ctx, _| {
            check_after_stop(&properties(ctx)?)
        })
        .on("guestd-share-add", |ctx, args| {
            let [name] = args else {
                return Err("usage: guestd-share-add NAME".to_owned());
            };
            let dir = ctx.run_dir().join("guestd-shares").join(name);
            let made = std::fs::create_dir_all(&dir).and_then(|()| {
                std::fs::write(dir.join("hello.txt"), format!("hello from {name}\n"))
            });
            made.map_err(|error| format!("preparing {}: {error}", dir.display()))?;
            ctx.control(json!({
                "op": "sharedfolder.add",
                "name": name,
                "path": dir.display().to_string(),
                "automount": true,
            }))?;
            Ok(dir.display().to_string())
        })
        .on("guestd-share-remove", |ctx, args| {
            let [name] = args else {
                return Err("usage: guestd-share-remove NAME".to_owned());
            };
            let response = ctx.control(json!({"op": "sharedfolder.remove", "name": name}))?;
            Ok(format!(
                "deferred={}",
                response
                    .get("deferred")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ))
        })
        .on("guestd-share-gone", |ctx, args| {
            let [name] = args else {
                return Err("usage: guestd-share-gone NAME".to_owned());
            };
            let response = ctx.control(json!({"op": "sharedfolder.list"}))?;
            let listed = response
                .get("shares")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|share| share.get("name").and_then(Value::as_str) == Some(name));
            match listed {
                Some(share) => Err(format!("still listed: {share}")),
                None => Ok("gone".to_owned()),
            }
        })
}

/// Every property under `/VirtualBox/GuestInfo/` and `/VirtualBox/GuestAdd/`, by name.
fn properties(ctx: &HostContext) -> Result<BTreeMap<String, String>, String> {
    let response = ctx.control(json!({
        "op": "guestproperty.enumerate",
        "patterns": ["/VirtualBox/GuestInfo/*", "/VirtualBox/GuestAdd/*"],
    }))?;
    let listed = response
        .get("properties")
        .and_then(Value::as_array)
        .ok_or("the enumeration has no properties array")?;
    Ok(listed
        .iter()
        .filter_map(|property| {
            Some((
                property.get("name")?.as_str()?.to_owned(),
                property.get("value")?.as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// Looks up `name` below `/VirtualBox/`.
fn get<'a>(properties: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    properties
        .get(&format!("/VirtualBox/{name}"))
        .map(String::as_str)
}

/// Fails unless `name` holds `expected`.
fn expect(properties: &BTreeMap<String, String>, name: &str, expected: &str) -> Result<(), String> {
    match get(properties, name) {
        Some(actual) if actual == expected => Ok(()),
        Some(actual) => Err(format!("{name} is {actual:?}, expected {expected:?}")),
        None => Err(format!("{name} is not set (expected {expected:?})")),
    }
}

/// The checks of `guestd-info` (see the module docs).
fn check_guest_info(
    properties: &BTreeMap<String, String>,
    release: &str,
    users: &str,
) -> Result<String, String> {
    let version = get(properties, "GuestAdd/Version")
        .filter(|version| !version.is_empty())
        .ok_or("GuestAdd/Version is not set")?;
    expect(properties, "GuestInfo/OS/Product", "Linux")?;
    expect(properties, "GuestInfo/OS/Release", release)?;
    let count: usize = get(properties, "GuestInfo/Net/Count")
        .ok_or("GuestInfo/Net/Count is not set")?
        .parse()
        .map_err(|_| "GuestInfo/Net/Count is not a number")?;
    let lo = (0..count)
        .find(|n| get(properties, &format!("GuestInfo/Net/{n}/Name")) == Some("lo"))
        .ok_or_else(|| format!("none of the {count} interfaces is lo"))?;
    for (key, expected) in [
        ("V4/IP", "127.0.0.1"),
        ("V4/Netmask", "255.0.0.0"),
        ("V6/IP", "::1"),
        ("V6/Prefix", "128"),
        ("Status", "Up"),
        ("MAC", "000000000000"),
    ] {
        expect(properties, &format!("GuestInfo/Net/{lo}/{key}"), expected)?;
    }
    if get(properties, &format!("GuestInfo/Net/{count}/Name")).is_some() {
        return Err(format!("an entry Net/{count} beyond Net/Count={count}"));
    }
    let expected_users: Vec<&str> = users
        .split(',')
        .filter(|u| !u.is_empty() && *u != "-")
        .collect();
    expect(
        properties,
        "GuestInfo/OS/LoggedInUsers",
        &expected_users.len().to_string(),
    )?;
    expect(
        properties,
        "GuestInfo/OS/NoLoggedInUsers",
        if expected_users.is_empty() {
            "true"
        } else {
            "false"
        },
    )?;
    match get(properties, "GuestInfo/OS/LoggedInUsersList") {
        None if expected_users.is_empty() => {}
        Some(list) if list == expected_users.join(",") => {}
        other => {
            return Err(format!(
                "GuestInfo/OS/LoggedInUsersList is {other:?}, expected {:?}",
                expected_users.join(",")
            ));
        }
    }
    Ok(format!(
        "Version={version} Count={count} lo=Net/{lo} users={users}"
    ))
}

/// The checks of `guestd-after-stop` (see the module docs).
fn check_after_stop(properties: &BTreeMap<String, String>) -> Result<String, String> {
    let left: Vec<&String> = properties
        .keys()
        .filter(|name| name.starts_with("/VirtualBox/GuestInfo/Net/"))
        .collect();
    if !left.is_empty() {
        return Err(format!("network entries left: {left:?}"));
    }
    expect(properties, "GuestInfo/OS/LoggedInUsers", "0")?;
    expect(properties, "GuestInfo/OS/NoLoggedInUsers", "true")?;
    if let Some(list) = get(properties, "GuestInfo/OS/LoggedInUsersList") {
        return Err(format!("LoggedInUsersList left: {list:?}"));
    }
    if get(properties, "GuestInfo/OS/Release").is_none() {
        return Err("OS/Release was removed".to_owned());
    }
    Ok("ok".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut properties: BTreeMap<String, String> = [
            ("GuestAdd/Version", "0.1.0"),
            ("GuestInfo/OS/Product", "Linux"),
            ("GuestInfo/OS/Release", "6.1.0-test"),
            ("GuestInfo/Net/Count", "1"),
            ("GuestInfo/Net/0/Name", "lo"),
            ("GuestInfo/Net/0/V4/IP", "127.0.0.1"),
            ("GuestInfo/Net/0/V4/Netmask", "255.0.0.0"),
            ("GuestInfo/Net/0/V6/IP", "::1"),
            ("GuestInfo/Net/0/V6/Prefix", "128"),
            ("GuestInfo/Net/0/Status", "Up"),
            ("GuestInfo/Net/0/MAC", "000000000000"),
            ("GuestInfo/OS/LoggedInUsers", "1"),
            ("GuestInfo/OS/LoggedInUsersList", "e2euser"),
            ("GuestInfo/OS/NoLoggedInUsers", "false"),
        ]
        .iter()
        .chain(extra)
        .map(|(name, value)| (format!("/VirtualBox/{name}"), (*value).to_owned()))
        .collect();
        properties.retain(|_, value| !value.is_empty());
        properties
    }

    #[test]
    fn complete_guest_info_passes() {
        let answer = check_guest_info(&published(&[]), "6.1.0-test", "e2euser").unwrap();
        assert_eq!(answer, "Version=0.1.0 Count=1 lo=Net/0 users=e2euser");
    }

    #[test]
    fn a_wrong_release_fails() {
        let error = check_guest_info(&published(&[]), "6.2", "e2euser").unwrap_err();
        assert!(error.contains("OS/Release"), "{error}");
    }

    #[test]
    fn an_entry_beyond_the_count_fails() {
        let error = check_guest_info(
            &published(&[("GuestInfo/Net/1/Name", "eth9")]),
            "6.1.0-test",
            "e2euser",
        )
        .unwrap_err();
        assert!(error.contains("beyond"), "{error}");
    }

    #[test]
    fn after_stop_refuses_network_leftovers() {
        let error = check_after_stop(&published(&[])).unwrap_err();
        assert!(error.contains("network entries left"), "{error}");
    }

    #[test]
    fn after_stop_accepts_what_a_clean_stop_leaves() {
        let mut properties = published(&[]);
        properties.retain(|name, _| !name.contains("/Net/") && !name.ends_with("UsersList"));
        properties.insert("/VirtualBox/GuestInfo/OS/LoggedInUsers".into(), "0".into());
        properties.insert(
            "/VirtualBox/GuestInfo/OS/NoLoggedInUsers".into(),
            "true".into(),
        );
        assert_eq!(check_after_stop(&properties).unwrap(), "ok");
    }
}
