//! Host-side options shared by the binaries that serve the VMMDev device: the services the guest can
//! reach over HGCM, the plugins that provide more of them, shared folders and guest properties.
//!
//! `vmmdev-vfio-user` (the device over vfio-user) and `vmmdev-monitor` (the device in a KVM monitor) offer
//! the same host configuration; this crate is its one definition. A binary flattens [`HostOptions`] into
//! its clap parser, refuses what this build cannot honour with [`HostOptions::unsupported`], and builds the
//! HGCM framework with [`HostOptions::build_hgcm`], then starts the `--control` endpoint over it with
//! [`HostOptions::start_control`] and, for `--clipboard-backend desktop`, the desktop clipboard's sync
//! with [`HostOptions::start_clipboard_sync`].
//!
//! Every value is validated while parsing, so a bad argument is reported as one line before anything is
//! started. Options for services the project does not have yet are validated and then refused
//! explicitly: a binary never accepts a configuration it would silently ignore.
//!
//! ```
//! use clap::Parser;
//! use vmmdev_host_options::HostOptions;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     host: HostOptions,
//! }
//!
//! let cli = Cli::try_parse_from(["prog", "--guest-property", "/VM/Name=test"]).unwrap();
//! assert_eq!(cli.host.guest_properties[0].value, "test");
//! assert!(cli.host.unsupported().is_none());
//! ```

use std::path::PathBuf;

pub mod program;

use clap::Args;
use vmmdev_control::{Control, ControlServer};
use vmmdev_hgcm::{Buffer, Direction, Hgcm, HgcmConfig, Parm};
use vmmdev_protocol::services::shared_folders::{HostFunction, SERVICE_NAME as SHARED_FOLDERS};
use vmmdev_svc_shared_folders::config::{ShareConfig, SymlinkPolicy};
use vmmdev_svc_shared_folders::host::add_mapping_params;

/// Longest guest property name in bytes (the service's limit is 64 including the terminator).
const MAX_PROPERTY_NAME: usize = 63;
/// Longest guest property value in bytes (1024 including the terminator).
const MAX_PROPERTY_VALUE: usize = 1023;

/// The host configuration options (flatten into a clap parser).
#[derive(Clone, Debug, Default, Args)]
pub struct HostOptions {
    /// Shares the host directory PATH with the guest as NAME (repeatable). Options: ",ro" read-only;
    /// ",auto" for guest automounters; ",symlinks=deny|inside|allow" whether the guest may create
    /// symbolic links (deny, the default), only ones whose target stays in the share, or any.
    #[arg(
        long = "share",
        value_name = "NAME=PATH[,ro][,auto][,symlinks=POLICY]",
        value_parser = parse_share
    )]
    pub shares: Vec<Share>,

    /// Sets a guest property before the guest starts (repeatable); VALUE is everything after the
    /// first '=', commas included.
    #[arg(long = "guest-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub guest_properties: Vec<GuestProperty>,

    /// Keeps the guest properties in FILE, so every property write the guest saw succeed survives a
    /// crash or restart of this process (written through, replaced atomically). Without it the
    /// properties live in memory only.
    #[arg(long = "property-store", value_name = "FILE", value_parser = parse_store)]
    pub property_store: Option<PathBuf>,

    /// Narrows which guest callers may read and write which guest property names (repeatable):
    /// WHO:ACCESS:PREFIX, WHO one or more of kernel, root, user, vboxuser, all joined with '+',
    /// ACCESS rw, ro or none, PREFIX a name prefix or '*'. Without rules every caller may do what
    /// VirtualBox allows.
    #[arg(
        long = "guest-property-policy",
        value_name = "WHO:ACCESS:PREFIX",
        value_parser = parse_policy_rule
    )]
    pub guest_property_policy: Vec<String>,

    /// Loads an HGCM service plugin: a path, or a NAME looked up as lib<NAME>.so next to this
    /// executable (repeatable).
    #[arg(long = "plugin", value_name = "NAME|PATH")]
    pub plugins: Vec<String>,

    /// Serves the control endpoint on the Unix socket PATH, so `vmmdev-ctl --control PATH` can read
    /// and change guest properties and shared folders while the guest runs.
    #[arg(long = "control", value_name = "PATH")]
    pub control: Option<PathBuf>,

    /// Which way the shared clipboard may carry data: off, host-to-guest, guest-to-host or
    /// bidirectional (the default; the host side is an in-memory clipboard driven by the control
    /// endpoint, so nothing of the host desktop's clipboard reaches the guest unless put there).
    #[arg(long = "clipboard-mode", value_name = "MODE", value_parser = parse_clipboard_mode)]
    pub clipboard_mode: Option<vmmdev_svc_clipboard::Mode>,

    /// What holds the host side of the shared clipboard: memory (the default: headless, driven by
    /// the control endpoint) or desktop (the host desktop's clipboard through DISPLAY or
    /// WAYLAND_DISPLAY, kept in step with the guest both ways; needs a build with the cargo feature
    /// desktop-clipboard).
    #[arg(
        long = "clipboard-backend",
        value_name = "BACKEND",
        value_parser = parse_clipboard_backend
    )]
    pub clipboard_backend: Option<ClipboardBackend>,

    /// Registers no built-in service (by default "Echo", the example service,
    /// "VBoxGuestPropSvc", the guest properties, "VBoxSharedFolders" and "VBoxSharedClipboard" are
    /// built in).
    #[arg(long)]
    pub no_default_services: bool,
}

/// A `--share` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// Name the guest mounts.
    pub name: String,
    /// Host directory.
    pub path: PathBuf,
    /// Whether the guest may only read.
    pub read_only: bool,
    /// Whether guest automounters should mount it.
    pub auto_mount: bool,
    /// Which symbolic links the guest may create.
    pub symlinks: SymlinkPolicy,
}

/// A `--clipboard-backend` option.
pub type ClipboardBackend = vmmdev_svc_clipboard::config::BackendKind;

/// How often the desktop clipboard and the guests are brought in step (`--clipboard-backend
/// desktop`): a copy on either side reaches the other within this time.
pub const DESKTOP_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// A `--guest-property` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestProperty {
    /// Property name.
    pub key: String,
    /// Property value.
    pub value: String,
}

/// Errors of setting up the host services.
#[derive(Debug, thiserror::Error)]
pub enum HostSetupError {
    /// A built-in service could not be registered.
    #[error("built-in {service} service")]
    Builtin {
        /// The service.
        service: &'static str,
        /// Why.
        #[source]
        source: vmmdev_hgcm::RegisterError,
    },
    /// A `--guest-property` could not be set.
    #[error("--guest-property {key}: the guest properties service refused it with {status}")]
    GuestProperty {
        /// The property name.
        key: String,
        /// The service's status.
        status: vmmdev_hgcm::Status,
    },
    /// A `--guest-property` could not reach the service at all.
    #[error("--guest-property {key}")]
    GuestPropertyCall {
        /// The property name.
        key: String,
        /// Why.
        #[source]
        source: vmmdev_hgcm::HostCallError,
    },
    /// A `--share` could not be added.
    #[error("--share {name}: the shared folders service refused it with {status}")]
    Share {
        /// The share name.
        name: String,
        /// The service's status.
        status: vmmdev_hgcm::Status,
    },
    /// A `--share` could not reach the service at all.
    #[error("--share {name}")]
    ShareCall {
        /// The share name.
        name: String,
        /// Why.
        #[source]
        source: vmmdev_hgcm::HostCallError,
    },
    /// The `--control` endpoint could not start.
    #[error("--control")]
    Control(#[source] vmmdev_control::ServerError),
    /// `--clipboard-backend desktop`, but the desktop's clipboard cannot be opened.
    #[error(
        "--clipboard-backend desktop: the host desktop's clipboard cannot be opened \
         (DISPLAY={display:?}, WAYLAND_DISPLAY={wayland:?}; the log has the details)"
    )]
    DesktopClipboard {
        /// `DISPLAY` as this process sees it.
        display: Option<String>,
        /// `WAYLAND_DISPLAY` as this process sees it.
        wayland: Option<String>,
    },
    /// The thread that keeps the desktop clipboard in step could not start.
    #[error("--clipboard-backend desktop: cannot start the sync thread")]
    DesktopSync(#[source] std::io::Error),
    /// A `--plugin` could not be loaded; this is the user's argument, so binaries report it as a usage
    /// error.
    #[error("--plugin {plugin}")]
    Plugin {
        /// The argument as given.
        plugin: String,
        /// Why.
        #[source]
        source: vmmdev_hgcm::LoadError,
    },
}

impl HostOptions {
    /// The first option naming a service this build does not have, as a message.
    pub fn unsupported(&self) -> Option<String> {
        if self.clipboard_backend == Some(ClipboardBackend::Desktop)
            && !cfg!(feature = "desktop-clipboard")
        {
            return Some(
                "--clipboard-backend desktop: this build has no desktop clipboard (build with \
                 the cargo feature desktop-clipboard)"
                    .to_owned(),
            );
        }
        if self.no_default_services {
            if self.clipboard_mode.is_some() {
                return Some(
                    "--clipboard-mode: needs the built-in shared clipboard service, which \
                     --no-default-services leaves out"
                        .to_owned(),
                );
            }
            if self.clipboard_backend.is_some() {
                return Some(
                    "--clipboard-backend: needs the built-in shared clipboard service, which \
                     --no-default-services leaves out"
                        .to_owned(),
                );
            }
            if let Some(share) = self.shares.first() {
                return Some(format!(
                    "--share {}: needs the built-in shared folders service, which \
                     --no-default-services leaves out",
                    share.name
                ));
            }
            if let Some(property) = self.guest_properties.first() {
                return Some(format!(
                    "--guest-property {}: needs the built-in guest properties service, which \
                     --no-default-services leaves out",
                    property.key
                ));
            }
            if self.property_store.is_some() {
                return Some(
                    "--property-store: needs the built-in guest properties service, which \
                     --no-default-services leaves out"
                        .to_owned(),
                );
            }
            if let Some(rule) = self.guest_property_policy.first() {
                return Some(format!(
                    "--guest-property-policy {rule}: needs the built-in guest properties service, \
                     which --no-default-services leaves out"
                ));
            }
        }
        None
    }

    /// Creates the HGCM framework with the built-in services (unless `--no-default-services`) and the
    /// `--plugin`s, in that order. Plugins named without a path are looked up next to the executable.
    pub fn build_hgcm(&self) -> Result<Hgcm, HostSetupError> {
        let hgcm = Hgcm::new(HgcmConfig {
            plugin_search_path: plugin_search_path(),
            ..HgcmConfig::default()
        });
        if !self.no_default_services {
            let name = hgcm
                .register_builtin(vmmdev_svc_echo::echo_entry, "")
                .map_err(|source| HostSetupError::Builtin {
                    service: "Echo",
                    source,
                })?;
            log::info!("built-in service {name:?} registered");
            let config = self
                .property_store
                .iter()
                .map(|store| format!("store={}", store.display()))
                .chain(
                    self.guest_property_policy
                        .iter()
                        .map(|rule| format!("policy={rule}")),
                )
                .collect::<Vec<_>>()
                .join(",");
            let name = hgcm
                .register_builtin(vmmdev_svc_guest_props::guest_props_entry, &config)
                .map_err(|source| HostSetupError::Builtin {
                    service: vmmdev_svc_guest_props::SERVICE_NAME,
                    source,
                })?;
            log::info!("built-in service {name:?} registered");
            for property in &self.guest_properties {
                set_guest_property(&hgcm, property)?;
            }
            let name = hgcm
                .register_builtin(vmmdev_svc_shared_folders::shared_folders_entry, "")
                .map_err(|source| HostSetupError::Builtin {
                    service: SHARED_FOLDERS,
                    source,
                })?;
            log::info!("built-in service {name:?} registered");
            for share in &self.shares {
                add_share(&hgcm, share)?;
            }
            let mode = self
                .clipboard_mode
                .unwrap_or(vmmdev_svc_clipboard::Mode::BIDIRECTIONAL);
            let desktop = self.clipboard_backend == Some(ClipboardBackend::Desktop);
            let config = format!(
                "mode={},backend={}",
                vmmdev_svc_clipboard::config::mode_name(mode).unwrap_or("off"),
                if desktop { "desktop" } else { "memory" }
            );
            let name = hgcm
                .register_builtin(vmmdev_svc_clipboard::clipboard_entry, &config)
                .map_err(|source| {
                    if desktop {
                        HostSetupError::DesktopClipboard {
                            display: std::env::var("DISPLAY").ok(),
                            wayland: std::env::var("WAYLAND_DISPLAY").ok(),
                        }
                    } else {
                        HostSetupError::Builtin {
                            service: vmmdev_svc_clipboard::SERVICE_NAME,
                            source,
                        }
                    }
                })?;
            log::info!("built-in service {name:?} registered ({config})");
        }
        for plugin in &self.plugins {
            let name = hgcm
                .load_plugin(plugin, "")
                .map_err(|source| HostSetupError::Plugin {
                    plugin: plugin.clone(),
                    source,
                })?;
            log::info!("plugin {plugin} provides service {name:?}");
        }
        Ok(hgcm)
    }

    /// Starts the `--control` endpoint over `hgcm`, if asked for; it serves until dropped.
    pub fn start_control(&self, hgcm: &Hgcm) -> Result<Option<ControlServer>, HostSetupError> {
        let Some(path) = &self.control else {
            return Ok(None);
        };
        ControlServer::start(path, Control::new(hgcm.clone()))
            .map(Some)
            .map_err(HostSetupError::Control)
    }

    /// Starts keeping the desktop clipboard and the guests in step, if `--clipboard-backend
    /// desktop` asked for it (every [`DESKTOP_SYNC_INTERVAL`]); it runs until dropped. Call it on
    /// the framework [`HostOptions::build_hgcm`] built.
    pub fn start_clipboard_sync(
        &self,
        hgcm: &Hgcm,
    ) -> Result<Option<vmmdev_svc_clipboard::DesktopSync>, HostSetupError> {
        if self.clipboard_backend != Some(ClipboardBackend::Desktop) || self.no_default_services {
            return Ok(None);
        }
        let hgcm = hgcm.clone();
        let client =
            vmmdev_svc_clipboard::ClipboardHost::new(move |function, params: &mut [Parm]| {
                hgcm.host_call(vmmdev_svc_clipboard::SERVICE_NAME, function, params)
            });
        let sync = vmmdev_svc_clipboard::DesktopSync::start(client, DESKTOP_SYNC_INTERVAL)
            .map_err(HostSetupError::DesktopSync)?;
        log::info!(
            "shared clipboard: the desktop's clipboard is synced every {} ms",
            DESKTOP_SYNC_INTERVAL.as_millis()
        );
        Ok(Some(sync))
    }
}

/// Adds one `--share` through the shared folders service's host interface.
fn add_share(hgcm: &Hgcm, share: &Share) -> Result<(), HostSetupError> {
    let mut config = ShareConfig::new(share.name.clone(), share.path.clone());
    config.writable = !share.read_only;
    config.auto_mount = share.auto_mount;
    config.symlinks = share.symlinks;
    // The name and path were validated while parsing; a string the service cannot encode is
    // reported as the service's refusal.
    let mut params = add_mapping_params(&config, false).map_err(|_| HostSetupError::Share {
        name: share.name.clone(),
        status: vmmdev_hgcm::Status::VERR_INVALID_PARAMETER,
    })?;
    let status = hgcm
        .host_call(SHARED_FOLDERS, HostFunction::ADD_MAPPING.raw(), &mut params)
        .map_err(|source| HostSetupError::ShareCall {
            name: share.name.clone(),
            source,
        })?;
    let status = vmmdev_hgcm::Status(status);
    if status.is_failure() {
        return Err(HostSetupError::Share {
            name: share.name.clone(),
            status,
        });
    }
    log::info!("share {} = {}", share.name, share.path.display());
    Ok(())
}

/// Sets one `--guest-property` through the service's host interface (no flags: the guest may change it).
fn set_guest_property(hgcm: &Hgcm, property: &GuestProperty) -> Result<(), HostSetupError> {
    let text = |s: &str| {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        Parm::Buffer(Buffer::host(bytes, Direction::ToHost))
    };
    let mut params = [text(&property.key), text(&property.value), text("")];
    let status = hgcm
        .host_call(
            vmmdev_svc_guest_props::SERVICE_NAME,
            vmmdev_svc_guest_props::HostFunction::SET_PROP.raw(),
            &mut params,
        )
        .map_err(|source| HostSetupError::GuestPropertyCall {
            key: property.key.clone(),
            source,
        })?;
    let status = vmmdev_hgcm::Status(status);
    if status.is_failure() {
        return Err(HostSetupError::GuestProperty {
            key: property.key.clone(),
            status,
        });
    }
    log::info!("guest property {} set", property.key);
    Ok(())
}

/// A `--guest-property-policy` rule: the service's rule syntax, without ',' (the service's
/// configuration is a comma-separated list).
fn parse_policy_rule(text: &str) -> Result<String, String> {
    if text.contains(',') {
        return Err(format!("the policy rule '{text}' must not contain ','"));
    }
    vmmdev_svc_guest_props::policy::Rule::parse(text)
        .map(|_| text.to_owned())
        .map_err(|error| error.to_string())
}

fn parse_clipboard_mode(text: &str) -> Result<vmmdev_svc_clipboard::Mode, String> {
    vmmdev_svc_clipboard::config::parse_mode(text).ok_or_else(|| {
        format!("unknown mode {text:?} (off, host-to-guest, guest-to-host, bidirectional)")
    })
}

fn parse_clipboard_backend(text: &str) -> Result<ClipboardBackend, String> {
    match text {
        "memory" => Ok(ClipboardBackend::Memory),
        "desktop" => Ok(ClipboardBackend::Desktop),
        _ => Err(format!("unknown backend {text:?} (memory, desktop)")),
    }
}

/// A `--property-store` file: its directory must exist, and the path must not contain a comma (the
/// service's configuration is a comma-separated list).
fn parse_store(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the property store path is empty".to_owned());
    }
    if text.contains(',') {
        return Err(format!(
            "the property store path '{text}' must not contain ','"
        ));
    }
    let path = PathBuf::from(text);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "the property store's directory {} does not exist",
            dir.display()
        ));
    }
    Ok(path)
}

/// The directory of the running executable, where plugins named without a path are looked up.
fn plugin_search_path() -> Vec<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .into_iter()
        .collect()
}

fn parse_share(text: &str) -> Result<Share, String> {
    let (name, rest) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=PATH[,ro][,auto][,symlinks=POLICY]"))?;
    if name.is_empty() || name.contains(['/', '\\', '\0', ',']) {
        return Err(format!(
            "share name '{name}' must be non-empty, without '/', '\\', ',' or NUL"
        ));
    }
    let mut parts = rest.split(',');
    let path = parts.next().unwrap_or_default();
    if path.is_empty() {
        return Err(format!("share '{name}' has no path"));
    }
    let mut share = Share {
        name: name.to_owned(),
        path: PathBuf::from(path),
        read_only: false,
        auto_mount: false,
        symlinks: SymlinkPolicy::Deny,
    };
    for option in parts {
        match option {
            "ro" => share.read_only = true,
            "rw" => share.read_only = false,
            "auto" => share.auto_mount = true,
            _ => match option.strip_prefix("symlinks=") {
                Some("deny") => share.symlinks = SymlinkPolicy::Deny,
                Some("inside") => share.symlinks = SymlinkPolicy::Inside,
                Some("allow") => share.symlinks = SymlinkPolicy::Allow,
                _ => {
                    return Err(format!(
                        "share '{name}': unknown option '{option}' (ro, rw, auto, \
                         symlinks=deny|inside|allow; a path must not contain ',')"
                    ));
                }
            },
        }
    }
    if !share.path.is_dir() {
        return Err(format!(
            "share '{name}': {} is not a directory",
            share.path.display()
        ));
    }
    Ok(share)
}

fn parse_property(text: &str) -> Result<GuestProperty, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))?;
    if key.is_empty() || key.len() > MAX_PROPERTY_NAME {
        return Err(format!(
            "guest property name '{key}' must be 1 to {MAX_PROPERTY_NAME} bytes"
        ));
    }
    if key.contains(['*', '?', '|', '\0']) {
        return Err(format!(
            "guest property name '{key}' must not contain '*', '?', '|' or NUL"
        ));
    }
    if value.len() > MAX_PROPERTY_VALUE || value.contains('\0') {
        return Err(format!(
            "guest property '{key}': the value must be at most {MAX_PROPERTY_VALUE} bytes, without NUL"
        ));
    }
    Ok(GuestProperty {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        host: HostOptions,
    }

    fn parse(args: &[&str]) -> Result<HostOptions, clap::Error> {
        Cli::try_parse_from(std::iter::once("prog").chain(args.iter().copied())).map(|c| c.host)
    }

    #[test]
    fn plugins_collect_in_order() {
        let host = parse(&["--plugin", "a", "--plugin", "/p/b.so"]).unwrap();
        assert_eq!(host.plugins, ["a", "/p/b.so"]);
        assert!(!host.no_default_services);
    }

    #[test]
    fn share_takes_name_path_and_read_only_suffix() {
        let dir = std::env::temp_dir();
        let host = parse(&["--share", &format!("docs={},ro", dir.display())]).unwrap();
        assert_eq!(
            host.shares,
            [Share {
                name: "docs".into(),
                path: dir,
                read_only: true,
                auto_mount: false,
                symlinks: SymlinkPolicy::Deny,
            }]
        );
    }

    #[test]
    fn share_of_a_missing_directory_is_refused() {
        let error = parse(&["--share", "x=/no/such/dir"]).unwrap_err();
        assert!(error.to_string().contains("is not a directory"), "{error}");
    }

    #[test]
    fn share_without_name_or_equals_is_refused() {
        assert!(parse(&["--share", "=/tmp"]).is_err());
        assert!(parse(&["--share", "/tmp"]).is_err());
        assert!(parse(&["--share", "a/b=/tmp"]).is_err());
    }

    #[test]
    fn guest_property_value_is_everything_after_the_first_equals() {
        let host = parse(&["--guest-property", "/A/B=x=1,y=2"]).unwrap();
        assert_eq!(
            host.guest_properties,
            [GuestProperty {
                key: "/A/B".into(),
                value: "x=1,y=2".into()
            }]
        );
    }

    #[test]
    fn guest_property_with_invalid_name_is_refused() {
        for arg in ["=v", "a*b=v", "novalue"] {
            assert!(parse(&["--guest-property", arg]).is_err(), "{arg}");
        }
        let long = format!("{}=v", "k".repeat(64));
        assert!(parse(&["--guest-property", &long]).is_err());
    }

    #[test]
    fn shares_without_the_default_services_are_refused() {
        let dir = std::env::temp_dir().display().to_string();
        let host = parse(&["--no-default-services", "--share", &format!("s={dir}")]).unwrap();
        assert!(
            host.unsupported()
                .unwrap()
                .contains("--no-default-services")
        );
        assert_eq!(parse(&[]).unwrap().unsupported(), None);
    }

    #[test]
    fn share_options_set_automount_and_the_symlink_policy() {
        let dir = std::env::temp_dir();
        let arg = format!("s={},auto,symlinks=inside,ro", dir.display());
        let host = parse(&["--share", &arg]).unwrap();
        let share = &host.shares[0];
        assert!(share.auto_mount && share.read_only);
        assert_eq!(share.symlinks, SymlinkPolicy::Inside);
        let bad = format!("s={},symlinks=sometimes", dir.display());
        let error = parse(&["--share", &bad]).unwrap_err().to_string();
        assert!(
            error.contains("unknown option 'symlinks=sometimes'"),
            "{error}"
        );
    }

    #[test]
    fn shares_are_added_before_the_guest_starts() {
        let dir = std::env::temp_dir().join(format!("host-options-share-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hgcm = parse(&["--share", &format!("data={},ro", dir.display())])
            .unwrap()
            .build_hgcm()
            .unwrap();
        let mut params = vmmdev_svc_shared_folders::host::list_shares_params(4096);
        let status = hgcm
            .host_call(
                SHARED_FOLDERS,
                vmmdev_svc_shared_folders::host::HOST_FN_LIST_SHARES,
                &mut params,
            )
            .unwrap();
        hgcm.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(status, 0);
        let listing = vmmdev_svc_shared_folders::host::listed_shares(&params).unwrap();
        assert!(listing.contains("data"), "{listing}");
        assert!(listing.contains(&dir.display().to_string()), "{listing}");
    }

    #[test]
    fn guest_properties_without_the_default_services_are_refused() {
        let host = parse(&["--no-default-services", "--guest-property", "/A=1"]).unwrap();
        let message = host.unsupported().unwrap();
        assert!(message.contains("--no-default-services"), "{message}");
    }

    #[test]
    fn default_services_are_echo_guest_properties_and_shared_folders() {
        let hgcm = parse(&[]).unwrap().build_hgcm().unwrap();
        let names: Vec<String> = hgcm.services().iter().map(|s| s.name.to_string()).collect();
        hgcm.shutdown();
        assert_eq!(
            names,
            [
                "Echo",
                "VBoxGuestPropSvc",
                "VBoxSharedFolders",
                "VBoxSharedClipboard"
            ]
        );
    }

    /// Reads a property through the service's host interface.
    fn host_get(hgcm: &Hgcm, key: &str) -> (vmmdev_hgcm::Status, String) {
        let mut name = key.as_bytes().to_vec();
        name.push(0);
        let mut params = [
            Parm::Buffer(Buffer::host(name, Direction::ToHost)),
            Parm::Buffer(Buffer::host(vec![0; 4096], Direction::FromHost)),
            Parm::U64(0),
            Parm::U32(0),
        ];
        let status = hgcm
            .host_call(
                vmmdev_svc_guest_props::SERVICE_NAME,
                vmmdev_svc_guest_props::HostFunction::GET_PROP.raw(),
                &mut params,
            )
            .unwrap();
        let [_, Parm::Buffer(out), ..] = params else {
            unreachable!()
        };
        let bytes = out.into_host_bytes().unwrap();
        let value = bytes.split(|&b| b == 0).next().unwrap_or_default();
        (
            vmmdev_hgcm::Status(status),
            String::from_utf8_lossy(value).into_owned(),
        )
    }

    #[test]
    fn guest_properties_are_set_before_the_guest_starts() {
        let hgcm = parse(&["--guest-property", "/Demo/Greeting=hello, world=1"])
            .unwrap()
            .build_hgcm()
            .unwrap();
        let (status, value) = host_get(&hgcm, "/Demo/Greeting");
        hgcm.shutdown();
        assert!(status.is_success(), "{status}");
        assert_eq!(value, "hello, world=1");
    }

    #[test]
    fn the_property_store_keeps_properties_across_restarts() {
        let dir = std::env::temp_dir().join(format!("host-options-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = dir.join("props.json").display().to_string();
        let first = parse(&["--property-store", &store, "--guest-property", "/Kept=yes"])
            .unwrap()
            .build_hgcm()
            .unwrap();
        first.shutdown();

        let second = parse(&["--property-store", &store])
            .unwrap()
            .build_hgcm()
            .unwrap();
        let (status, value) = host_get(&second, "/Kept");
        second.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(status.is_success(), "{status}");
        assert_eq!(value, "yes");
    }

    #[test]
    fn malformed_guest_property_policy_rules_are_refused_while_parsing() {
        for rule in [
            "user:none",
            "guest:none:/A/",
            "user:write:/A/",
            "user:none:/A*",
            "user:none:/A/,x",
        ] {
            assert!(parse(&["--guest-property-policy", rule]).is_err(), "{rule}");
        }
    }

    #[test]
    fn guest_property_policy_rules_and_the_store_reach_the_service_together() {
        let dir = std::env::temp_dir().join(format!("host-options-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = dir.join("props.json").display().to_string();
        let hgcm = parse(&[
            "--property-store",
            &store,
            "--guest-property-policy",
            "user:none:/Secret/",
            "--guest-property-policy",
            "root+user:ro:*",
            "--guest-property",
            "/Kept=yes",
        ])
        .unwrap()
        .build_hgcm()
        .unwrap();
        hgcm.shutdown();
        let stored = std::fs::read_to_string(dir.join("props.json")).unwrap_or_default();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(stored.contains("/Kept"), "{stored}");
    }

    #[test]
    fn guest_property_policy_without_the_default_services_is_refused() {
        let host = parse(&[
            "--no-default-services",
            "--guest-property-policy",
            "user:none:/A/",
        ])
        .unwrap();
        let message = host.unsupported().unwrap();
        assert!(message.contains("--guest-property-policy"), "{message}");
    }

    #[test]
    fn a_property_store_with_a_comma_or_a_missing_directory_is_refused() {
        assert!(parse(&["--property-store", "/tmp/a,b"]).is_err());
        assert!(parse(&["--property-store", "/no/such/dir/props"]).is_err());
    }

    #[test]
    fn clipboard_mode_reaches_the_service_and_defaults_to_bidirectional() {
        use vmmdev_svc_clipboard::host::HOST_FN_GET_MODE;
        let mode_of = |args: &[&str]| {
            let hgcm = parse(args).unwrap().build_hgcm().unwrap();
            let mut params = [Parm::U32(99)];
            let status = hgcm
                .host_call(
                    vmmdev_svc_clipboard::SERVICE_NAME,
                    HOST_FN_GET_MODE,
                    &mut params,
                )
                .unwrap();
            hgcm.shutdown();
            assert_eq!(status, 0);
            params[0].as_u32()
        };
        assert_eq!(mode_of(&[]), Some(3));
        assert_eq!(mode_of(&["--clipboard-mode", "host-to-guest"]), Some(1));
        assert_eq!(mode_of(&["--clipboard-mode", "off"]), Some(0));
    }

    #[test]
    fn unknown_clipboard_mode_is_refused_while_parsing() {
        let error = parse(&["--clipboard-mode", "sideways"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown mode \"sideways\""), "{error}");
        let refused = parse(&["--no-default-services", "--clipboard-mode", "off"])
            .unwrap()
            .unsupported()
            .unwrap();
        assert!(refused.starts_with("--clipboard-mode"), "{refused}");
    }

    #[test]
    fn clipboard_backend_parses_and_is_refused_where_it_cannot_work() {
        let error = parse(&["--clipboard-backend", "x11"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown backend \"x11\""), "{error}");
        let memory = parse(&["--clipboard-backend", "memory"]).unwrap();
        assert_eq!(memory.clipboard_backend, Some(ClipboardBackend::Memory));
        assert_eq!(memory.unsupported(), None);
        let refused = parse(&["--no-default-services", "--clipboard-backend", "memory"])
            .unwrap()
            .unsupported()
            .unwrap();
        assert!(refused.starts_with("--clipboard-backend"), "{refused}");
        let desktop = parse(&["--clipboard-backend", "desktop"]).unwrap();
        if cfg!(feature = "desktop-clipboard") {
            assert_eq!(desktop.unsupported(), None);
        } else {
            let refused = desktop.unsupported().unwrap();
            assert!(
                refused.contains("build with the cargo feature desktop-clipboard"),
                "{refused}"
            );
        }
    }

    #[test]
    fn only_the_desktop_backend_starts_a_sync_thread() {
        for args in [&[][..], &["--clipboard-backend", "memory"][..]] {
            let host = parse(args).unwrap();
            let hgcm = host.build_hgcm().unwrap();
            assert!(
                host.start_clipboard_sync(&hgcm).unwrap().is_none(),
                "{args:?}"
            );
            hgcm.shutdown();
        }
    }

    #[test]
    fn no_default_services_registers_nothing() {
        let hgcm = parse(&["--no-default-services"])
            .unwrap()
            .build_hgcm()
            .unwrap();
        let count = hgcm.services().len();
        hgcm.shutdown();
        assert_eq!(count, 0);
    }

    #[test]
    fn missing_plugin_is_reported_with_its_argument() {
        let error = parse(&["--plugin", "/no/such/libplugin.so"])
            .unwrap()
            .build_hgcm()
            .unwrap_err();
        assert!(
            error.to_string().contains("/no/such/libplugin.so"),
            "{error}"
        );
    }

    #[test]
    fn control_endpoint_serves_the_built_in_guest_properties() {
        use std::io::{BufRead, BufReader, Write};
        let dir = std::env::temp_dir().join(format!("host-options-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let socket = dir.join("control.sock");
        let host = parse(&[
            "--control",
            &socket.to_string_lossy(),
            "--guest-property",
            "/Test/Name=vm1",
        ])
        .expect("valid options");
        let hgcm = host.build_hgcm().expect("built-in services");
        let server = host
            .start_control(&hgcm)
            .expect("starts")
            .expect("asked for");
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        stream
            .write_all(b"{\"op\":\"guestproperty.get\",\"name\":\"/Test/Name\"}\n")
            .expect("send");
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).expect("reply");
        drop(server);
        hgcm.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(reply.contains("\"value\":\"vm1\""), "{reply}");
    }

    #[test]
    fn without_control_option_no_endpoint_starts() {
        let host = parse(&["--no-default-services"]).expect("valid options");
        let hgcm = host.build_hgcm().expect("no services");
        assert!(
            host.start_control(&hgcm)
                .expect("nothing to start")
                .is_none()
        );
        hgcm.shutdown();
    }
}
