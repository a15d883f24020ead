//! Seed scripts: what real clients send, as scripts, so the fuzzer starts from calls that
//! succeed and mutates from there. `write-seeds` writes them as corpus files; the replay test
//! runs them on every test run.

use vmmdev_protocol::services::clipboard::{Function as Clip, GuestFeatures0, GuestFeatures1};
use vmmdev_protocol::services::guest_props::{Function as Prop, HostFunction as PropHost};
use vmmdev_protocol::services::shared_folders::{CreateParms, Function as Sf, SHFL_HANDLE_NIL};
use vmmdev_svc_clipboard::host::{
    HOST_FN_FETCH_GUEST_DATA, HOST_FN_QUERY_STATE, HOST_FN_READ_HOST_CONTENT,
    HOST_FN_REQUEST_GUEST_DATA, HOST_FN_SET_CONTENT, HOST_FN_SYNC_HOST,
};
use zerocopy::{FromZeros, IntoBytes};

use crate::script::{Op, ParmSpec};
use crate::shared_folders::shfl_string;

use ParmSpec::{Both, In, Out, Text, U32, U64};

/// A named seed of one target.
pub struct Seed {
    /// The file name it gets in the corpus.
    pub name: &'static str,
    /// The fuzz input.
    pub input: Vec<u8>,
}

impl Seed {
    fn script(name: &'static str, script: Vec<Op>) -> Seed {
        Seed {
            name,
            input: crate::script::encode(&script),
        }
    }
}

/// The seeds of the target named `target` (see [`crate::TARGETS`]).
pub fn of(target: &str) -> Vec<Seed> {
    match target {
        "guest_props" => guest_props(),
        "shared_folders" => shared_folders(),
        "clipboard" => clipboard(),
        "clipboard_convert" => clipboard_convert(),
        _ => Vec::new(),
    }
}

fn call(client: u8, function: impl Into<u32>, params: Vec<ParmSpec>) -> Op {
    Op::Call {
        client,
        function: u8::try_from(function.into()).unwrap_or(u8::MAX),
        params,
    }
}

fn host(function: impl Into<u32>, params: Vec<ParmSpec>) -> Op {
    Op::Host {
        function: u16::try_from(function.into()).unwrap_or(u16::MAX),
        params,
    }
}

fn text(s: &str) -> ParmSpec {
    Text(s.as_bytes().to_vec())
}

/// Guest properties: what `vboxcontrol guestproperty` and the guest daemon send.
pub fn guest_props() -> Vec<Seed> {
    let get = |client, name: &str| {
        call(
            client,
            Prop::GET_PROP,
            vec![text(name), Out(1024), U64(0), U32(0)],
        )
    };
    let set = |client, name: &str, value: &str, flags: &str| {
        call(
            client,
            Prop::SET_PROP,
            vec![text(name), text(value), text(flags)],
        )
    };
    vec![
        Seed::script(
            "set-get-delete",
            vec![
                set(0, "/VirtualBox/GuestInfo/Net/0/V4/IP", "10.0.2.15", ""),
                call(
                    0,
                    Prop::SET_PROP_VALUE,
                    vec![text("/Fuzz/A"), text("value")],
                ),
                get(0, "/VirtualBox/GuestInfo/Net/0/V4/IP"),
                get(1, "/VirtualBox/HostInfo/VBoxVer"),
                call(0, Prop::DEL_PROP, vec![text("/Fuzz/A")]),
                call(
                    0,
                    Prop::GET_PROP,
                    vec![text("/Fuzz/A"), Out(2), U64(0), U32(0)],
                ),
            ],
        ),
        Seed::script(
            "flags-and-host",
            vec![
                host(
                    PropHost::SET_PROP,
                    vec![text("/Fuzz/Ro"), text("x"), text("RDONLYGUEST")],
                ),
                set(0, "/Fuzz/Ro", "y", ""),
                set(0, "/Fuzz/T", "t", "TRANSIENT, TRANSRESET"),
                set(1, "/Fuzz/User", "u", "READONLY"),
                host(PropHost::SET_GLOBAL_FLAGS, vec![U32(4)]),
                set(0, "/Fuzz/Blocked", "b", ""),
                host(
                    PropHost::ENUM_PROPS,
                    vec![In(b"/Fuzz/*\0".to_vec()), Out(256), U32(0)],
                ),
            ],
        ),
        Seed::script(
            "enumerate-with-retry",
            vec![
                set(0, "/Fuzz/1", "one", ""),
                set(0, "/Fuzz/2", "two", ""),
                call(
                    0,
                    Prop::ENUM_PROPS,
                    vec![In(b"/Fuzz/*|/Virtual*\0".to_vec()), Out(16), U32(0)],
                ),
                call(
                    0,
                    Prop::ENUM_PROPS,
                    vec![In(b"\0".to_vec()), Out(4096), U32(0)],
                ),
            ],
        ),
        Seed::script(
            "waits-cancel-and-wake",
            vec![
                call(
                    0,
                    Prop::GET_NOTIFICATION,
                    vec![text("/Fuzz/*"), U64(0), Out(256), U32(0)],
                ),
                call(
                    1,
                    Prop::GET_NOTIFICATION,
                    vec![text("*"), U64(0), Out(8), U32(0)],
                ),
                call(
                    0,
                    Prop::GET_NOTIFICATION,
                    vec![text(""), U64(1), Out(256), U32(0)],
                ),
                Op::Cancel { call: 1 },
                host(
                    PropHost::SET_PROP,
                    vec![text("/Fuzz/Wake"), text("now"), text("")],
                ),
                set(0, "/Fuzz/Wake", "again", ""),
                Op::Reconnect { client: 0 },
                call(
                    0,
                    Prop::GET_NOTIFICATION,
                    vec![text("/Fuzz/W*"), U64(0), Out(256), U32(0)],
                ),
            ],
        ),
    ]
}

/// `CREATE` parameters as vboxsf fills them: NIL handle, the flags, the mode of a new object.
fn create_parms(flags: u32, mode: u32) -> Vec<u8> {
    let mut parms = CreateParms::new_zeroed();
    parms.handle.set(SHFL_HANDLE_NIL);
    parms.create_flags.set(flags);
    parms.info.attr.mode.set(mode);
    parms.info.attr.additional.set(1);
    parms.as_bytes().to_vec()
}

/// CREATE flags vboxsf uses.
const STAT: u32 = 0x101;
const OPENDIR: u32 = 0x1104;
const MKDIR: u32 = 0x3014;
const CREAT_RW: u32 = 0x3000;
const OPEN_READ: u32 = 0x1100;
/// A regular file's mode bits with the file type.
const FILE_0644: u32 = 0o100644;
const DIR_0755: u32 = 0o040755;

/// Shared folders: the Linux vboxsf mount and file operations, and the automounter.
pub fn shared_folders() -> Vec<Seed> {
    let shfl = |s: &str| Both(shfl_string(s.as_bytes()));
    let map = |client, share: &str| {
        call(
            client,
            Sf::MAP_FOLDER,
            vec![shfl(share), U32(0), U32(u32::from(b'/')), U32(1)],
        )
    };
    let create = |root, path: &str, flags, mode| {
        call(
            0,
            Sf::CREATE,
            vec![U32(root), shfl(path), Both(create_parms(flags, mode))],
        )
    };
    let mount = |share: &str| {
        vec![
            call(0, Sf::SET_UTF8, vec![]),
            call(0, Sf::SET_SYMLINKS, vec![]),
            map(0, share),
        ]
    };
    // The first two handles a fresh client gets: generation 1, slots 0 and 1.
    const FIRST: u64 = 1 << 32 | 1;
    const SECOND: u64 = 1 << 32 | 2;
    // The roots MAP_FOLDER returns: the shares' places in the configuration.
    const RO: u32 = 1;
    let list = |root, handle| {
        call(
            0,
            Sf::LIST,
            vec![
                U32(root),
                U64(handle),
                U32(0),
                U32(4096),
                In(vec![]),
                Out(4096),
                U32(0),
                U32(0),
            ],
        )
    };
    // An empty SHFLSTRING of 64 bytes for the service to fill.
    let mut name = vec![0; 4 + 64];
    name[..2].copy_from_slice(&64u16.to_le_bytes());
    let name = Both(name);
    let mut seeds = Vec::new();
    let mut script = mount("data");
    script.extend([
        create(0, "/file", OPEN_READ, 0),
        call(
            0,
            Sf::READ,
            vec![U32(0), U64(FIRST), U64(0), U32(16), Out(16)],
        ),
        create(0, "/new", CREAT_RW, FILE_0644),
        call(
            0,
            Sf::WRITE,
            vec![U32(0), U64(SECOND), U64(0), U32(5), In(b"hello".to_vec())],
        ),
        call(0, Sf::FLUSH, vec![U32(0), U64(SECOND)]),
        call(0, Sf::SET_FILE_SIZE, vec![U32(0), U64(SECOND), U64(2)]),
        call(0, Sf::CLOSE, vec![U32(0), U64(SECOND)]),
        call(0, Sf::CLOSE, vec![U32(0), U64(FIRST)]),
    ]);
    seeds.push(Seed::script("read-write", script));

    let mut script = mount("data");
    script.extend([
        create(0, "/dir", OPENDIR, 0),
        list(0, FIRST),
        list(0, FIRST),
        call(0, Sf::CLOSE, vec![U32(0), U64(FIRST)]),
        create(0, "/dir/sub", STAT, 0),
        create(0, "/made", MKDIR, DIR_0755),
        call(
            0,
            Sf::RENAME,
            vec![U32(0), shfl("/made"), shfl("/dir/moved"), U32(2)],
        ),
        call(0, Sf::REMOVE, vec![U32(0), shfl("/dir/moved"), U32(2)]),
        call(0, Sf::QUERY_MAP_NAME, vec![U32(0), name.clone()]),
    ]);
    seeds.push(Seed::script("directories", script));

    let mut script = mount("data");
    script.extend([
        call(0, Sf::READLINK, vec![U32(0), shfl("/escape"), Out(256)]),
        call(
            0,
            Sf::SYMLINK,
            vec![U32(0), shfl("/link"), shfl("../outside/secret"), Out(92)],
        ),
        create(0, "/link", OPEN_READ, 0),
        create(0, "/escape", OPEN_READ, 0),
        create(0, "/../outside/secret", OPEN_READ, 0),
        create(0, "/absolute/secret", OPEN_READ, 0),
        create(0, "/dir/sibling", OPEN_READ, 0),
        call(
            0,
            Sf::COPY_FILE,
            vec![U32(0), shfl("/escape"), U32(0), shfl("/copy"), U32(0)],
        ),
        call(
            0,
            Sf::READ,
            vec![U32(0), U64(FIRST), U64(0), U32(64), Out(64)],
        ),
    ]);
    seeds.push(Seed::script("escapes", script));

    let mut script = mount("ro");
    script.extend([
        create(RO, "/file", CREAT_RW, FILE_0644),
        call(0, Sf::REMOVE, vec![U32(RO), shfl("/file"), U32(1)]),
        call(
            0,
            Sf::SYMLINK,
            vec![U32(RO), shfl("/l"), shfl("file"), Out(92)],
        ),
        create(RO, "/file", 0x20100, 0),
        call(
            0,
            Sf::INFORMATION,
            vec![U32(RO), U64(FIRST), U32(0x8), U32(92), Both(vec![0; 92])],
        ),
        call(
            0,
            Sf::INFORMATION,
            vec![U32(RO), U64(0), U32(0x12), U32(40), Both(vec![0; 40])],
        ),
    ]);
    seeds.push(Seed::script("read-only", script));

    seeds.push(Seed::script(
        "automount",
        vec![
            call(1, Sf::QUERY_MAPPINGS, vec![U32(0x11), U32(4), Out(32)]),
            call(
                1,
                Sf::QUERY_MAP_INFO,
                vec![U32(RO), name.clone(), name, U64(0), U32(0)],
            ),
            call(1, Sf::WAIT_FOR_MAPPINGS_CHANGES, vec![U32(0)]),
            call(1, Sf::WAIT_FOR_MAPPINGS_CHANGES, vec![U32(1)]),
            host(2u32, vec![Both(shfl_string(b"inner"))]),
            call(1, Sf::CANCEL_MAPPINGS_CHANGES_WAITS, vec![]),
            call(1, Sf::QUERY_FEATURES, vec![U64(0), U32(0)]),
        ],
    ));
    seeds
}

/// The shared clipboard: VBoxClient's message protocol, a legacy guest, host requests.
pub fn clipboard() -> Vec<Seed> {
    let features = vec![
        U64(GuestFeatures0::CONTEXT_ID.bits()),
        U64(GuestFeatures1::MUST_BE_ONE.bits()),
    ];
    let peek = || vec![U64(0), U32(0), U32(0), U32(0)];
    // The context ID of the service's first read request: its request ID.
    let first_read = 1;
    vec![
        Seed::script(
            "message-protocol",
            vec![
                call(0, Clip::REPORT_FEATURES, features.clone()),
                call(0, Clip::QUERY_FEATURES, vec![U64(0), U64(0)]),
                call(0, Clip::MSG_PEEK_NOWAIT, peek()),
                call(0, Clip::MSG_GET, vec![U32(3), U32(0)]),
                call(0, Clip::REPORT_FORMATS, vec![U32(0x5)]),
                call(0, Clip::MSG_PEEK_WAIT, peek()),
                host(HOST_FN_QUERY_STATE, vec![U32(0), U32(0), U32(0), U32(0)]),
                host(HOST_FN_REQUEST_GUEST_DATA, vec![U32(1), U32(50), U32(0)]),
                call(0, Clip::MSG_GET, vec![U64(5), U32(0)]),
                call(
                    0,
                    Clip::DATA_WRITE,
                    vec![U64(first_read), U32(1), text("from the guest\n")],
                ),
                host(HOST_FN_FETCH_GUEST_DATA, vec![U32(1), Out(256), U32(0)]),
                call(0, Clip::MSG_CANCEL, vec![]),
            ],
        ),
        Seed::script(
            "host-content",
            vec![
                call(0, Clip::REPORT_FEATURES, features.clone()),
                host(
                    HOST_FN_SET_CONTENT,
                    vec![
                        U32(0x1),
                        In(b"host text\n".to_vec()),
                        U32(0x4),
                        In(b"<b>x</b>".to_vec()),
                    ],
                ),
                host(HOST_FN_SYNC_HOST, vec![]),
                call(0, Clip::MSG_PEEK_NOWAIT, peek()),
                call(0, Clip::MSG_GET, vec![U32(3), U32(0)]),
                call(0, Clip::DATA_READ, vec![U32(1), Out(8), U32(0)]),
                call(0, Clip::DATA_READ, vec![U32(1), Out(256), U32(0)]),
                call(0, Clip::DATA_READ, vec![U32(4), Out(256), U32(0)]),
                host(HOST_FN_READ_HOST_CONTENT, vec![U32(1), Out(64), U32(0)]),
                host(1u32, vec![U32(2)]),
                call(0, Clip::DATA_READ, vec![U32(1), Out(256), U32(0)]),
            ],
        ),
        Seed::script(
            "legacy-guest",
            vec![
                call(1, Clip::MSG_OLD_GET_WAIT, vec![U32(0), U32(0)]),
                call(1, Clip::MSG_OLD_GET_WAIT, vec![U32(0), U32(0)]),
                call(1, Clip::REPORT_FORMATS, vec![U32(0x2)]),
                host(HOST_FN_REQUEST_GUEST_DATA, vec![U32(2), U32(50), U32(0)]),
                call(1, Clip::DATA_WRITE, vec![U32(2), In(bitmap())]),
                Op::Cancel { call: 1 },
                Op::Reconnect { client: 1 },
            ],
        ),
    ]
}

/// A 1x1 24-bit DIB as a guest sends it.
fn bitmap() -> Vec<u8> {
    let mut dib = Vec::new();
    for field in [40u32, 1, 1] {
        dib.extend(field.to_le_bytes());
    }
    dib.extend(1u16.to_le_bytes());
    dib.extend(24u16.to_le_bytes());
    dib.extend([0; 24]);
    dib.extend([0, 0, 0xFF, 0]);
    dib
}

/// The conversions: wire text with CRLF and a BOM, HTML, a DIB with a colour table.
pub fn clipboard_convert() -> Vec<Seed> {
    let mut text = vec![0xFF, 0xFE];
    text.extend("Grüße\r\n🦀\0".encode_utf16().flat_map(u16::to_le_bytes));
    let mut paletted = bitmap();
    paletted[14..16].copy_from_slice(&8u16.to_le_bytes());
    paletted[32..36].copy_from_slice(&2u32.to_le_bytes());
    paletted.truncate(40);
    paletted.extend([1, 2, 3, 0, 4, 5, 6, 0, 1, 0, 0, 0]);
    vec![
        Seed {
            name: "utf16-text",
            input: text,
        },
        Seed {
            name: "html",
            input: b"<p>caf\xc3\xa9</p>\0".to_vec(),
        },
        Seed {
            name: "dib-24bit",
            input: bitmap(),
        },
        Seed {
            name: "dib-8bit",
            input: paletted,
        },
    ]
}
