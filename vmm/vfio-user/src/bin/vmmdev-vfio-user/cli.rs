//! Command-line options of `vmmdev-vfio-user` and their validation.
//!
//! Every value is checked while parsing, so a bad argument is reported as one line before the
//! server touches anything. Options for services the project does not have yet (`--share`,
//! `--guest-property`) are validated and then refused explicitly by [`Cli::unsupported`]: the
//! server never accepts a configuration it would silently ignore.

use std::path::PathBuf;

use clap::Parser;

/// Longest guest property name in bytes (the service's limit is 64 including the terminator).
const MAX_PROPERTY_NAME: usize = 63;
/// Longest guest property value in bytes (1024 including the terminator).
const MAX_PROPERTY_VALUE: usize = 1023;

/// Serves the VirtualBox VMMDev PCI device (80EE:CAFE) and its HGCM services to a VMM over
/// vfio-user (QEMU: -device vfio-user-pci,socket=PATH; Cloud Hypervisor: --user-device).
#[derive(Debug, Parser)]
#[command(name = "vmmdev-vfio-user", version)]
pub struct Cli {
    /// Unix socket to listen on; the VMM connects to it.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,

    /// Shares the host directory PATH with the guest as NAME, read-only with ",ro" (repeatable).
    #[arg(long = "share", value_name = "NAME=PATH[,ro]", value_parser = parse_share)]
    pub shares: Vec<Share>,

    /// Sets a guest property before the guest starts (repeatable); VALUE is everything after the
    /// first '=', commas included.
    #[arg(long = "guest-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub guest_properties: Vec<GuestProperty>,

    /// Loads an HGCM service plugin: a path, or a NAME looked up as lib<NAME>.so next to this
    /// executable (repeatable).
    #[arg(long = "plugin", value_name = "NAME|PATH")]
    pub plugins: Vec<String>,

    /// Registers no built-in service (by default the example service "Echo" is built in).
    #[arg(long)]
    pub no_default_services: bool,

    /// Writes the log to FILE instead of standard error (filter with RUST_LOG, default "info").
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Serves one VM, then exits.
    #[arg(long)]
    pub once: bool,
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
}

/// A `--guest-property` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestProperty {
    /// Property name.
    pub key: String,
    /// Property value.
    pub value: String,
}

impl Cli {
    /// The first option naming a service this build does not have, as a message.
    pub fn unsupported(&self) -> Option<String> {
        if let Some(share) = self.shares.first() {
            return Some(format!(
                "--share {}: the shared folders service is not built yet",
                share.name
            ));
        }
        if let Some(property) = self.guest_properties.first() {
            return Some(format!(
                "--guest-property {}: the guest properties service is not built yet",
                property.key
            ));
        }
        None
    }
}

fn parse_share(text: &str) -> Result<Share, String> {
    let (name, rest) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=PATH[,ro]"))?;
    if name.is_empty() || name.contains(['/', '\\', '\0']) {
        return Err(format!(
            "share name '{name}' must be non-empty, without '/', '\\' or NUL"
        ));
    }
    let (path, read_only) = match rest.strip_suffix(",ro") {
        Some(path) => (path, true),
        None => (rest, false),
    };
    if path.is_empty() {
        return Err(format!("share '{name}' has no path"));
    }
    let path = PathBuf::from(path);
    if !path.is_dir() {
        return Err(format!(
            "share '{name}': {} is not a directory",
            path.display()
        ));
    }
    Ok(Share {
        name: name.to_owned(),
        path,
        read_only,
    })
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

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vmmdev-vfio-user").chain(args.iter().copied()))
    }

    #[test]
    fn socket_is_required() {
        let error = parse(&[]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn repeatable_options_collect_in_order() {
        let cli = parse(&[
            "--socket", "/s", "--plugin", "a", "--plugin", "/p/b.so", "--once",
        ])
        .unwrap();
        assert_eq!(cli.plugins, ["a", "/p/b.so"]);
        assert!(cli.once);
        assert!(!cli.no_default_services);
    }

    #[test]
    fn share_takes_name_path_and_read_only_suffix() {
        let dir = std::env::temp_dir();
        let cli = parse(&[
            "--socket",
            "/s",
            "--share",
            &format!("docs={},ro", dir.display()),
        ])
        .unwrap();
        assert_eq!(
            cli.shares,
            [Share {
                name: "docs".into(),
                path: dir,
                read_only: true
            }]
        );
    }

    #[test]
    fn share_of_a_missing_directory_is_refused() {
        let error = parse(&["--socket", "/s", "--share", "x=/no/such/dir"]).unwrap_err();
        assert!(error.to_string().contains("is not a directory"), "{error}");
    }

    #[test]
    fn share_without_name_or_equals_is_refused() {
        assert!(parse(&["--socket", "/s", "--share", "=/tmp"]).is_err());
        assert!(parse(&["--socket", "/s", "--share", "/tmp"]).is_err());
        assert!(parse(&["--socket", "/s", "--share", "a/b=/tmp"]).is_err());
    }

    #[test]
    fn guest_property_value_is_everything_after_the_first_equals() {
        let cli = parse(&["--socket", "/s", "--guest-property", "/A/B=x=1,y=2"]).unwrap();
        assert_eq!(
            cli.guest_properties,
            [GuestProperty {
                key: "/A/B".into(),
                value: "x=1,y=2".into()
            }]
        );
    }

    #[test]
    fn guest_property_with_invalid_name_is_refused() {
        for arg in ["=v", "a*b=v", "novalue"] {
            assert!(
                parse(&["--socket", "/s", "--guest-property", arg]).is_err(),
                "{arg}"
            );
        }
        let long = format!("{}=v", "k".repeat(64));
        assert!(parse(&["--socket", "/s", "--guest-property", &long]).is_err());
    }

    #[test]
    fn options_for_missing_services_are_refused_explicitly() {
        let cli = parse(&["--socket", "/s", "--guest-property", "/A=1"]).unwrap();
        let message = cli.unsupported().unwrap();
        assert!(
            message.contains("guest properties service is not built yet"),
            "{message}"
        );
        let dir = std::env::temp_dir().display().to_string();
        let cli = parse(&["--socket", "/s", "--share", &format!("s={dir}")]).unwrap();
        assert!(cli.unsupported().unwrap().contains("shared folders"));
        assert_eq!(parse(&["--socket", "/s"]).unwrap().unsupported(), None);
    }
}
