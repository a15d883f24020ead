# Shared folders through the kernel's own vboxsf (linux-guest.md §7 items 18-42): mount, listing, reads of
# files the host wrote, writes read back after dropping the page cache, namespace operations, attributes,
# symlinks and the symlink policies, statfs, large sequential I/O, exec from the share, writes through a
# shared mapping, UTF-8 names, concurrent readers beside guest-property traffic, a host change seen by the
# guest, a read-only share, a second mount, attempts to reach host files outside the share, and unloading
# and reloading the drivers.
#
# The host (tests/e2e/tests/boot_with_device.rs) offers three shares before boot:
#   e2e     read-write, symlinks=inside, mounted at /media/sf_e2e by demo-mount (mounted here when absent).
#           It holds fixtures/lines.txt ("line 1" .. "line 20000", one per line), fixtures/empty/ (an empty
#           directory), fixtures/many/ (600 files many-0 .. many-599), host-link, a relative symlink to
#           fixtures/lines.txt, and escape, an absolute symlink to a host directory outside the share whose
#           file secret.txt holds the text HOST-SECRET. fixtures/lines.txt has mode 640 and the modification
#           time 1000000000. While the guest runs, the host waits for the file hv-request; when it appears,
#           the host rewrites hv.txt ("before" -> "after", with a newer mtime) and creates hv-done.
#   e2e-ro  read-only, holding ro.txt ("read-only share").
#   e2e-nolinks  read-write with the default symlinks=deny, empty.
# Each step works in its own directory work-<step> of the share, so the steps do not depend on each other.

register_steps sf-mount-unknown sf-list sf-read sf-write-readback sf-append-overwrite sf-truncate \
    sf-otrunc-mode sf-mkdir-rmdir sf-rename sf-unlink sf-chmod-utimes sf-symlink sf-statfs sf-big-copy \
    sf-exec sf-mmap-write sf-unicode sf-read-only sf-second-mount sf-escape sf-symlink-outside \
    sf-concurrent-reads sf-symlink-deny sf-irq-quiet sf-host-change sf-reprobe sf-reboot

SF_SHARE=e2e
SF_ROOT=/media/sf_e2e
SF_RO_SHARE=e2e-ro
SF_RO_ROOT=/media/sf_e2e-ro
SF_NOLINKS_SHARE=e2e-nolinks
SF_NOLINKS_ROOT=/media/sf_e2e-nolinks
# f_type of a vboxsf mount ("VBox" read as a little-endian number).
SF_MAGIC=786f4256

# Makes sure the e2e share is mounted at $SF_ROOT (demo-mount normally did it).
sf_require_mount() {
    require_vmmdev
    load_module vboxsf
    grep -q " $SF_ROOT vboxsf " /proc/mounts && return 0
    mkdir -p "$SF_ROOT"
    out=$(mount -t vboxsf "$SF_SHARE" "$SF_ROOT" 2>&1) || fail "mount of share '$SF_SHARE' failed: $(one_line "$out")"
}

# Prints a fresh, empty working directory named after the calling step in the mounted share. Call it as
# `work=$(sf_workdir NAME) || exit $?`: a fail inside $(...) only ends the substitution.
sf_workdir() {
    work="$SF_ROOT/work-$1"
    rm -rf "$work" || fail "cannot remove an old $work"
    mkdir "$work" || fail "mkdir $work failed"
    printf '%s\n' "$work"
}

# Writes dirty pages back and drops the page cache, so the next read goes to the host.
sf_drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# Fails unless file $1 holds exactly the text $2 (trailing newlines aside: $(...) drops them).
sf_expect_content() {
    actual=$(cat "$1" 2>&1) || fail "cat $1 failed: $(one_line "$actual")"
    [ "$actual" = "$2" ] || fail "$1 holds '$(one_line "$actual")', expected '$(one_line "$2")'"
}

# Item 19: a share the host does not offer does not mount, and leaves nothing mounted.
step_sf_mount_unknown() {
    require_vmmdev
    load_module vboxsf
    mkdir -p /mnt/sf-unknown
    if out=$(mount -t vboxsf no-such-share /mnt/sf-unknown 2>&1); then
        umount /mnt/sf-unknown
        fail "mount of an unknown share succeeded"
    fi
    note "mount refused: $(one_line "$out")"
    grep -q " /mnt/sf-unknown " /proc/mounts && fail "a failed mount left /mnt/sf-unknown mounted"
    return 0
}

# Items 20-22: the host's empty and 600-entry directories list completely, as do entries made by the guest.
step_sf_list() {
    sf_require_mount
    empty=$(ls -a "$SF_ROOT/fixtures/empty" 2>&1) || fail "ls of the empty directory failed: $(one_line "$empty")"
    [ "$(printf '%s\n' "$empty" | tr '\n' ' ')" = ". .. " ] || fail "empty directory lists '$(one_line "$empty")'"
    count=$(ls "$SF_ROOT/fixtures/many" | wc -l)
    [ "$count" -eq 600 ] || fail "fixtures/many lists $count entries, the host made 600"
    ls "$SF_ROOT/fixtures/many" | sort >/tmp/sf-many.listed
    seq 0 599 | sed 's/^/many-/' | sort >/tmp/sf-many.expected
    cmp -s /tmp/sf-many.listed /tmp/sf-many.expected ||
        fail "fixtures/many differs from many-0..many-599: $(diff /tmp/sf-many.expected /tmp/sf-many.listed | head -n 4)"
    work=$(sf_workdir list) || exit $?
    i=0
    while [ $i -lt 600 ]; do
        : >"$work/a_rather_long_file_name_for_listing_$i" || fail "creating entry $i failed"
        i=$((i + 1))
    done
    sf_drop_caches
    count=$(ls "$work" | wc -l)
    [ "$count" -eq 600 ] || fail "a directory of 600 guest-made entries lists $count"
    kind=$(stat -c %F "$SF_ROOT/fixtures/empty")
    [ "$kind" = directory ] || fail "fixtures/empty is shown as a '$kind'"
    size=$(seq 1 20000 | sed 's/^/line /' | wc -c)
    facts=$(stat -c '%F|%s|%Y|%a' "$SF_ROOT/fixtures/lines.txt")
    [ "$facts" = "regular file|$size|1000000000|640" ] ||
        fail "stat of fixtures/lines.txt (type|size|mtime|mode) shows '$facts', the host has 'regular file|$size|1000000000|640'"
}

# Item 23: a file the host wrote reads back with the checksum of the same content made in the guest.
step_sf_read() {
    sf_require_mount
    expected=$(seq 1 20000 | sed 's/^/line /' | md5sum | cut -d' ' -f1)
    sf_drop_caches
    actual=$(md5sum "$SF_ROOT/fixtures/lines.txt" 2>&1) || fail "md5sum failed: $(one_line "$actual")"
    actual=${actual%% *}
    [ "$actual" = "$expected" ] || fail "fixtures/lines.txt has md5 $actual, expected $expected"
    sf_expect_content "$SF_ROOT/from-host.txt" "hello from the host"
}

# Item 24: a new file reads back before and after the page cache is dropped.
step_sf_write_readback() {
    sf_require_mount
    work=$(sf_workdir write) || exit $?
    echo hello >"$work/w.txt" || fail "writing w.txt failed"
    sf_expect_content "$work/w.txt" hello
    sf_drop_caches
    sf_expect_content "$work/w.txt" hello
    size=$(stat -c %s "$work/w.txt")
    [ "$size" -eq 6 ] || fail "w.txt has size $size after writing 6 bytes"
}

# Item 25: appending and overwriting in place keep the rest of the file.
step_sf_append_overwrite() {
    sf_require_mount
    work=$(sf_workdir append) || exit $?
    echo hello >"$work/w.txt" || fail "writing w.txt failed"
    echo more >>"$work/w.txt" || fail "appending to w.txt failed"
    printf XY | dd of="$work/w.txt" bs=1 seek=1 conv=notrunc 2>/dev/null || fail "dd seek=1 conv=notrunc failed"
    sf_drop_caches
    sf_expect_content "$work/w.txt" "hXYlo
more"
}

# Item 26: truncation shortens a file, extension fills with zeros.
step_sf_truncate() {
    sf_require_mount
    work=$(sf_workdir truncate) || exit $?
    echo hello >"$work/w.txt" || fail "writing w.txt failed"
    must truncate -s 3 "$work/w.txt" >/dev/null
    sf_drop_caches
    size=$(stat -c %s "$work/w.txt")
    [ "$size" -eq 3 ] || fail "size after truncate -s 3 is $size"
    sf_expect_content "$work/w.txt" hel
    must truncate -s 100000 "$work/w.txt" >/dev/null
    sf_drop_caches
    size=$(stat -c %s "$work/w.txt")
    [ "$size" -eq 100000 ] || fail "size after truncate -s 100000 is $size"
    nonzero=$(tail -c +4 "$work/w.txt" | tr -d '\000' | wc -c)
    [ "$nonzero" -eq 0 ] || fail "the extension holds $nonzero non-zero bytes"
}

# Item 27: rewriting an existing file with O_TRUNC keeps its permission bits.
step_sf_otrunc_mode() {
    sf_require_mount
    work=$(sf_workdir otrunc) || exit $?
    echo hello >"$work/w.txt" || fail "writing w.txt failed"
    must chmod 640 "$work/w.txt" >/dev/null
    before=$(stat -c %a "$work/w.txt")
    echo x >"$work/w.txt" || fail "rewriting w.txt failed"
    sf_drop_caches
    after=$(stat -c '%a %s' "$work/w.txt")
    [ "$after" = "$before 2" ] || fail "after O_TRUNC rewrite: mode and size '$after', expected '$before 2'"
}

# Item 28: directories are made and removed; a non-empty one is refused.
step_sf_mkdir_rmdir() {
    sf_require_mount
    work=$(sf_workdir mkdir) || exit $?
    must mkdir "$work/d" >/dev/null
    kind=$(stat -c %F "$work/d")
    [ "$kind" = directory ] || fail "the new directory is a '$kind'"
    must rmdir "$work/d" >/dev/null
    [ -e "$work/d" ] && fail "d still exists after rmdir"
    must mkdir "$work/d2" >/dev/null
    : >"$work/d2/f" || fail "creating d2/f failed"
    if out=$(rmdir "$work/d2" 2>&1); then
        fail "rmdir of a non-empty directory succeeded"
    fi
    case "$out" in
    *"not empty"*) ;;
    *) fail "rmdir of a non-empty directory: '$(one_line "$out")', expected 'Directory not empty'" ;;
    esac
    [ -f "$work/d2/f" ] || fail "the refused rmdir lost d2/f"
}

# Item 29: renames of a file over another, of a directory, and across directories.
step_sf_rename() {
    sf_require_mount
    work=$(sf_workdir rename) || exit $?
    echo 1 >"$work/r1" && echo 2 >"$work/r2" || fail "writing r1/r2 failed"
    must mv "$work/r1" "$work/r2" >/dev/null
    [ -e "$work/r1" ] && fail "r1 still exists after mv r1 r2"
    sf_drop_caches
    sf_expect_content "$work/r2" 1
    must mkdir "$work/da" >/dev/null
    : >"$work/da/inner" || fail "creating da/inner failed"
    must mv "$work/da" "$work/db" >/dev/null
    [ -e "$work/da" ] && fail "da still exists after mv da db"
    [ -f "$work/db/inner" ] || fail "db/inner is missing after the directory rename"
    must mv "$work/r2" "$work/db/" >/dev/null
    [ -e "$work/r2" ] && fail "r2 still exists after the cross-directory mv"
    sf_drop_caches
    sf_expect_content "$work/db/r2" 1
}

# Item 30: unlink removes a file; a missing one is reported as such.
step_sf_unlink() {
    sf_require_mount
    work=$(sf_workdir unlink) || exit $?
    echo 1 >"$work/f" || fail "writing f failed"
    must rm "$work/f" >/dev/null
    sf_drop_caches
    [ -e "$work/f" ] && fail "f still exists after rm"
    if out=$(rm "$work/nonexistent" 2>&1); then
        fail "rm of a nonexistent file succeeded"
    fi
    case "$out" in
    *"No such file or directory"*) ;;
    *) fail "rm of a nonexistent file: '$(one_line "$out")', expected 'No such file or directory'" ;;
    esac
}

# Item 31: permission bits and modification times are set on files and directories.
step_sf_chmod_utimes() {
    sf_require_mount
    work=$(sf_workdir chmod) || exit $?
    echo hello >"$work/w.txt" || fail "writing w.txt failed"
    must chmod 640 "$work/w.txt" >/dev/null
    sf_drop_caches
    mode=$(stat -c %a "$work/w.txt")
    [ "$mode" = 640 ] || fail "mode after chmod 640 is $mode"
    must chmod 444 "$work/w.txt" >/dev/null
    must chmod 644 "$work/w.txt" >/dev/null
    mode=$(stat -c %a "$work/w.txt")
    [ "$mode" = 644 ] || fail "mode after chmod 444, 644 is $mode"
    must touch -d '2001-02-03 04:05:06' "$work/w.txt" >/dev/null
    expected=$(date -d '2001-02-03 04:05:06' +%s)
    sf_drop_caches
    mtime=$(stat -c %Y "$work/w.txt")
    [ "$mtime" = "$expected" ] || fail "mtime after touch -d is $mtime, expected $expected"
    must mkdir "$work/d" >/dev/null
    must chmod 700 "$work/d" >/dev/null
    mode=$(stat -c %a "$work/d")
    [ "$mode" = 700 ] || fail "directory mode after chmod 700 is $mode"
    must chown 1:1 "$work/w.txt" >/dev/null
}

# Item 32 with symlinks=inside: a relative link inside the share is made, read, followed and removed alone.
step_sf_symlink() {
    sf_require_mount
    work=$(sf_workdir symlink) || exit $?
    echo hello >"$work/w.txt" || fail "writing w.txt failed"
    must ln -s w.txt "$work/lnk" >/dev/null
    sf_drop_caches
    target=$(readlink "$work/lnk") || fail "readlink failed"
    [ "$target" = w.txt ] || fail "readlink shows '$target', expected 'w.txt'"
    [ -L "$work/lnk" ] || fail "lnk is not shown as a symbolic link"
    sf_expect_content "$work/lnk" hello
    must rm "$work/lnk" >/dev/null
    [ -L "$work/lnk" ] && fail "lnk still exists after rm"
    sf_expect_content "$work/w.txt" hello
    [ -L "$SF_ROOT/host-link" ] || fail "the host's symlink host-link is not shown as a link"
    target=$(readlink "$SF_ROOT/host-link")
    [ "$target" = fixtures/lines.txt ] || fail "readlink host-link shows '$target', expected 'fixtures/lines.txt'"
    first=$(head -n 1 "$SF_ROOT/host-link")
    [ "$first" = "line 1" ] || fail "reading through host-link gives '$first', expected 'line 1'"
}

# Item 33: statfs reports the vboxsf type and a non-zero block size.
step_sf_statfs() {
    sf_require_mount
    facts=$(stat -f -c '%t %S %b %a' "$SF_ROOT") || fail "stat -f failed"
    note "stat -f (type bsize blocks avail): $facts"
    set -- $facts
    [ "$1" = "$SF_MAGIC" ] || fail "f_type is $1, expected $SF_MAGIC"
    [ "$2" -gt 0 ] || fail "block size is $2"
    [ "$3" -gt 0 ] || fail "total blocks is $3"
    must df -k "$SF_ROOT" >/dev/null
}

# Item 34 (8 MiB): a random file copies into the share and reads back with the same checksum.
step_sf_big_copy() {
    sf_require_mount
    work=$(sf_workdir big) || exit $?
    must dd if=/dev/urandom of=/tmp/sf-big bs=1M count=8 >/dev/null
    started=$(cut -d' ' -f1 /proc/uptime)
    must cp /tmp/sf-big "$work/big" >/dev/null
    sf_drop_caches
    copied=$(cut -d' ' -f1 /proc/uptime)
    source_md5=$(md5sum /tmp/sf-big | cut -d' ' -f1)
    share_md5=$(md5sum "$work/big" | cut -d' ' -f1)
    ended=$(cut -d' ' -f1 /proc/uptime)
    rm -f /tmp/sf-big
    note "8 MiB: write+sync $(awk -v a="$started" -v b="$copied" 'BEGIN { print b - a }') s, read $(awk -v a="$copied" -v b="$ended" 'BEGIN { print b - a }') s"
    [ "$share_md5" = "$source_md5" ] || fail "the copy has md5 $share_md5, the source $source_md5"
}

# Item 36: a program copied into the share runs from it (its pages are faulted in through the share).
step_sf_exec() {
    sf_require_mount
    work=$(sf_workdir exec) || exit $?
    # busybox picks its applet by the name it runs under, so the copy keeps the name busybox.
    must cp /bin/busybox "$work/busybox" >/dev/null
    must chmod 755 "$work/busybox" >/dev/null
    sf_drop_caches
    out=$("$work/busybox" echo ok 2>&1) || fail "running busybox from the share failed: $(one_line "$out")"
    [ "$out" = ok ] || fail "busybox echo ok from the share printed '$(one_line "$out")'"
    cmp /bin/busybox "$work/busybox" >/dev/null || fail "the copy of busybox differs from the original"
}

# Item 36, the mmap-write half: a file sized with ftruncate and written only through a MAP_SHARED mapping
# (vboxctl-test mmap-write: open O_RDWR, ftruncate 8192, mmap, write, munmap, close) reads back with the
# pattern after the page cache is dropped, so the dirty pages reached the host (which checks the bytes too).
step_sf_mmap_write() {
    sf_require_mount
    command -v vboxctl-test >/dev/null || skip "vboxctl-test is not in the image"
    work=$(sf_workdir mmap) || exit $?
    out=$(vboxctl-test mmap-write "$work/m.bin" 8192 2>&1) || fail "$(one_line "$out")"
    seq 0 16 8176 | awk '{ printf "%015d\n", $1 }' >/tmp/sf-mmap.expected
    sf_drop_caches
    size=$(stat -c %s "$work/m.bin")
    [ "$size" -eq 8192 ] || fail "m.bin is $size bytes after the mapped write, expected 8192"
    cmp -s /tmp/sf-mmap.expected "$work/m.bin" ||
        fail "m.bin differs from the pattern written through the mapping: $(cmp /tmp/sf-mmap.expected "$work/m.bin" 2>&1 | head -n 1)"
}

# Item 37: a UTF-8 name is created, listed and read under the same bytes (the host test checks the name on
# its side).
step_sf_unicode() {
    sf_require_mount
    work=$(sf_workdir unicode) || exit $?
    name='héllo_ü_日本.txt'
    echo u >"$work/$name" || fail "creating $name failed"
    sf_drop_caches
    # A glob, not ls: busybox's ls prints bytes outside ASCII as '?'.
    listed=$(cd "$work" && echo *)
    [ "$listed" = "$name" ] || fail "the directory lists '$(one_line "$listed")', expected '$name'"
    sf_expect_content "$work/$name" u
}

# Item 41: a read-only share reads, and refuses every change with EROFS.
step_sf_read_only() {
    require_vmmdev
    load_module vboxsf
    mkdir -p "$SF_RO_ROOT"
    if ! grep -q " $SF_RO_ROOT vboxsf " /proc/mounts; then
        out=$(mount -t vboxsf "$SF_RO_SHARE" "$SF_RO_ROOT" 2>&1) || fail "mount of '$SF_RO_SHARE' failed: $(one_line "$out")"
    fi
    sf_expect_content "$SF_RO_ROOT/ro.txt" "read-only share"
    for attempt in "touch $SF_RO_ROOT/x" "mkdir $SF_RO_ROOT/d" "rm $SF_RO_ROOT/ro.txt" "sh -c 'echo x >>$SF_RO_ROOT/ro.txt'"; do
        if out=$(eval "$attempt" 2>&1); then
            fail "'$attempt' succeeded on a read-only share"
        fi
        case "$out" in
        *"Read-only file system"*) ;;
        *) fail "'$attempt' on a read-only share: '$(one_line "$out")', expected 'Read-only file system'" ;;
        esac
    done
    sf_expect_content "$SF_RO_ROOT/ro.txt" "read-only share"
    must umount "$SF_RO_ROOT" >/dev/null
}

# Item 40: the same share mounts a second time, and unmounting it leaves the first mount working.
step_sf_second_mount() {
    sf_require_mount
    mkdir -p /mnt/sf2
    out=$(mount -t vboxsf "$SF_SHARE" /mnt/sf2 2>&1) || fail "second mount of '$SF_SHARE' failed: $(one_line "$out")"
    sf_expect_content /mnt/sf2/from-host.txt "hello from the host"
    must umount /mnt/sf2 >/dev/null
    grep -q " /mnt/sf2 " /proc/mounts && fail "/mnt/sf2 is still mounted after umount"
    sf_drop_caches
    sf_expect_content "$SF_ROOT/from-host.txt" "hello from the host"
}

# No path reaches host files outside the share: the host's absolute symlink shows as a link and is not
# followed by the host, share names with '..' do not map, and '..' at the root stays in the guest.
step_sf_escape() {
    sf_require_mount
    [ -L "$SF_ROOT/escape" ] || fail "the host's absolute symlink 'escape' is not shown as a link"
    if out=$(cat "$SF_ROOT/escape/secret.txt" 2>&1); then
        fail "reading through the host's absolute symlink succeeded: '$(one_line "$out")'"
    fi
    case "$out" in
    *HOST-SECRET*) fail "the host's file outside the share was read: $(one_line "$out")" ;;
    esac
    listed=$(ls "$SF_ROOT/escape/" 2>&1)
    case "$listed" in
    *secret.txt*) fail "the host's directory outside the share was listed: $(one_line "$listed")" ;;
    esac
    mkdir -p /mnt/sf-escape
    for share in "$SF_SHARE/.." "../$SF_SHARE" ".." "$SF_SHARE/../.."; do
        if mount -t vboxsf "$share" /mnt/sf-escape >/dev/null 2>&1; then
            umount /mnt/sf-escape
            fail "the share name '$share' mounted"
        fi
    done
    [ "$(cd "$SF_ROOT/.." && pwd)" = /media ] || fail "'..' at the share's root does not lead to /media"
}

# Item 32 with symlinks=inside: the host refuses links whose target leaves the share, with EPERM (never a
# protocol error), and creates nothing.
step_sf_symlink_outside() {
    sf_require_mount
    work=$(sf_workdir symlink-outside) || exit $?
    for target in /etc ../../.. ../../outside/secret.txt; do
        name="out-$(printf '%s' "$target" | tr -c 'a-z' '_')"
        if out=$(ln -s "$target" "$work/$name" 2>&1); then
            fail "ln -s $target succeeded on a share with symlinks=inside"
        fi
        case "$out" in
        *"Operation not permitted"*) ;;
        *) fail "ln -s $target: '$(one_line "$out")', expected 'Operation not permitted'" ;;
        esac
        [ -L "$work/$name" ] && fail "the refused ln -s $target left a link"
    done
    return 0
}

# Item 38: four readers of one file at once all finish with the same checksum while guest-property traffic
# runs beside them: a `guestproperty wait` stays parked on the host (and is woken afterwards with the right
# value) and a loop keeps setting a property.
step_sf_concurrent_reads() {
    sf_require_mount
    command -v vboxcontrol >/dev/null || skip "vboxcontrol is not in the image"
    work=$(sf_workdir concurrent) || exit $?
    must dd if=/dev/urandom of="$work/data" bs=64k count=32 >/dev/null
    expected=$(md5sum "$work/data" | cut -d' ' -f1)
    sf_drop_caches
    vboxcontrol --nologo guestproperty wait /E2E/SfWake --timeout 120000 >/tmp/sf-waiter.out 2>&1 &
    waiter=$!
    sf_wait_blocked "$waiter" || fail "the guest-property waiter never blocked: $(one_line "$(cat /tmp/sf-waiter.out)")"
    (
        i=0
        while :; do
            vboxcontrol --nologo guestproperty set /E2E/SfTraffic "$i" >/dev/null 2>&1 || exit 1
            i=$((i + 1))
            echo "$i" >/tmp/sf-setter.count
        done
    ) &
    setter=$!
    readers=""
    for reader in 1 2 3 4; do
        md5sum "$work/data" >"/tmp/sf-reader-$reader" 2>&1 &
        readers="$readers $!"
    done
    for pid in $readers; do
        wait "$pid"
    done
    kill "$setter" 2>/dev/null
    wait "$setter" 2>/dev/null
    sets=$(cat /tmp/sf-setter.count 2>/dev/null)
    [ "${sets:-0}" -gt 0 ] || fail "no guest property was set while the readers ran"
    for reader in 1 2 3 4; do
        actual=$(cut -d' ' -f1 "/tmp/sf-reader-$reader")
        [ "$actual" = "$expected" ] || fail "reader $reader got '$(one_line "$actual")', expected $expected"
    done
    kill -0 "$waiter" 2>/dev/null || fail "the parked wait ended during the reads: $(one_line "$(cat /tmp/sf-waiter.out)")"
    out=$(vboxcontrol --nologo guestproperty set /E2E/SfWake done 2>&1) || fail "set /E2E/SfWake: $(one_line "$out")"
    wait "$waiter"
    status=$?
    out=$(cat /tmp/sf-waiter.out)
    [ "$status" -eq 0 ] || fail "the parked wait exited $status: $(one_line "$out")"
    printf '%s\n' "$out" | grep -qx 'Value: done' || fail "the parked wait reported '$(one_line "$out")'"
    last=$(vboxcontrol --nologo guestproperty get /E2E/SfTraffic 2>&1)
    case "$last" in
    "Value: "[0-9]*) ;;
    *) fail "get /E2E/SfTraffic after the loop printed '$(one_line "$last")'" ;;
    esac
    note "$sets guest-property sets and one parked wait beside four readers"
}

# Waits up to 10 s until process $1 sleeps (state S), i.e. is blocked in the driver; returns 1 otherwise.
sf_wait_blocked() {
    tries=0
    until [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = S ]; do
        tries=$((tries + 1))
        [ "$tries" -le 100 ] || return 1
        sleep 0.1
    done
}

# Item 39: after the shared-folder traffic the kernel has not disabled the device's interrupt or met an
# unknown status code.
step_sf_irq_quiet() {
    sf_require_mount
    damage=$(dmesg | grep -i -E "nobody cared|Disabling IRQ|Unhandled err")
    [ -z "$damage" ] || fail "kernel log: $(printf '%s\n' "$damage" | head -n 2)"
    irq=$(cat "$VMMDEV_PCI/irq" 2>/dev/null)
    if [ -n "$irq" ] && [ -r "/proc/irq/$irq/spurious" ]; then
        note "irq $irq: $(one_line "$(cat "/proc/irq/$irq/spurious")"); $(one_line "$(grep "^ *$irq:" /proc/interrupts)")"
    fi
    return 0
}

# Item 35: a file the host rewrites while it is mounted shows the new content in the guest.
step_sf_host_change() {
    sf_require_mount
    sf_expect_content "$SF_ROOT/hv.txt" before
    : >"$SF_ROOT/hv-request" || fail "creating hv-request failed"
    tries=0
    until [ -e "$SF_ROOT/hv-done" ]; do
        tries=$((tries + 1))
        [ $tries -le 200 ] || fail "the host did not answer hv-request within 20 s"
        sleep 0.1
    done
    tries=0
    until [ "$(cat "$SF_ROOT/hv.txt")" = after ]; do
        tries=$((tries + 1))
        [ $tries -le 50 ] || fail "hv.txt still reads '$(one_line "$(cat "$SF_ROOT/hv.txt")")' 5 s after the host rewrote it"
        sleep 0.1
    done
    note "the host's rewrite was visible after $tries retries 0.1 s apart"
}

# Item 42: with every share unmounted, both drivers unload, vboxguest probes the device again, and the share
# mounts and reads again. It leaves the drivers loaded and the share mounted, so it can run last.
step_sf_reprobe() {
    sf_require_mount
    for mountpoint in $(awk '$3 == "vboxsf" { print $2 }' /proc/mounts); do
        must umount "$mountpoint" >/dev/null
    done
    mark=$(dmesg_mark)
    must rmmod vboxsf >/dev/null
    must rmmod vboxguest >/dev/null
    [ -e /dev/vboxguest ] && fail "/dev/vboxguest still exists after rmmod vboxguest"
    load_module vboxguest
    bound="/sys/bus/pci/drivers/vboxguest/$(basename "$VMMDEV_PCI")"
    [ -e "$bound" ] || fail "vboxguest did not bind to $(basename "$VMMDEV_PCI") again"
    [ -c /dev/vboxguest ] || fail "no /dev/vboxguest after the second probe"
    sf_require_mount
    sf_expect_content "$SF_ROOT/from-host.txt" "hello from the host"
    fail_on_vbox_errors "$(dmesg_since "$mark")"
}

# Item 32 on a share with symlinks=deny: creating a link fails with EPERM (never a protocol error) and
# creates nothing.
step_sf_symlink_deny() {
    require_vmmdev
    load_module vboxsf
    mkdir -p "$SF_NOLINKS_ROOT"
    if ! grep -q " $SF_NOLINKS_ROOT vboxsf " /proc/mounts; then
        out=$(mount -t vboxsf "$SF_NOLINKS_SHARE" "$SF_NOLINKS_ROOT" 2>&1) ||
            fail "mount of '$SF_NOLINKS_SHARE' failed: $(one_line "$out")"
    fi
    echo hello >"$SF_NOLINKS_ROOT/w.txt" || fail "writing w.txt on the share failed"
    if out=$(ln -s w.txt "$SF_NOLINKS_ROOT/lnk" 2>&1); then
        fail "ln -s succeeded on a share with symlinks=deny"
    fi
    case "$out" in
    *"Operation not permitted"*) ;;
    *) fail "ln -s on a share with symlinks=deny: '$(one_line "$out")', expected 'Operation not permitted'" ;;
    esac
    [ -L "$SF_NOLINKS_ROOT/lnk" ] && fail "the refused ln -s left a link"
    must rm "$SF_NOLINKS_ROOT/w.txt" >/dev/null
    must umount "$SF_NOLINKS_ROOT" >/dev/null
}

# Item 43, run by tests/e2e/tests/boot_reboot.rs only (vmmdev.sf_reboot=1, vmmdev.exit=reboot): the machine
# reboots with the same device attached. The first boot writes work-reboot/boot-1 and leaves by rebooting;
# the second finds it, reads it back, writes and reads back boot-2 after dropping the page cache, and asks
# /init to power off instead of rebooting again.
step_sf_reboot() {
    grep -qw 'vmmdev.sf_reboot=1' /proc/cmdline || skip "only in the reboot test (vmmdev.sf_reboot=1)"
    sf_require_mount
    dir="$SF_ROOT/work-reboot"
    if [ ! -e "$dir/boot-1" ]; then
        mkdir -p "$dir" || fail "mkdir $dir failed"
        echo "written before the reboot" >"$dir/boot-1" || fail "writing boot-1 failed"
        sync
        note "first boot: boot-1 written; leaving by reboot"
        return 0
    fi
    sf_expect_content "$dir/boot-1" "written before the reboot"
    echo "written after the reboot" >"$dir/boot-2" || fail "writing boot-2 failed"
    sf_drop_caches
    sf_expect_content "$dir/boot-2" "written after the reboot"
    echo poweroff >/run/vmmdev-exit
    note "second boot: boot-1 read back; boot-2 written and read back after drop_caches; leaving by poweroff"
}
