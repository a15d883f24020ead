//! The service configuration string: which host directories are shared, and how.
//!
//! Syntax (entries separated by whitespace or `;`, fields of an entry by `:`; a backslash makes
//! the next character literal, so paths may contain `\:`, `\;`, `\ ` and `\\`):
//!
//! ```text
//! share=NAME:PATH[:ro|:rw][:auto][:symlinks=deny|inside|allow][:mount=POINT]
//! max_handles=N
//! ```
//!
//! * `NAME`: what the guest mounts (`mount -t vboxsf NAME /mnt`); 1–255 characters, no NUL, no
//!   `/` or `\`; unique ignoring case (the guest matches names case-insensitively).
//! * `PATH`: an absolute host directory; it must exist when the service loads.
//! * `ro` / `rw`: read-only or writable (default `rw`). A read-only share refuses every function
//!   that would change it, SYMLINK and COPY_FILE included.
//! * `auto`: reported to guest automounters (QUERY_MAPPINGS with the auto-mount filter).
//! * `symlinks=`: the share's [`SymlinkPolicy`] (default `deny`).
//! * `mount=POINT`: the auto-mount point reported by QUERY_MAP_INFO (default empty).
//! * `max_handles=N`: most handles one client may hold open at once (default 4096, 1–1048576).
//!   Each open handle holds one host file descriptor, so the embedding process's
//!   `RLIMIT_NOFILE` should leave room for them; when the process runs out, CREATE fails with
//!   `VERR_TOO_MANY_OPEN_FILES` (the guest sees `ENFILE`). Besides the handles, each share keeps
//!   its root, one inotify instance and up to 256 cached directories open (the directory cache
//!   of [`crate::share`]); a share whose inotify instance cannot be created works uncached.
//!
//! At most 64 shares. Anything else (unknown keys or flags, repeated flags, relative paths,
//! missing directories) refuses the whole configuration.

use std::path::{Path, PathBuf};

use vmmdev_protocol::services::shared_folders::SHFL_MAX_MAPPINGS;

/// Default per-client handle limit.
pub const DEFAULT_MAX_HANDLES: u32 = 4096;
/// Largest accepted per-client handle limit.
pub const MAX_HANDLES_LIMIT: u32 = 1 << 20;
/// Longest share name, in characters.
pub const MAX_SHARE_NAME_CHARS: usize = 255;

/// What a share allows with symbolic links.
///
/// Host-side path resolution never leaves the share under any policy: every path, including
/// the targets of links the host follows, is resolved by the kernel beneath the share's root
/// (`RESOLVE_BENEATH`), and `/proc`-style magic links are never followed. The policy decides
/// what the guest may *create*, and whether the host follows links at all:
///
/// | Policy | Host follows links | Guest may create links | READLINK |
/// |---|---|---|---|
/// | `deny` | never (`RESOLVE_NO_SYMLINKS`: opening through a link fails with `ELOOP`) | no (`EROFS`, VirtualBox's answer when creation is disabled) | yes |
/// | `inside` | only while the resolution stays beneath the root; a link leading out fails with `EPERM` | only relative targets that, read from the link's directory, never climb above the share root (others: `EPERM`) | yes |
/// | `allow` | as `inside` | any target, stored verbatim; the guest resolves it in its own namespace, the host never follows it out of the share | yes |
///
/// Stat and directory listings of a client that did not ask for symlink semantics
/// (SET_SYMLINKS) follow links where the policy lets the host follow them, and otherwise report
/// the link itself, so a listing never fails because of one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SymlinkPolicy {
    /// No links are created or followed.
    #[default]
    Deny,
    /// Links are followed and created only within the share.
    Inside,
    /// Links with any target may be created; following still stays within the share.
    Allow,
}

impl SymlinkPolicy {
    /// The policy's configuration keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            SymlinkPolicy::Deny => "deny",
            SymlinkPolicy::Inside => "inside",
            SymlinkPolicy::Allow => "allow",
        }
    }

    fn from_keyword(word: &str) -> Option<SymlinkPolicy> {
        match word {
            "deny" => Some(SymlinkPolicy::Deny),
            "inside" => Some(SymlinkPolicy::Inside),
            "allow" => Some(SymlinkPolicy::Allow),
            _ => None,
        }
    }

    /// Whether the guest may create links at all.
    pub fn allows_creation(self) -> bool {
        self != SymlinkPolicy::Deny
    }

    /// Whether the host follows links during path resolution.
    pub fn follows(self) -> bool {
        self != SymlinkPolicy::Deny
    }
}

/// One shared directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareConfig {
    /// The name the guest maps.
    pub name: String,
    /// The host directory.
    pub path: PathBuf,
    /// Whether the guest may change the share.
    pub writable: bool,
    /// Whether guest automounters should mount it.
    pub auto_mount: bool,
    /// The symlink policy.
    pub symlinks: SymlinkPolicy,
    /// The auto-mount point reported to the guest (may be empty).
    pub mount_point: String,
}

impl ShareConfig {
    /// A writable share with the default policy and no auto-mount.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ShareConfig {
        ShareConfig {
            name: name.into(),
            path: path.into(),
            writable: true,
            auto_mount: false,
            symlinks: SymlinkPolicy::default(),
            mount_point: String::new(),
        }
    }

    /// Checks the name and path rules of the configuration syntax.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        if !self.path.is_absolute() {
            return Err(ConfigError::RelativePath(self.path.clone()));
        }
        if self.mount_point.contains('\0') {
            return Err(ConfigError::BadMountPoint(self.mount_point.clone()));
        }
        Ok(())
    }

    /// The entry in configuration syntax (what [`ServiceConfig::parse`] reads back).
    pub fn to_config_entry(&self) -> String {
        let mut entry = format!(
            "share={}:{}",
            escape(&self.name),
            escape(&self.path.to_string_lossy())
        );
        entry.push_str(if self.writable { ":rw" } else { ":ro" });
        if self.auto_mount {
            entry.push_str(":auto");
        }
        entry.push_str(":symlinks=");
        entry.push_str(self.symlinks.keyword());
        if !self.mount_point.is_empty() {
            entry.push_str(":mount=");
            entry.push_str(&escape(&self.mount_point));
        }
        entry
    }
}

/// The whole service configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The shares, in root-ID order.
    pub shares: Vec<ShareConfig>,
    /// Most handles one client may hold open.
    pub max_handles: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            shares: Vec::new(),
            max_handles: DEFAULT_MAX_HANDLES,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A backslash at the very end.
    #[error("dangling escape at the end of the configuration")]
    DanglingEscape,
    /// An entry that is not `key=value`.
    #[error("unknown configuration entry {0:?}")]
    UnknownEntry(String),
    /// `share=` without a path.
    #[error("share entry {0:?} needs NAME:PATH")]
    MissingPath(String),
    /// An unknown or repeated share flag.
    #[error("share {share:?}: unknown or repeated option {option:?}")]
    BadShareOption {
        /// The share.
        share: String,
        /// The option.
        option: String,
    },
    /// An empty, too long or otherwise unusable share name.
    #[error("invalid share name {0:?}")]
    BadName(String),
    /// Two shares whose names differ only in case.
    #[error("share name {0:?} is used twice")]
    DuplicateName(String),
    /// The share path is not absolute.
    #[error("share path {0:?} is not absolute")]
    RelativePath(PathBuf),
    /// A mount point with a NUL byte.
    #[error("invalid auto-mount point {0:?}")]
    BadMountPoint(String),
    /// The share directory cannot be opened.
    #[error("share path {path:?} cannot be opened: {reason}")]
    Unreachable {
        /// The path.
        path: PathBuf,
        /// The host error text.
        reason: String,
    },
    /// More than 64 shares.
    #[error("more than {SHFL_MAX_MAPPINGS} shares")]
    TooManyShares,
    /// A `max_handles` that is not a number in range, or given twice.
    #[error("invalid max_handles {0:?}")]
    BadMaxHandles(String),
}

/// A configuration character and whether it was escaped.
type Char = (char, bool);

fn tokenize(text: &str) -> Result<Vec<Vec<Char>>, ConfigError> {
    let mut tokens = Vec::new();
    let mut current: Vec<Char> = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push((chars.next().ok_or(ConfigError::DanglingEscape)?, true)),
            c if c.is_whitespace() || c == ';' => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push((c, false)),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

fn text(chars: &[Char]) -> String {
    chars.iter().map(|(c, _)| *c).collect()
}

/// Splits at the first unescaped `separator`.
fn split_once(chars: &[Char], separator: char) -> Option<(&[Char], &[Char])> {
    let at = chars
        .iter()
        .position(|&(c, escaped)| c == separator && !escaped)?;
    Some((&chars[..at], &chars[at + 1..]))
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ':' | ';') || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_SHARE_NAME_CHARS || name.contains(['\0', '/', '\\']) {
        return Err(ConfigError::BadName(name.to_owned()));
    }
    Ok(())
}

fn parse_share(value: &[Char]) -> Result<ShareConfig, ConfigError> {
    let mut fields = Vec::new();
    let mut rest = value;
    while let Some((field, tail)) = split_once(rest, ':') {
        fields.push(field);
        rest = tail;
    }
    fields.push(rest);
    let [name, path, options @ ..] = fields.as_slice() else {
        return Err(ConfigError::MissingPath(text(value)));
    };
    let mut share = ShareConfig::new(text(name), PathBuf::from(text(path)));
    let mut seen_access = false;
    let mut seen_auto = false;
    let mut seen_symlinks = false;
    let mut seen_mount = false;
    for option in options {
        let option_text = text(option);
        let bad = || ConfigError::BadShareOption {
            share: share.name.clone(),
            option: option_text.clone(),
        };
        match split_once(option, '=') {
            None if (option_text == "ro" || option_text == "rw") && !seen_access => {
                share.writable = option_text == "rw";
                seen_access = true;
            }
            None if option_text == "auto" && !seen_auto => {
                share.auto_mount = true;
                seen_auto = true;
            }
            Some((key, value)) if text(key) == "symlinks" && !seen_symlinks => {
                share.symlinks = SymlinkPolicy::from_keyword(&text(value)).ok_or_else(bad)?;
                seen_symlinks = true;
            }
            Some((key, value)) if text(key) == "mount" && !seen_mount => {
                share.mount_point = text(value);
                seen_mount = true;
            }
            _ => return Err(bad()),
        }
    }
    share.validate()?;
    Ok(share)
}

impl ServiceConfig {
    /// Parses a configuration string (syntax in the module documentation). Share paths are not
    /// checked here; [`ServiceConfig::check_paths`] does that.
    pub fn parse(config: &str) -> Result<ServiceConfig, ConfigError> {
        let mut parsed = ServiceConfig::default();
        let mut seen_max_handles = false;
        for token in tokenize(config)? {
            let Some((key, value)) = split_once(&token, '=') else {
                return Err(ConfigError::UnknownEntry(text(&token)));
            };
            match text(key).as_str() {
                "share" => {
                    let share = parse_share(value)?;
                    if parsed.find(&share.name).is_some() {
                        return Err(ConfigError::DuplicateName(share.name));
                    }
                    if parsed.shares.len() >= SHFL_MAX_MAPPINGS as usize {
                        return Err(ConfigError::TooManyShares);
                    }
                    parsed.shares.push(share);
                }
                "max_handles" if !seen_max_handles => {
                    let value = text(value);
                    parsed.max_handles = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_HANDLES_LIMIT).contains(n))
                        .ok_or(ConfigError::BadMaxHandles(value))?;
                    seen_max_handles = true;
                }
                _ => return Err(ConfigError::UnknownEntry(text(&token))),
            }
        }
        Ok(parsed)
    }

    /// The share whose name equals `name` ignoring case.
    pub fn find(&self, name: &str) -> Option<&ShareConfig> {
        self.shares.iter().find(|s| names_match(&s.name, name))
    }

    /// Checks that every share directory can be opened.
    pub fn check_paths(&self) -> Result<(), ConfigError> {
        for share in &self.shares {
            check_directory(&share.path)?;
        }
        Ok(())
    }
}

fn check_directory(path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ConfigError::Unreachable {
            path: path.to_owned(),
            reason: "not a directory".to_owned(),
        }),
        Err(e) => Err(ConfigError::Unreachable {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Whether two share names are the same for the guest (case-insensitive, like VirtualBox).
pub fn names_match(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_share_entry_parses_every_field() {
        let config =
            ServiceConfig::parse("share=data:/srv/data:ro:auto:symlinks=inside:mount=/mnt/d")
                .expect("valid");
        assert_eq!(
            config.shares,
            [ShareConfig {
                name: "data".into(),
                path: "/srv/data".into(),
                writable: false,
                auto_mount: true,
                symlinks: SymlinkPolicy::Inside,
                mount_point: "/mnt/d".into(),
            }]
        );
        assert_eq!(config.max_handles, DEFAULT_MAX_HANDLES);
    }

    #[test]
    fn defaults_are_writable_no_automount_deny_symlinks() {
        let config = ServiceConfig::parse("share=a:/x").expect("valid");
        assert_eq!(config.shares, [ShareConfig::new("a", "/x")]);
    }

    #[test]
    fn entries_separate_on_whitespace_and_semicolons() {
        let config = ServiceConfig::parse(" share=a:/x;share=b:/y\nmax_handles=7 ").expect("ok");
        assert_eq!(config.shares.len(), 2);
        assert_eq!(config.max_handles, 7);
    }

    #[test]
    fn escapes_allow_colons_and_spaces_in_paths() {
        let config = ServiceConfig::parse(r"share=a:/my\ dir/c\:d").expect("valid");
        assert_eq!(config.shares[0].path, PathBuf::from("/my dir/c:d"));
    }

    #[test]
    fn config_entry_round_trips() {
        let mut share = ShareConfig::new("n a", "/p:q;r");
        share.symlinks = SymlinkPolicy::Allow;
        share.mount_point = "/m".into();
        let parsed = ServiceConfig::parse(&share.to_config_entry()).expect("round trip");
        assert_eq!(parsed.shares, [share]);
    }

    #[test]
    fn unknown_option_is_refused() {
        assert!(matches!(
            ServiceConfig::parse("share=a:/x:fast"),
            Err(ConfigError::BadShareOption { .. })
        ));
    }

    #[test]
    fn repeated_option_is_refused() {
        assert!(matches!(
            ServiceConfig::parse("share=a:/x:ro:rw"),
            Err(ConfigError::BadShareOption { .. })
        ));
    }

    #[test]
    fn unknown_symlink_policy_is_refused() {
        assert!(ServiceConfig::parse("share=a:/x:symlinks=sometimes").is_err());
    }

    #[test]
    fn relative_path_is_refused() {
        assert_eq!(
            ServiceConfig::parse("share=a:x"),
            Err(ConfigError::RelativePath("x".into()))
        );
    }

    #[test]
    fn names_differing_only_in_case_are_duplicates() {
        assert_eq!(
            ServiceConfig::parse("share=Data:/a share=data:/b"),
            Err(ConfigError::DuplicateName("data".into()))
        );
    }

    #[test]
    fn names_with_delimiters_or_empty_are_refused() {
        assert!(ServiceConfig::parse("share=a/b:/x").is_err());
        assert!(ServiceConfig::parse("share=:/x").is_err());
    }

    #[test]
    fn share_without_path_is_refused() {
        assert!(matches!(
            ServiceConfig::parse("share=a"),
            Err(ConfigError::MissingPath(_))
        ));
    }

    #[test]
    fn unknown_entries_and_bare_words_are_refused() {
        assert!(ServiceConfig::parse("shares=a:/x").is_err());
        assert!(ServiceConfig::parse("verbose").is_err());
    }

    #[test]
    fn max_handles_out_of_range_is_refused() {
        assert!(ServiceConfig::parse("max_handles=0").is_err());
        assert!(ServiceConfig::parse("max_handles=99999999").is_err());
        assert!(ServiceConfig::parse("max_handles=5 max_handles=6").is_err());
    }

    #[test]
    fn dangling_escape_is_refused() {
        assert_eq!(
            ServiceConfig::parse("share=a:/x\\"),
            Err(ConfigError::DanglingEscape)
        );
    }

    #[test]
    fn sixty_five_shares_are_too_many() {
        let config: String = (0..65).map(|i| format!("share=s{i}:/x ")).collect();
        assert_eq!(
            ServiceConfig::parse(&config),
            Err(ConfigError::TooManyShares)
        );
    }

    #[test]
    fn random_text_never_panics() {
        for input in crate::testutil::random_inputs(5_000, 48) {
            let _ = ServiceConfig::parse(&String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn missing_directory_fails_the_path_check() {
        let config = ServiceConfig::parse("share=a:/nonexistent/vmmdev-sf").expect("syntax");
        assert!(matches!(
            config.check_paths(),
            Err(ConfigError::Unreachable { .. })
        ));
    }
}
