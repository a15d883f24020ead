//! The HGCM face of the file server: decodes each call's parameters, runs the operation, writes
//! the outputs back and completes the call with a VirtualBox status.
//!
//! This is the wire boundary: [`FsError::status`] is applied here and nowhere else. Strings and
//! structures are copied out of guest memory exactly once, bounded, before they are parsed; READ
//! and WRITE move file data directly between the host file and the guest's pages inside one
//! guarded access, so a cancelled call never touches guest memory again.

use std::collections::HashMap;

use vm_memory::VolatileSlice;
use vmmdev_hgcm_sdk::{
    Buffer, BufferError, Call, ClientId, ClientLimits, Params, Requestor, Service,
};
use vmmdev_protocol::services::shared_folders::{
    AddMappingFlags, CreateParms, ErrorStyle, Features, FsObjInfo, Function, InfoFlags, ListFlags,
    MappingStatus, SHFL_FN_LAST, SHFL_LIST_MIN_BUFFER_SIZE, SHFL_MAX_CALLS_PER_CLIENT,
    SHFL_MAX_CLIENTS_PER_CATEGORY, ShflStringHeader, VolInfo,
};
use vmmdev_protocol::status::Status;
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, IntoBytes};

use crate::config::{ServiceConfig, ShareConfig, SymlinkPolicy};
use crate::error::{FsError, errno_status};
use crate::host::{HOST_FN_LIST_SHARES, SYMLINKS_ANY_TARGET};
use crate::mappings::{MappingError, Removal};
use crate::server::{AddShareError, FileServer};
use crate::stats::CallCounts;
use crate::string::{self, Encoding};
use crate::waits::MappingWaits;

/// Largest `SHFLSTRING` buffer read from the guest (header plus a full 16-bit payload).
const MAX_STRING_BUFFER: usize = 4 + u16::MAX as usize;
/// Size of `SHFLMAPPING`.
const MAPPING_SIZE: usize = 8;

/// The `VBoxSharedFolders` service.
#[derive(Debug)]
pub struct SharedFolders {
    server: FileServer,
    waits: MappingWaits,
    /// Reused LIST output buffer.
    scratch: Vec<u8>,
    /// Calls per connected client, logged at disconnect.
    calls: HashMap<ClientId, CallCounts>,
}

/// How a function reports malformed parameters: VirtualBox answers most with
/// `VERR_INVALID_PARAMETER`, a few newer ones with the specific count/type codes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checking {
    Lenient,
    Strict,
}

struct Args<'a> {
    params: &'a Params,
    checking: Checking,
}

impl<'a> Args<'a> {
    fn new(params: &'a Params, count: usize, checking: Checking) -> Result<Args<'a>, FsError> {
        if params.len() != count {
            return Err(match checking {
                Checking::Strict => FsError::WrongParameterCount,
                Checking::Lenient => FsError::InvalidParameter("parameter count"),
            });
        }
        Ok(Args { params, checking })
    }

    fn wrong_type(&self) -> FsError {
        match self.checking {
            Checking::Strict => FsError::WrongParameterType,
            Checking::Lenient => FsError::InvalidParameter("parameter type"),
        }
    }

    fn u32(&self, index: usize) -> Result<u32, FsError> {
        self.params.u32(index).map_err(|_| self.wrong_type())
    }

    fn u64(&self, index: usize) -> Result<u64, FsError> {
        self.params.u64(index).map_err(|_| self.wrong_type())
    }

    fn buffer(&self, index: usize) -> Result<&'a Buffer, FsError> {
        self.params.buffer(index).map_err(|_| self.wrong_type())
    }

    /// A buffer the service writes results into: refused up front (before any side effect) if
    /// its direction does not let the host write.
    fn out_buffer(&self, index: usize) -> Result<&'a Buffer, FsError> {
        let buffer = self.buffer(index)?;
        if !buffer.direction().host_writes() {
            return Err(FsError::InvalidParameter(
                "output buffer is guest-to-host only",
            ));
        }
        Ok(buffer)
    }

    /// A string buffer's bytes, copied once (at most a full `SHFLSTRING`).
    fn string(&self, index: usize) -> Result<Vec<u8>, FsError> {
        read_bounded(self.buffer(index)?, MAX_STRING_BUFFER)
    }

    /// An optional string buffer (length 0 = absent).
    fn optional_string(&self, index: usize) -> Result<Option<Vec<u8>>, FsError> {
        let buffer = self.buffer(index)?;
        if buffer.is_empty() {
            Ok(None)
        } else {
            read_bounded(buffer, MAX_STRING_BUFFER).map(Some)
        }
    }
}

fn buffer_error(error: BufferError) -> FsError {
    match error {
        BufferError::Cancelled => FsError::Cancelled,
        _ => FsError::InvalidParameter("buffer access"),
    }
}

/// Copies at most `max` bytes from the start of `buffer`.
fn read_bounded(buffer: &Buffer, max: usize) -> Result<Vec<u8>, FsError> {
    let mut bytes = vec![0; buffer.len().min(max)];
    let read = buffer.read_at(0, &mut bytes).map_err(buffer_error)?;
    bytes.truncate(read);
    Ok(bytes)
}

/// Copies a structure of exactly `T`'s size from the start of `buffer`.
fn read_struct<T: FromBytes>(buffer: &Buffer) -> Result<T, FsError> {
    let bytes = read_bounded(buffer, std::mem::size_of::<T>())?;
    T::read_from_bytes(&bytes).map_err(|_| FsError::InvalidParameter("structure size"))
}

fn write_bytes(
    params: &mut Params,
    index: usize,
    offset: usize,
    bytes: &[u8],
) -> Result<(), FsError> {
    let mut buffer = params
        .buffer_mut(index)
        .map_err(|_| FsError::InvalidParameter("buffer"))?;
    let written = buffer.write_at(offset, bytes).map_err(buffer_error)?;
    if written != bytes.len() {
        return Err(FsError::BufferOverflow);
    }
    Ok(())
}

fn set_u32(params: &mut Params, index: usize, value: u32) -> Result<(), FsError> {
    params
        .set_u32(index, value)
        .map_err(|_| FsError::InvalidParameter("output parameter"))
}

fn set_u64(params: &mut Params, index: usize, value: u64) -> Result<(), FsError> {
    params
        .set_u64(index, value)
        .map_err(|_| FsError::InvalidParameter("output parameter"))
}

/// Writes `text` into the output `SHFLSTRING` buffer at `index`. If it does not fit, the
/// header's length tells the guest how many bytes it needs.
fn write_string(
    params: &mut Params,
    index: usize,
    text: &str,
    encoding: Encoding,
    too_small: FsError,
) -> Result<(), FsError> {
    let buffer = params
        .buffer(index)
        .map_err(|_| FsError::InvalidParameter("buffer"))?;
    let header = read_bounded(buffer, string::HEADER_SIZE)?;
    let capacity = string::output_capacity(buffer.len(), &header)?;
    let encoded = string::encode(text, encoding);
    let length = u16::try_from(encoded.len()).map_err(|_| FsError::BufferOverflow)?;
    let size = u16::try_from(capacity).unwrap_or(u16::MAX);
    let out_header = ShflStringHeader {
        size: U16::new(size),
        length: U16::new(length),
    };
    if encoded.len() + encoding.terminator_len() > capacity {
        write_bytes(params, index, 0, out_header.as_bytes())?;
        return Err(too_small);
    }
    let mut bytes = Vec::with_capacity(string::HEADER_SIZE + encoded.len() + 2);
    bytes.extend_from_slice(out_header.as_bytes());
    bytes.extend_from_slice(&encoded);
    bytes.resize(bytes.len() + encoding.terminator_len(), 0);
    write_bytes(params, index, 0, &bytes)
}

impl SharedFolders {
    /// Builds the service from its configuration string (see [`crate::config`]).
    pub fn new(config: &str) -> Result<SharedFolders, i32> {
        let config = ServiceConfig::parse(config).map_err(|e| {
            log::error!("shared folders configuration refused: {e}");
            Status::VERR_INVALID_PARAMETER.raw()
        })?;
        let server = FileServer::new(&config).map_err(|e| {
            log::error!("shared folders configuration refused: {e}");
            add_share_status(&e)
        })?;
        Ok(SharedFolders {
            server,
            waits: MappingWaits::default(),
            scratch: Vec::new(),
            calls: HashMap::new(),
        })
    }

    /// The file server (for embedders that drive it directly).
    pub fn server(&mut self) -> &mut FileServer {
        &mut self.server
    }

    fn encoding(&self, client: ClientId) -> Encoding {
        self.server
            .session(client)
            .map_or(Encoding::Utf16, |session| session.encoding())
    }

    /// Runs one guest function; `Ok` carries the (success or informational) status.
    fn dispatch(&mut self, call: &mut Call) -> Result<Status, FsError> {
        let client = call.client();
        let function = Function(call.function());
        let params = call.params_mut();
        match function {
            Function::QUERY_MAPPINGS => self.query_mappings(client, params),
            Function::QUERY_MAP_NAME => self.query_map_name(client, params),
            Function::CREATE => self.create(client, params),
            Function::CLOSE => {
                let args = Args::new(params, 2, Checking::Lenient)?;
                self.server.close(client, args.u32(0)?, args.u64(1)?)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::READ => self.read(client, params),
            Function::WRITE => self.write(client, params),
            Function::LOCK => {
                let args = Args::new(params, 5, Checking::Lenient)?;
                let (root, handle, flags) = (args.u32(0)?, args.u64(1)?, args.u32(4)?);
                args.u64(2)?;
                args.u64(3)?;
                self.server.lock(client, root, handle, flags)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::LIST => self.list(client, params),
            Function::INFORMATION => self.information(client, params),
            Function::REMOVE => {
                let args = Args::new(params, 3, Checking::Strict)?;
                let path = args.string(1)?;
                self.server
                    .remove(client, args.u32(0)?, &path, args.u32(2)?)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::CLOSE_AND_REMOVE => {
                let args = Args::new(params, 4, Checking::Strict)?;
                let path = args.string(1)?;
                let (root, flags, handle) = (args.u32(0)?, args.u32(2)?, args.u64(3)?);
                self.server
                    .close_and_remove(client, root, &path, flags, handle)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::MAP_FOLDER_OLD => {
                let args = Args::new(params, 3, Checking::Lenient)?;
                let name = args.string(0)?;
                args.u32(1)?;
                let root = self.server.map_folder(client, &name, args.u32(2)?, false)?;
                set_u32(params, 1, root)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::MAP_FOLDER => {
                let args = Args::new(params, 4, Checking::Lenient)?;
                let name = args.string(0)?;
                args.u32(1)?;
                let (delimiter, case) = (args.u32(2)?, args.u32(3)? != 0);
                let root = self.server.map_folder(client, &name, delimiter, case)?;
                set_u32(params, 1, root)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::UNMAP_FOLDER => {
                let args = Args::new(params, 1, Checking::Lenient)?;
                self.server.unmap_folder(client, args.u32(0)?)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::RENAME => {
                let args = Args::new(params, 4, Checking::Lenient)?;
                let (from, to) = (args.string(1)?, args.string(2)?);
                self.server
                    .rename(client, args.u32(0)?, &from, &to, args.u32(3)?)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::FLUSH => {
                let args = Args::new(params, 2, Checking::Lenient)?;
                self.server.flush(client, args.u32(0)?, args.u64(1)?)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::SET_UTF8 => {
                self.server.set_utf8(client)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::SET_SYMLINKS => {
                self.server.set_symlinks(client)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::READLINK => self.readlink(client, params),
            Function::SYMLINK => self.symlink(client, params),
            Function::QUERY_MAP_INFO => self.query_map_info(client, params),
            Function::CANCEL_MAPPINGS_CHANGES_WAITS => {
                Args::new(params, 0, Checking::Lenient)?;
                self.waits
                    .cancel_client(client, self.server.mappings_version());
                Ok(Status::VINF_SUCCESS)
            }
            Function::SET_FILE_SIZE => {
                let args = Args::new(params, 3, Checking::Strict)?;
                let size = i64::try_from(args.u64(2)?)
                    .map_err(|_| FsError::InvalidParameter("negative size"))?;
                self.server
                    .set_file_size(client, args.u32(0)?, args.u64(1)?, size)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::QUERY_FEATURES => {
                let args = Args::new(params, 2, Checking::Strict)?;
                args.u64(0)?;
                args.u32(1)?;
                set_u64(params, 0, Features::WRITE_UPDATES_OFFSET.bits())?;
                set_u32(params, 1, SHFL_FN_LAST)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::COPY_FILE => {
                let args = Args::new(params, 5, Checking::Strict)?;
                let (from, to) = (args.string(1)?, args.string(3)?);
                let (from_root, to_root, flags) = (args.u32(0)?, args.u32(2)?, args.u32(4)?);
                self.server
                    .copy_file(client, from_root, &from, to_root, &to, flags)?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::COPY_FILE_PART => {
                let args = Args::new(params, 8, Checking::Strict)?;
                let from = (args.u32(0)?, args.u64(1)?, args.u64(2)?);
                let to = (args.u32(3)?, args.u64(4)?, args.u64(5)?);
                let (count, flags) = (args.u64(6)?, args.u32(7)?);
                let result = self.server.copy_file_part(client, from, to, count, flags);
                set_u64(params, 6, *result.as_ref().unwrap_or(&0))?;
                result?;
                Ok(Status::VINF_SUCCESS)
            }
            Function::SET_ERROR_STYLE => {
                let args = Args::new(params, 2, Checking::Strict)?;
                let style = ErrorStyle(args.u32(0)?);
                if args.u32(1)? != 0 || style.name().is_none() {
                    return Err(FsError::WrongParameterType);
                }
                if style != ErrorStyle::LINUX {
                    return Err(FsError::NotSupported("Windows error style"));
                }
                Ok(Status::VINF_SUCCESS)
            }
            _ => Ok(Status::VERR_NOT_IMPLEMENTED),
        }
    }

    fn query_mappings(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 3, Checking::Lenient)?;
        let (flags, capacity) = (args.u32(0)?, args.u32(1)?);
        let buffer = args.out_buffer(2)?;
        if buffer.len() % MAPPING_SIZE != 0 || buffer.len() / MAPPING_SIZE != capacity as usize {
            return Err(FsError::InvalidParameter("mapping array size"));
        }
        let roots = self.server.query_mappings(client, flags)?;
        let mut bytes = Vec::with_capacity(roots.len().min(capacity as usize) * MAPPING_SIZE);
        for &root in roots.iter().take(capacity as usize) {
            bytes.extend_from_slice(&MappingStatus::NEW.raw().to_le_bytes());
            bytes.extend_from_slice(&root.to_le_bytes());
        }
        write_bytes(params, 2, 0, &bytes)?;
        set_u32(params, 1, u32::try_from(roots.len()).unwrap_or(u32::MAX))?;
        Ok(if roots.len() > capacity as usize {
            Status::VINF_BUFFER_OVERFLOW
        } else {
            Status::VINF_SUCCESS
        })
    }

    fn query_map_name(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 2, Checking::Lenient)?;
        let name = self.server.query_map_name(args.u32(0)?)?;
        let encoding = self.encoding(client);
        let too_small = match encoding {
            Encoding::Utf8 => FsError::BufferOverflow,
            Encoding::Utf16 => FsError::InvalidParameter("name buffer too small"),
        };
        write_string(params, 1, &name, encoding, too_small)?;
        Ok(Status::VINF_SUCCESS)
    }

    fn query_map_info(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 5, Checking::Lenient)?;
        let (root, query) = (args.u32(0)?, args.u64(3)?);
        args.out_buffer(1)?;
        args.out_buffer(2)?;
        args.u32(4)?;
        let info = self.server.query_map_info(root, query)?;
        let encoding = self.encoding(client);
        write_string(params, 1, &info.name, encoding, FsError::BufferOverflow)?;
        write_string(
            params,
            2,
            &info.mount_point,
            encoding,
            FsError::BufferOverflow,
        )?;
        set_u64(params, 3, info.flags.bits())?;
        set_u32(params, 4, info.version)?;
        Ok(Status::VINF_SUCCESS)
    }

    fn create(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 3, Checking::Lenient)?;
        let root = args.u32(0)?;
        let path = args.string(1)?;
        let parms_buffer = args.out_buffer(2)?;
        if parms_buffer.len() != std::mem::size_of::<CreateParms>() {
            return Err(FsError::InvalidParameter("create parameters size"));
        }
        let mut parms: CreateParms = read_struct(parms_buffer)?;
        let result = self.server.create(client, root, &path, &mut parms);
        write_bytes(params, 2, 0, parms.as_bytes())?;
        result.map(|()| Status::VINF_SUCCESS)
    }

    fn read(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 5, Checking::Strict)?;
        let (root, handle, offset, count) =
            (args.u32(0)?, args.u64(1)?, args.u64(2)?, args.u32(3)?);
        let buffer = args.out_buffer(4)?;
        let result = if count as usize > buffer.len() {
            Err(FsError::InvalidParameter("count exceeds the buffer"))
        } else {
            match buffer.guest_access() {
                Ok(access) => {
                    let slices: Vec<VolatileSlice<'_>> = access.volatile_slices().collect();
                    self.server
                        .read(client, root, handle, offset, count as usize, &slices)
                }
                Err(e) => Err(buffer_error(e)),
            }
        };
        let read = *result.as_ref().unwrap_or(&0);
        set_u32(params, 3, u32::try_from(read).unwrap_or(0))?;
        result.map(|_| Status::VINF_SUCCESS)
    }

    fn write(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 5, Checking::Strict)?;
        let (root, handle, offset, count) =
            (args.u32(0)?, args.u64(1)?, args.u64(2)?, args.u32(3)?);
        let buffer = args.buffer(4)?;
        let result = if count as usize > buffer.len() {
            Err(FsError::InvalidParameter("count exceeds the buffer"))
        } else {
            match buffer.guest_access() {
                Ok(access) => {
                    let slices: Vec<VolatileSlice<'_>> = access.volatile_slices().collect();
                    self.server
                        .write(client, root, handle, offset, count as usize, &slices)
                }
                Err(e) => Err(buffer_error(e)),
            }
        };
        match result {
            Ok(written) => {
                set_u64(params, 2, written.offset)?;
                set_u32(params, 3, u32::try_from(written.count).unwrap_or(0))?;
                Ok(Status::VINF_SUCCESS)
            }
            Err(e) => {
                set_u32(params, 3, 0)?;
                Err(e)
            }
        }
    }

    fn list(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 8, Checking::Lenient)?;
        let (root, handle, flags, capacity) =
            (args.u32(0)?, args.u64(1)?, args.u32(2)?, args.u32(3)?);
        let filter = args.optional_string(4)?;
        let out = args.out_buffer(5)?;
        args.u32(6)?;
        args.u32(7)?;
        let flags = ListFlags::from_bits(flags).ok_or(FsError::InvalidParameter("list flags"))?;
        if capacity < SHFL_LIST_MIN_BUFFER_SIZE || capacity as usize > out.len() {
            return Err(FsError::InvalidParameter("list buffer size"));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.server.list(
            client,
            root,
            handle,
            flags,
            filter.as_deref(),
            capacity as usize,
            &mut scratch,
        );
        let status = match result {
            Ok(filled) if filled.entries == 0 && filled.exhausted => {
                set_u32(params, 3, 0)?;
                set_u32(params, 6, 0)?;
                set_u32(params, 7, 0)?;
                Ok(Status::VERR_NO_MORE_FILES)
            }
            Ok(filled) => {
                write_bytes(params, 5, 0, &scratch[..filled.bytes])?;
                set_u32(params, 3, u32::try_from(filled.bytes).unwrap_or(0))?;
                set_u32(params, 6, u32::from(!filled.exhausted))?;
                set_u32(params, 7, filled.entries)?;
                Ok(if filled.overflow {
                    Status::VINF_BUFFER_OVERFLOW
                } else {
                    Status::VINF_SUCCESS
                })
            }
            Err(e) => {
                set_u32(params, 3, 0)?;
                set_u32(params, 6, 0)?;
                Err(e)
            }
        };
        self.scratch = scratch;
        status
    }

    fn information(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 5, Checking::Lenient)?;
        let (root, handle, flags, size) = (args.u32(0)?, args.u64(1)?, args.u32(2)?, args.u32(3)?);
        let buffer = args.out_buffer(4)?;
        let result = if size as usize > buffer.len() {
            Err(FsError::InvalidParameter(
                "information size exceeds the buffer",
            ))
        } else {
            self.information_op(
                client,
                root,
                handle,
                InfoFlags::from_bits_retain(flags),
                size as usize,
                buffer,
            )
        };
        match result {
            Ok(bytes) => {
                write_bytes(params, 4, 0, &bytes)?;
                set_u32(params, 3, u32::try_from(bytes.len()).unwrap_or(0))?;
                Ok(Status::VINF_SUCCESS)
            }
            Err(e) => {
                set_u32(params, 3, 0)?;
                Err(e)
            }
        }
    }

    /// The INFORMATION operation `flags` selects; returns the bytes to give back.
    fn information_op(
        &mut self,
        client: ClientId,
        root: u32,
        handle: u64,
        flags: InfoFlags,
        size: usize,
        buffer: &Buffer,
    ) -> Result<Vec<u8>, FsError> {
        let set = flags.contains(InfoFlags::SET);
        let info_size = std::mem::size_of::<FsObjInfo>();
        if flags.contains(InfoFlags::FILE) {
            if size < info_size {
                return Err(FsError::InvalidParameter("information buffer too small"));
            }
            let info = if set {
                let wanted: FsObjInfo = read_struct(buffer)?;
                self.server.set_file_info(client, root, handle, &wanted)?
            } else {
                self.server.file_info(client, root, handle)?
            };
            return Ok(info.as_bytes().to_vec());
        }
        if flags.contains(InfoFlags::VOLUME) && !set {
            if size < std::mem::size_of::<VolInfo>() {
                return Err(FsError::InvalidParameter("volume buffer too small"));
            }
            return Ok(self.server.volume_info(client, root)?.as_bytes().to_vec());
        }
        if flags.contains(InfoFlags::SIZE) && set {
            if size < info_size {
                return Err(FsError::InvalidParameter("information buffer too small"));
            }
            let wanted: FsObjInfo = read_struct(buffer)?;
            let info = self
                .server
                .set_file_size(client, root, handle, wanted.object_size.get())?;
            return Ok(info.as_bytes().to_vec());
        }
        Err(FsError::InvalidParameter("information flags"))
    }

    fn readlink(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 3, Checking::Lenient)?;
        let root = args.u32(0)?;
        let path = args.string(1)?;
        let capacity = args.out_buffer(2)?.len();
        let mut target = self.server.readlink(client, root, &path)?;
        target.push(0);
        if target.len() > capacity {
            return Err(FsError::BufferOverflow);
        }
        write_bytes(params, 2, 0, &target)?;
        Ok(Status::VINF_SUCCESS)
    }

    fn symlink(&mut self, client: ClientId, params: &mut Params) -> Result<Status, FsError> {
        let args = Args::new(params, 4, Checking::Lenient)?;
        let root = args.u32(0)?;
        let (path, target) = (args.string(1)?, args.string(2)?);
        if args.out_buffer(3)?.len() != std::mem::size_of::<FsObjInfo>() {
            return Err(FsError::InvalidParameter("symlink info size"));
        }
        let info = self.server.symlink(client, root, &path, &target)?;
        write_bytes(params, 3, 0, info.as_bytes())?;
        Ok(Status::VINF_SUCCESS)
    }

    fn wait_for_changes(&mut self, mut call: Call) {
        let seen = match Args::new(call.params(), 1, Checking::Lenient).and_then(|a| a.u32(0)) {
            Ok(seen) => seen,
            Err(e) => {
                call.complete(e.status());
                return;
            }
        };
        let current = self.server.mappings_version();
        // Type checked above; the SDK keeps the value for the completion.
        let _ = call.params_mut().set_u32(0, current);
        self.waits.wait(call, seen, current);
    }

    fn mappings_changed(&mut self) {
        self.waits.changed(self.server.mappings_version());
    }

    fn add_mapping(&mut self, params: &mut Params) -> Result<Status, i32> {
        let invalid = Status::VERR_INVALID_PARAMETER.raw();
        if params.len() != 4 {
            return Err(invalid);
        }
        let text = |index: usize| -> Result<String, i32> {
            let buffer = params.buffer(index).map_err(|_| invalid)?;
            if buffer.is_empty() {
                return Ok(String::new());
            }
            let bytes = read_bounded(buffer, MAX_STRING_BUFFER).map_err(|_| invalid)?;
            string::parse(&bytes, Encoding::Utf16).map_err(|_| invalid)
        };
        let (path, name, mount_point) = (text(0)?, text(1)?, text(3)?);
        let raw_flags = params.u32(2).map_err(|_| invalid)?;
        let known = AddMappingFlags::all().bits() | SYMLINKS_ANY_TARGET;
        if raw_flags & !known != 0 {
            return Err(invalid);
        }
        let flags = AddMappingFlags::from_bits_truncate(raw_flags);
        let symlinks = match (
            flags.contains(AddMappingFlags::CREATE_SYMLINKS),
            raw_flags & SYMLINKS_ANY_TARGET != 0,
        ) {
            (false, _) => SymlinkPolicy::Deny,
            (true, false) => SymlinkPolicy::Inside,
            (true, true) => SymlinkPolicy::Allow,
        };
        let share = ShareConfig {
            name,
            path: path.into(),
            writable: flags.contains(AddMappingFlags::WRITABLE),
            auto_mount: flags.contains(AddMappingFlags::AUTOMOUNT),
            symlinks,
            mount_point,
        };
        self.server
            .add_share(share, flags.contains(AddMappingFlags::MISSING))
            .map_err(|e| {
                log::warn!("ADD_MAPPING refused: {e}");
                add_share_status(&e)
            })?;
        self.mappings_changed();
        Ok(Status::VINF_SUCCESS)
    }

    fn remove_mapping(&mut self, params: &mut Params) -> Result<Status, i32> {
        let invalid = Status::VERR_INVALID_PARAMETER.raw();
        if params.len() != 1 {
            return Err(invalid);
        }
        let bytes = read_bounded(params.buffer(0).map_err(|_| invalid)?, MAX_STRING_BUFFER)
            .map_err(|_| invalid)?;
        let name = string::parse(&bytes, Encoding::Utf16).map_err(|_| invalid)?;
        let removal = self
            .server
            .remove_share(&name)
            .map_err(|e| mapping_status(&e))?;
        self.mappings_changed();
        Ok(match removal {
            Removal::Removed => Status::VINF_SUCCESS,
            Removal::Placeholder => Status::VINF_PERMISSION_DENIED,
        })
    }

    fn list_shares(&mut self, params: &mut Params) -> Result<Status, i32> {
        let invalid = Status::VERR_INVALID_PARAMETER.raw();
        if params.len() != 2 {
            return Err(invalid);
        }
        let listing = self.server.share_list();
        let needed = u32::try_from(listing.len()).map_err(|_| invalid)?;
        params.set_u32(1, needed).map_err(|_| invalid)?;
        let capacity = params.buffer(0).map_err(|_| invalid)?.len();
        if listing.len() > capacity {
            return Ok(Status::VERR_BUFFER_OVERFLOW);
        }
        let mut out = params.buffer_mut(0).map_err(|_| invalid)?;
        out.write_at(0, listing.as_bytes()).map_err(|_| invalid)?;
        out.set_reported_len(listing.len()).map_err(|_| invalid)?;
        Ok(Status::VINF_SUCCESS)
    }
}

fn mapping_status(error: &MappingError) -> i32 {
    match error {
        MappingError::DuplicateName(_) => Status::VERR_ALREADY_EXISTS.raw(),
        MappingError::TableFull => Status::VERR_TOO_MUCH_DATA.raw(),
        MappingError::NotFound(_) => Status::VERR_FILE_NOT_FOUND.raw(),
    }
}

fn add_share_status(error: &AddShareError) -> i32 {
    match error {
        AddShareError::Config(_) => Status::VERR_INVALID_PARAMETER.raw(),
        AddShareError::Table(e) => mapping_status(e),
        AddShareError::Unreachable(e) => errno_status(e),
    }
}

/// Version of the saved client state ([`crate::persist`]).
const STATE_VERSION: u32 = 1;

impl Service for SharedFolders {
    const STATE_VERSION: u32 = STATE_VERSION;

    fn client_limits(&self, defaults: ClientLimits) -> ClientLimits {
        ClientLimits {
            max_clients: [SHFL_MAX_CLIENTS_PER_CATEGORY; 3],
            max_calls_per_client: SHFL_MAX_CALLS_PER_CLIENT,
            ..defaults
        }
    }

    fn connect(
        &mut self,
        client: ClientId,
        _requestor: Requestor,
        _restoring: bool,
    ) -> Result<(), i32> {
        self.server.connect(client);
        Ok(())
    }

    fn disconnect(&mut self, client: ClientId) {
        if let Some(calls) = self.calls.remove(&client) {
            log::info!("shared folders: {client} disconnected after calls: {calls}");
        }
        self.waits.drop_client(client);
        self.server.disconnect(client);
    }

    fn call(&mut self, mut call: Call) {
        self.calls
            .entry(call.client())
            .or_default()
            .count(call.function());
        if Function(call.function()) == Function::WAIT_FOR_MAPPINGS_CHANGES {
            self.wait_for_changes(call);
            return;
        }
        let status = match self.dispatch(&mut call) {
            Ok(status) => status.raw(),
            Err(error) => {
                log::debug!(
                    "shared folders function {} of {} failed: {error}",
                    Function(call.function()),
                    call.client()
                );
                error.status()
            }
        };
        call.complete(status);
    }

    fn cancelled(&mut self, _client: ClientId) {
        self.waits.drop_cancelled();
    }

    fn host_call(&mut self, function: u32, params: &mut Params) -> i32 {
        use vmmdev_protocol::services::shared_folders::HostFunction;
        let result = match HostFunction(function) {
            HostFunction::ADD_MAPPING => self.add_mapping(params),
            HostFunction::REMOVE_MAPPING => self.remove_mapping(params),
            HostFunction::ALLOW_SYMLINKS_CREATE => Ok(Status::VERR_NOT_IMPLEMENTED),
            _ if function == HOST_FN_LIST_SHARES => self.list_shares(params),
            _ => Ok(Status::VERR_NOT_SUPPORTED),
        };
        match result {
            Ok(status) => status.raw(),
            Err(status) => status,
        }
    }

    fn save_client(&mut self, client: ClientId) -> Vec<u8> {
        self.server.save_session(client)
    }

    fn load_client(&mut self, client: ClientId, version: u32, data: &[u8]) -> Result<(), i32> {
        if version != STATE_VERSION {
            return Err(Status::VERR_NOT_SUPPORTED.raw());
        }
        self.server.restore_session(client, data).map_err(|e| {
            log::error!("restoring {client} failed: {e}");
            Status::VERR_INVALID_PARAMETER.raw()
        })
    }

    fn unload(&mut self) {
        self.waits.changed(self.server.mappings_version());
    }
}
