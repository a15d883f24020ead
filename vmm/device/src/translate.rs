//! Guest-virtual to guest-physical translation for LinAddr HGCM parameters.
//!
//! Old guests may pass HGCM buffers by guest-virtual address (parameter types 4–6). Resolving
//! them needs the page tables of the vCPU that wrote the request port, which only the embedder
//! can walk. Embedders that want such buffers install a [`GuestVirtualTranslator`]; without
//! one, non-empty LinAddr parameters fail with `VERR_NOT_SUPPORTED` (Linux never sends them:
//! it uses page lists and only ever passes empty LinAddr buffers).

use vm_memory::GuestAddress;

/// Translates guest-virtual addresses in the context of the current vCPU.
///
/// The device calls it synchronously on the thread that performs the request-port write, i.e.
/// the vCPU thread whose paging context applies, once per 4 KiB page of the buffer. Return
/// `None` for unmapped addresses; the request is then refused with `VERR_INVALID_PARAMETER`.
pub trait GuestVirtualTranslator: Send + Sync {
    /// Guest-physical address of the byte at guest-virtual `gva`.
    fn translate(&self, gva: u64) -> Option<GuestAddress>;
}
