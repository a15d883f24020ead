//! Confined directory descriptors kept per share, so an operation below the share root does not
//! resolve (and open, and close) its parent directory again every time.
//!
//! Why: the Linux guest looks up paths one CREATE at a time, and every lookup of `dir/file`
//! needs the descriptor of `dir`. Resolving it with `openat2(RESOLVE_BENEATH)` each time costs an
//! open and a close around the one `statx` that answers the guest. With this cache a lookup costs
//! the `statx` and one `FIONREAD` of an inotify descriptor that finds nothing queued.
//!
//! Why it stays confined:
//!
//! * Entries are resolved one component at a time, each with
//!   `openat2(parent, name, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` from
//!   the share root or a cached ancestor. Only real directories are cached; a path through a
//!   symlink, `.` or `..` is never cached and is resolved from the root as before.
//! * The root and every cached directory are watched with inotify for entries of theirs that
//!   are directories and are removed, moved away or replaced (`IN_DELETE`, `IN_MOVED_FROM`,
//!   `IN_MOVED_TO` with `IN_ISDIR`). Such an event drops the entry of that name and everything
//!   cached below it. Because the parent's watch exists before the child is opened, no change
//!   to the child's name can go unseen, whether the guest or a host program makes it.
//! * The queued events are applied at the start of every lookup and again after a walk that
//!   opened new entries (an entry invalidated during its own walk is not used). So a cached
//!   descriptor is used only if no event has been queued against it when the lookup starts:
//!   the only window left is the one every descriptor-based design has between resolving a
//!   directory and using it.
//! * A lost watch (`IN_IGNORED`, for example the file system was unmounted), a queue overflow,
//!   or any failure reading events empties the cache (and if the root's own watch is lost, the
//!   cache stops being used). When the cache is full it is emptied rather than trimmed, so the
//!   invariant "every cached entry's parent is cached or is the root" always holds.
//!
//! What it costs: a lookup through a symlinked directory tries the walk first (one `openat2`
//! refused with `ELOOP`) before resolving from the root; nothing negative is remembered, since a
//! name that later becomes a directory would not be seen.
//!
//! What the cache does not see: a file system mounted onto a cached directory on the host
//! after it was cached (inotify reports no mounts). Lookups keep answering from the directory
//! underneath — still beneath the root, never outside it — until the entry is invalidated.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::sys;

/// Most directories cached per share; inotify watches are a per-user resource.
const MAX_ENTRIES: usize = 256;

/// Bytes read from the inotify descriptor at a time (many events per read).
const EVENT_BUFFER: usize = 4096;

/// What a watch reports: entries of the watched directory that stop being what they were.
const WATCH_MASK: u32 = libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// Why the cache could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirCacheError {
    /// No inotify instance could be created (per-user limit, or no inotify).
    #[error("cannot create an inotify instance: {0}")]
    Inotify(#[source] std::io::Error),
    /// The share root could not be watched (no `/proc`, or the watch limit is reached).
    #[error("cannot watch the share root: {0}")]
    WatchRoot(#[source] std::io::Error),
}

/// One cached directory.
#[derive(Debug)]
struct Entry {
    fd: Arc<OwnedFd>,
    watch: libc::c_int,
}

/// The directory cache of one share.
#[derive(Debug)]
pub(crate) struct DirCache {
    inotify: OwnedFd,
    root_watch: libc::c_int,
    /// Cached directories by their path below the root, as components.
    entries: HashMap<Vec<String>, Entry>,
    /// The path each watch stands for (the root is the empty path).
    watched: HashMap<libc::c_int, Vec<String>>,
    events: Vec<u8>,
    usable: bool,
}

/// Whether a component may be cached: a plain name, never `.` or `..`.
fn plain(component: &str) -> bool {
    component != "." && component != ".."
}

/// `parent` extended by `name`.
fn join(parent: &[String], name: &str) -> Vec<String> {
    let mut path = Vec::with_capacity(parent.len() + 1);
    path.extend_from_slice(parent);
    path.push(name.to_owned());
    path
}

impl DirCache {
    /// A cache for the share whose root descriptor is `root`; watches the root at once.
    pub(crate) fn new(root: BorrowedFd<'_>) -> Result<DirCache, DirCacheError> {
        let inotify = sys::inotify_init().map_err(DirCacheError::Inotify)?;
        let root_watch = sys::inotify_watch(inotify.as_fd(), root, WATCH_MASK)
            .map_err(DirCacheError::WatchRoot)?;
        Ok(DirCache {
            inotify,
            root_watch,
            entries: HashMap::new(),
            watched: HashMap::from([(root_watch, Vec::new())]),
            events: vec![0; EVENT_BUFFER],
            usable: true,
        })
    }

    /// The descriptor of the directory `components` below `root`, from the cache or resolved
    /// (and cached) one component at a time with `resolve` flags plus `RESOLVE_NO_SYMLINKS`.
    ///
    /// `None` means "resolve it yourself from the root": the path has `.`, `..` or a symlink
    /// in it, does not exist, changed during the walk, or the cache is out of use. The caller's
    /// own resolution then gives the authoritative answer and error.
    pub(crate) fn directory(
        &mut self,
        root: BorrowedFd<'_>,
        components: &[String],
        resolve: u64,
    ) -> Option<Arc<OwnedFd>> {
        let cacheable = !components.is_empty()
            && components.len() <= MAX_ENTRIES
            && components.iter().all(|c| plain(c));
        if !self.usable || !cacheable {
            return None;
        }
        self.apply_events();
        if !self.usable {
            return None;
        }
        if let Some(entry) = self.entries.get(components) {
            return Some(Arc::clone(&entry.fd));
        }
        if self.entries.len() + components.len() > MAX_ENTRIES {
            self.clear();
        }
        let fd = self.walk(root, components, resolve)?;
        // Anything that changed while the walk ran is applied before the result is used.
        self.apply_events();
        self.entries.contains_key(components).then_some(fd)
    }

    /// Opens and caches the missing tail of `components`, from its deepest cached ancestor.
    fn walk(
        &mut self,
        root: BorrowedFd<'_>,
        components: &[String],
        resolve: u64,
    ) -> Option<Arc<OwnedFd>> {
        let mut cached = components.len();
        let mut parent: Option<Arc<OwnedFd>> = None;
        while cached > 0 {
            if let Some(entry) = self.entries.get(components.get(..cached)?) {
                parent = Some(Arc::clone(&entry.fd));
                break;
            }
            cached -= 1;
        }
        let mut path = components.get(..cached)?.to_vec();
        for component in components.get(cached..)? {
            let name = CString::new(component.as_str()).ok()?;
            let parent_fd = parent.as_ref().map_or(root, |fd| fd.as_fd());
            let opened = sys::openat2(
                parent_fd,
                &name,
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                resolve | crate::share::RESOLVE_NO_SYMLINKS,
            )
            .ok()?;
            let watch = match sys::inotify_watch(self.inotify.as_fd(), opened.as_fd(), WATCH_MASK) {
                Ok(watch) => watch,
                Err(e) => {
                    log::debug!("directory cache: cannot watch a directory: {e}");
                    return None;
                }
            };
            path.push(component.clone());
            if self.watched.contains_key(&watch) {
                // The same directory under a second name (a bind mount): its events could not
                // be told apart, so it is not cached twice.
                return None;
            }
            let fd = Arc::new(opened);
            self.watched.insert(watch, path.clone());
            self.entries.insert(
                path.clone(),
                Entry {
                    fd: Arc::clone(&fd),
                    watch,
                },
            );
            parent = Some(fd);
        }
        parent
    }

    /// Reads every queued event and drops the entries they concern.
    fn apply_events(&mut self) {
        match sys::inotify_pending(self.inotify.as_fd()) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                log::warn!("directory cache: polling events failed ({e}); cache disabled");
                self.disable();
                return;
            }
        }
        loop {
            let mut buf = std::mem::take(&mut self.events);
            let read = sys::inotify_read(self.inotify.as_fd(), &mut buf);
            let len = match read {
                Ok(0) => {
                    self.events = buf;
                    return;
                }
                Ok(len) => len,
                Err(e) => {
                    log::warn!("directory cache: reading events failed ({e}); cache disabled");
                    self.events = buf;
                    self.disable();
                    return;
                }
            };
            let mut rest = buf.get(..len).unwrap_or_default();
            while let Some((event, used)) = sys::parse_watch_event(rest) {
                self.apply(&event);
                rest = rest.get(used..).unwrap_or_default();
            }
            self.events = buf;
        }
    }

    /// Applies one event.
    fn apply(&mut self, event: &sys::WatchEvent) {
        if event.mask & libc::IN_Q_OVERFLOW != 0 {
            self.clear();
            return;
        }
        if event.watch == self.root_watch
            && event.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF) != 0
        {
            log::warn!("directory cache: the share root's watch is gone; cache disabled");
            self.disable();
            return;
        }
        let Some(dir) = self.watched.get(&event.watch) else {
            // A watch already removed (its IN_IGNORED arrives after the removal).
            return;
        };
        if event.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            let dir = dir.clone();
            self.invalidate(&dir);
            return;
        }
        let moved_or_removed = libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;
        if event.mask & moved_or_removed != 0 && event.mask & libc::IN_ISDIR != 0 {
            // A name that is not UTF-8 was never cached (guest paths are UTF-8).
            if let Ok(name) = std::str::from_utf8(&event.name) {
                let path = join(dir, name);
                self.invalidate(&path);
            }
        }
    }

    /// Drops `path` and every entry below it.
    fn invalidate(&mut self, path: &[String]) {
        if path.is_empty() {
            self.clear();
            return;
        }
        let stale: Vec<Vec<String>> = self
            .entries
            .keys()
            .filter(|key| key.starts_with(path))
            .cloned()
            .collect();
        for key in stale {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &[String]) {
        if let Some(entry) = self.entries.remove(key) {
            self.watched.remove(&entry.watch);
            sys::inotify_unwatch(self.inotify.as_fd(), entry.watch);
        }
    }

    /// Drops every entry (the root stays watched).
    fn clear(&mut self) {
        let keys: Vec<Vec<String>> = self.entries.keys().cloned().collect();
        for key in keys {
            self.remove(&key);
        }
    }

    fn disable(&mut self) {
        self.clear();
        self.usable = false;
    }

    /// How many directories are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::MetadataExt;

    const RESOLVE: u64 = crate::share::RESOLVE_BENEATH | crate::share::RESOLVE_NO_MAGICLINKS;

    fn components(text: &str) -> Vec<String> {
        text.split('/').map(str::to_owned).collect()
    }

    fn setup() -> (TempDir, OwnedFd, DirCache) {
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.path().join("share/a/b")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("outside")).expect("mkdir");
        let root = OwnedFd::from(std::fs::File::open(dir.path().join("share")).expect("root"));
        let cache = DirCache::new(root.as_fd()).expect("cache");
        (dir, root, cache)
    }

    fn inode(fd: &OwnedFd) -> u64 {
        sys::fstat(fd.as_fd()).expect("fstat").stx_ino
    }

    #[test]
    fn a_second_lookup_returns_the_cached_descriptor() {
        let (_dir, root, mut cache) = setup();
        let first = cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("a/b");
        let second = cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("a/b");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.len(), 2, "a and a/b are both cached");
    }

    #[test]
    fn a_directory_moved_out_of_the_share_is_dropped_with_its_descendants() {
        let (dir, root, mut cache) = setup();
        cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("a/b");
        std::fs::rename(dir.path().join("share/a"), dir.path().join("outside/a")).expect("mv");
        assert!(
            cache
                .directory(root.as_fd(), &components("a/b"), RESOLVE)
                .is_none()
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_directory_replaced_under_the_same_name_resolves_to_the_new_one() {
        let (dir, root, mut cache) = setup();
        cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("a/b");
        std::fs::remove_dir(dir.path().join("share/a/b")).expect("rmdir");
        std::fs::create_dir(dir.path().join("share/a/b")).expect("mkdir");
        let fd = cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("new a/b");
        let expected = std::fs::metadata(dir.path().join("share/a/b"))
            .expect("stat")
            .ino();
        assert_eq!(inode(&fd), expected);
    }

    #[test]
    fn a_directory_renamed_over_a_cached_one_replaces_it() {
        let (dir, root, mut cache) = setup();
        std::fs::create_dir(dir.path().join("share/c")).expect("mkdir");
        cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("a/b");
        std::fs::rename(dir.path().join("share/c"), dir.path().join("share/a/b")).expect("mv");
        let fd = cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("new a/b");
        let expected = std::fs::metadata(dir.path().join("share/a/b"))
            .expect("stat")
            .ino();
        assert_eq!(inode(&fd), expected);
    }

    #[test]
    fn paths_through_symlinks_and_dot_dot_are_left_to_the_caller() {
        let (dir, root, mut cache) = setup();
        std::os::unix::fs::symlink("a", dir.path().join("share/link")).expect("symlink");
        assert!(
            cache
                .directory(root.as_fd(), &components("link/b"), RESOLVE)
                .is_none()
        );
        assert!(
            cache
                .directory(root.as_fd(), &components("a/.."), RESOLVE)
                .is_none()
        );
        assert!(
            cache
                .directory(root.as_fd(), &components("missing"), RESOLVE)
                .is_none()
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn removing_a_file_keeps_the_cached_directory() {
        let (dir, root, mut cache) = setup();
        std::fs::write(dir.path().join("share/a/f"), b"x").expect("write");
        let first = cache
            .directory(root.as_fd(), &components("a"), RESOLVE)
            .expect("a");
        std::fs::remove_file(dir.path().join("share/a/f")).expect("rm");
        let second = cache
            .directory(root.as_fd(), &components("a"), RESOLVE)
            .expect("a");
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn a_queue_overflow_empties_the_cache() {
        let (_dir, root, mut cache) = setup();
        cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("a/b");
        cache.apply(&sys::WatchEvent {
            watch: -1,
            mask: libc::IN_Q_OVERFLOW,
            name: Vec::new(),
        });
        assert_eq!(cache.len(), 0);
        assert!(
            cache
                .directory(root.as_fd(), &components("a/b"), RESOLVE)
                .is_some()
        );
    }

    #[test]
    fn losing_the_root_watch_turns_the_cache_off() {
        let (_dir, root, mut cache) = setup();
        cache
            .directory(root.as_fd(), &components("a"), RESOLVE)
            .expect("a");
        let root_watch = cache.root_watch;
        cache.apply(&sys::WatchEvent {
            watch: root_watch,
            mask: libc::IN_IGNORED,
            name: Vec::new(),
        });
        assert_eq!(cache.len(), 0);
        assert!(
            cache
                .directory(root.as_fd(), &components("a"), RESOLVE)
                .is_none()
        );
    }

    #[test]
    fn paths_deeper_than_the_cache_are_left_to_the_caller() {
        let (_dir, root, mut cache) = setup();
        let deep = vec!["a".to_owned(); MAX_ENTRIES + 1];
        assert!(cache.directory(root.as_fd(), &deep, RESOLVE).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_is_emptied_before_it_grows_past_its_limit() {
        let (dir, root, mut cache) = setup();
        for i in 0..MAX_ENTRIES + 10 {
            let name = format!("d{i}");
            std::fs::create_dir(dir.path().join("share").join(&name)).expect("mkdir");
            cache
                .directory(root.as_fd(), &[name], RESOLVE)
                .expect("dir");
            assert!(cache.len() <= MAX_ENTRIES);
        }
    }

    #[test]
    fn invalidating_a_name_keeps_siblings_that_share_its_prefix() {
        let (dir, root, mut cache) = setup();
        std::fs::create_dir(dir.path().join("share/ab")).expect("mkdir");
        let sibling = cache
            .directory(root.as_fd(), &components("ab"), RESOLVE)
            .expect("ab");
        cache
            .directory(root.as_fd(), &components("a/b"), RESOLVE)
            .expect("a/b");
        std::fs::rename(dir.path().join("share/a"), dir.path().join("outside/a")).expect("mv");
        let again = cache
            .directory(root.as_fd(), &components("ab"), RESOLVE)
            .expect("ab");
        assert!(Arc::ptr_eq(&sibling, &again));
        assert_eq!(cache.len(), 1);
    }
}
