//! Finding and opening plugin libraries.
//!
//! A plugin is named either by a path (anything containing `/`) or by a name looked up in the
//! configured search path as `lib<name>.so`, then `<name>.so`. Every failure is one typed error
//! whose message is a single line naming the file.

use std::path::{Path, PathBuf};

use libloading::Library;
use vmmdev_hgcm_abi::LoadEntry;
use vmmdev_hgcm_abi::ffi::{LOAD_SYMBOL, LOAD_SYMBOL_C};

use crate::worker::RegisterError;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file of that name in the search path.
    #[error("plugin {name:?} not found in the search path {searched:?}")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The files tried.
        searched: Vec<PathBuf>,
    },
    /// The path names no file.
    #[error("plugin file {0} does not exist")]
    FileMissing(PathBuf),
    /// The file is not a loadable shared library.
    #[error("plugin {path} is not a loadable library: {reason}")]
    NotLoadable {
        /// The file.
        path: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },
    /// The library does not export the load entry point.
    #[error("plugin {path} does not export the symbol {LOAD_SYMBOL}")]
    SymbolMissing {
        /// The file.
        path: PathBuf,
    },
    /// The library loaded but the service could not be registered.
    #[error("plugin {path}: {source}")]
    Register {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: RegisterError,
    },
}

impl LoadError {
    /// The registration error, if the library itself was found and opened.
    pub fn register_error(&self) -> Option<&RegisterError> {
        match self {
            Self::Register { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Resolves a plugin name or path to a file.
pub(crate) fn resolve(name_or_path: &str, search_path: &[PathBuf]) -> Result<PathBuf, LoadError> {
    if name_or_path.contains('/') {
        let path = PathBuf::from(name_or_path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(LoadError::FileMissing(path))
        };
    }
    let file_names = if name_or_path.ends_with(".so") {
        vec![name_or_path.to_owned()]
    } else {
        vec![
            format!("lib{name_or_path}.so"),
            format!("{name_or_path}.so"),
        ]
    };
    let mut searched = Vec::new();
    for dir in search_path {
        for file_name in &file_names {
            let candidate = dir.join(file_name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate);
        }
    }
    Err(LoadError::NotFound {
        name: name_or_path.to_owned(),
        searched,
    })
}

/// Opens the library and looks up its load entry point.
pub(crate) fn open(path: &Path) -> Result<(Library, LoadEntry), LoadError> {
    // SAFETY: loading a library runs its initialisers; loading plugins is exactly what the
    // embedder asked for, and plugin code is trusted to follow the ABI.
    let library = unsafe { Library::new(path) }.map_err(|e| LoadError::NotLoadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    // SAFETY: the ABI fixes the type of the exported symbol to `LoadEntry`.
    let entry = unsafe { library.get::<LoadEntry>(LOAD_SYMBOL_C) }
        .map(|symbol| *symbol)
        .map_err(|_| LoadError::SymbolMissing {
            path: path.to_owned(),
        })?;
    Ok((library, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hgcm-loader-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn missing_path_is_file_missing() {
        let err = resolve("/nonexistent/libx.so", &[]).expect_err("must fail");
        assert!(matches!(err, LoadError::FileMissing(_)), "{err}");
    }

    #[test]
    fn name_is_found_as_lib_prefixed_file_first() {
        let dir = temp_dir("prefix");
        std::fs::write(dir.join("libsvc.so"), b"").expect("write");
        std::fs::write(dir.join("svc.so"), b"").expect("write");
        assert_eq!(
            resolve("svc", std::slice::from_ref(&dir)).ok(),
            Some(dir.join("libsvc.so"))
        );
    }

    #[test]
    fn name_falls_back_to_plain_file_name() {
        let dir = temp_dir("plain");
        std::fs::write(dir.join("other.so"), b"").expect("write");
        assert_eq!(
            resolve("other", std::slice::from_ref(&dir)).ok(),
            Some(dir.join("other.so"))
        );
    }

    #[test]
    fn unknown_name_lists_every_candidate() {
        let dir = temp_dir("none");
        let err = resolve("absent", std::slice::from_ref(&dir)).expect_err("must fail");
        let LoadError::NotFound { searched, .. } = &err else {
            panic!("unexpected {err}")
        };
        assert_eq!(searched, &[dir.join("libabsent.so"), dir.join("absent.so")]);
    }

    #[test]
    fn file_that_is_not_a_library_is_not_loadable() {
        let dir = temp_dir("garbage");
        let path = dir.join("libgarbage.so");
        std::fs::write(&path, b"this is not an ELF file").expect("write");
        let Err(err) = open(&path) else {
            panic!("garbage loaded as a library")
        };
        assert!(matches!(err, LoadError::NotLoadable { .. }), "{err}");
        assert_eq!(err.to_string().lines().count(), 1);
    }
}
