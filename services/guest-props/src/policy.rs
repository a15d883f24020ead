//! Which guest callers may read and write which property names, by the requestor bits of the
//! call.
//!
//! VirtualBox's guest-property service makes no distinction between callers: kernel code, root
//! and any user (also through the unrestricted `/dev/vboxuser` node) may read every property and
//! write every property the flags and the host-reserved namespaces allow. That is the default
//! here too. A configuration can narrow it with rules (`policy=` entries, see [`Rule::parse`]):
//!
//! ```text
//! policy=<who>:<access>:<prefix>
//! ```
//!
//! * `who`: `kernel` (guest kernel code, and guests that send no requestor information),
//!   `root` (root or system processes), `user` (every other process), `vboxuser` (any process
//!   that came through `/dev/vboxuser`), `all`; several joined with `+` (`root+user`).
//! * `access`: `rw` (read and write), `ro` (read only), `none` (neither).
//! * `prefix`: the names the rule covers, as a literal prefix (`/VirtualBox/GuestAdd/`), or `*`
//!   for every name. It may contain `:` but not `,` (the configuration separator).
//!
//! For a call, the rules whose `who` matches the caller and whose prefix starts the name are
//! considered; the one with the longest prefix wins, and among equally long ones the last
//! given. With no such rule, access is `rw`. The policy comes on top of the property flags and
//! the host-reserved namespaces, never instead of them.
//!
//! A refused read looks like a missing property (GET_PROP answers `VERR_NOT_FOUND`, ENUM_PROPS
//! leaves the property out, GET_NOTIFICATION ignores its changes); a refused write or delete
//! is `VERR_PERMISSION_DENIED`.

use vmmdev_hgcm_sdk::{Requestor, RequestorUserClass};
use vmmdev_protocol::services::guest_props::GUEST_PROP_NAME_FORBIDDEN_BYTES;

/// A malformed policy rule.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Not `who:access:prefix`.
    #[error("policy rule {0:?} is not <who>:<access>:<prefix>")]
    Syntax(String),
    /// An unknown caller class.
    #[error("unknown caller class {0:?} (kernel, root, user, vboxuser, all)")]
    UnknownCaller(String),
    /// An unknown access level.
    #[error("unknown access {0:?} (rw, ro, none)")]
    UnknownAccess(String),
    /// A prefix that is empty or contains a pattern character.
    #[error("policy prefix {0:?} is empty or contains *, ? or |")]
    BadPrefix(String),
}

/// What a rule grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and write.
    ReadWrite,
    /// Read only.
    ReadOnly,
    /// Neither.
    None,
}

impl Access {
    fn parse(text: &str) -> Result<Self, PolicyError> {
        match text {
            "rw" => Ok(Self::ReadWrite),
            "ro" => Ok(Self::ReadOnly),
            "none" => Ok(Self::None),
            other => Err(PolicyError::UnknownAccess(other.to_owned())),
        }
    }

    fn may_read(self) -> bool {
        self != Self::None
    }

    fn may_write(self) -> bool {
        self == Self::ReadWrite
    }
}

/// The callers a rule applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Callers {
    kernel: bool,
    root: bool,
    user: bool,
    user_device: bool,
}

impl Callers {
    fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut callers = Callers::default();
        for token in text.split('+') {
            match token {
                "kernel" => callers.kernel = true,
                "root" => callers.root = true,
                "user" => callers.user = true,
                "vboxuser" => callers.user_device = true,
                "all" => {
                    callers.kernel = true;
                    callers.root = true;
                    callers.user = true;
                }
                other => return Err(PolicyError::UnknownCaller(other.to_owned())),
            }
        }
        Ok(callers)
    }

    fn include(self, requestor: Requestor) -> bool {
        // A guest without requestor information is treated like kernel code, as VirtualBox
        // counts such clients.
        if requestor.is_legacy() {
            return self.kernel;
        }
        if self.user_device && requestor.is_user_device() {
            return true;
        }
        if !requestor.is_user_mode() {
            return self.kernel;
        }
        match requestor.user_class() {
            RequestorUserClass::ROOT | RequestorUserClass::SYSTEM => self.root,
            _ => self.user,
        }
    }
}

/// One policy rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    callers: Callers,
    access: Access,
    /// Empty for `*` (every name).
    prefix: String,
}

impl Rule {
    /// Parses `who:access:prefix` (see the module documentation).
    pub fn parse(text: &str) -> Result<Rule, PolicyError> {
        let mut parts = text.splitn(3, ':');
        let (Some(who), Some(access), Some(prefix)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(PolicyError::Syntax(text.to_owned()));
        };
        let prefix = match prefix {
            "*" => String::new(),
            p if p.is_empty()
                || p.bytes()
                    .any(|b| b == 0 || GUEST_PROP_NAME_FORBIDDEN_BYTES.contains(&b)) =>
            {
                return Err(PolicyError::BadPrefix(p.to_owned()));
            }
            p => p.to_owned(),
        };
        Ok(Rule {
            callers: Callers::parse(who)?,
            access: Access::parse(access)?,
            prefix,
        })
    }
}

/// The rules in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// A policy of `rules`, in the order given (later rules win ties).
    pub fn new(rules: Vec<Rule>) -> Self {
        Policy { rules }
    }

    /// Whether there are no rules (everyone may do everything).
    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    /// The access `requestor` has to `name`.
    pub fn access(&self, requestor: Requestor, name: &str) -> Access {
        self.rules
            .iter()
            .filter(|rule| rule.callers.include(requestor) && name.starts_with(&rule.prefix))
            // `max_by_key` keeps the last of equal keys: later rules win ties.
            .max_by_key(|rule| rule.prefix.len())
            .map_or(Access::ReadWrite, |rule| rule.access)
    }

    /// Whether `requestor` may read `name`.
    pub fn may_read(&self, requestor: Requestor, name: &str) -> bool {
        self.is_open() || self.access(requestor, name).may_read()
    }

    /// Whether `requestor` may write or delete `name`.
    pub fn may_write(&self, requestor: Requestor, name: &str) -> bool {
        self.is_open() || self.access(requestor, name).may_write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Linux core driver.
    const KERNEL: Requestor = Requestor(0x1);
    /// Root through /dev/vboxguest.
    const ROOT: Requestor = Requestor(0x8B);
    /// A user through /dev/vboxguest (group-owned node).
    const USER: Requestor = Requestor(0x8E);
    /// Root through /dev/vboxuser.
    const ROOT_USER_DEVICE: Requestor = Requestor(0x808B);
    /// A user through /dev/vboxuser.
    const USER_DEVICE: Requestor = Requestor(0x800E);

    fn policy(rules: &[&str]) -> Policy {
        Policy::new(
            rules
                .iter()
                .map(|r| Rule::parse(r).expect("valid rule"))
                .collect(),
        )
    }

    #[test]
    fn default_policy_lets_every_caller_read_and_write() {
        let open = Policy::default();
        for requestor in [KERNEL, ROOT, USER, USER_DEVICE, Requestor::LEGACY] {
            assert!(open.may_read(requestor, "/a"));
            assert!(open.may_write(requestor, "/a"));
        }
    }

    #[test]
    fn read_only_rule_refuses_writes_but_allows_reads() {
        let p = policy(&["user:ro:/VirtualBox/"]);
        assert!(p.may_read(USER, "/VirtualBox/GuestInfo/OS/Product"));
        assert!(!p.may_write(USER, "/VirtualBox/GuestInfo/OS/Product"));
        assert!(p.may_write(USER, "/Other"));
    }

    #[test]
    fn rule_applies_only_to_its_callers() {
        let p = policy(&["user:none:*"]);
        assert!(!p.may_read(USER, "/a"));
        assert!(p.may_read(ROOT, "/a"));
        assert!(p.may_read(KERNEL, "/a"));
    }

    #[test]
    fn legacy_requestor_counts_as_kernel() {
        let p = policy(&["kernel:ro:*"]);
        assert!(!p.may_write(Requestor::LEGACY, "/a"));
        assert!(p.may_write(USER, "/a"));
    }

    #[test]
    fn vboxuser_matches_any_class_through_the_user_device() {
        let p = policy(&["vboxuser:ro:*"]);
        assert!(!p.may_write(USER_DEVICE, "/a"));
        assert!(!p.may_write(ROOT_USER_DEVICE, "/a"));
        assert!(p.may_write(ROOT, "/a"));
        assert!(p.may_write(USER, "/a"));
    }

    #[test]
    fn longest_prefix_wins() {
        let p = policy(&["all:none:/secret/", "all:rw:/secret/shared/"]);
        assert!(!p.may_read(ROOT, "/secret/key"));
        assert!(p.may_write(ROOT, "/secret/shared/x"));
    }

    #[test]
    fn later_rule_wins_a_tie() {
        let p = policy(&["user:none:/a", "user+root:ro:/a"]);
        assert_eq!(p.access(USER, "/a/b"), Access::ReadOnly);
    }

    #[test]
    fn malformed_rules_are_refused() {
        assert_eq!(
            Rule::parse("user:ro"),
            Err(PolicyError::Syntax("user:ro".into()))
        );
        assert_eq!(
            Rule::parse("guest:ro:/a"),
            Err(PolicyError::UnknownCaller("guest".into()))
        );
        assert_eq!(
            Rule::parse("user:write:/a"),
            Err(PolicyError::UnknownAccess("write".into()))
        );
        assert_eq!(
            Rule::parse("user:ro:/a*"),
            Err(PolicyError::BadPrefix("/a*".into()))
        );
        assert_eq!(
            Rule::parse("user:ro:"),
            Err(PolicyError::BadPrefix(String::new()))
        );
    }

    #[test]
    fn prefix_may_contain_colons() {
        let p = policy(&["all:none:/a:b"]);
        assert!(!p.may_read(KERNEL, "/a:b/c"));
        assert!(p.may_read(KERNEL, "/a:c"));
    }
}
