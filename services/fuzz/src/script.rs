//! The fuzz input: a script of guest calls, cancels, reconnects and host calls.
//!
//! libFuzzer mutates bytes; the services parse parameters. Decoding the bytes into a script of
//! whole HGCM operations (rather than handing raw bytes to one call) lets a mutation change one
//! parameter of one call while the calls that set up state (mapping a share, opening a file,
//! announcing features) stay intact, so the fuzzer reaches the deep states where parsing bugs
//! hide. Every byte string decodes to some script (missing bytes read as zero) and a script
//! encodes back to the bytes it came from, so seeds are written as scripts in
//! [`crate::seeds`].
//!
//! Layout, repeated until the input ends:
//!
//! ```text
//! op     := tag:u8 body
//!   tag % 4 == 0  Call      client = (tag >> 2) % CLIENTS; function:u8; params
//!   tag % 4 == 1  Cancel    call:u8 (the n-th call submitted so far, modulo their count)
//!   tag % 4 == 2  Reconnect client = (tag >> 2) % CLIENTS
//!   tag % 4 == 3  Host      function:u16; params
//! params := count:u8 (% (MAX_PARAMS + 1)) parm*
//! parm   := kind:u8 (% 6) payload
//!   0 U32   value:u32        1 U64  value:u64
//!   2 In    len:u16 bytes    3 Out  capacity:u16
//!   4 Both  len:u16 bytes    5 Text len:u16 bytes (framed by the target: SHFLSTRING, C string)
//! ```
//!
//! Integers are little-endian.

/// Guest clients a script can address.
pub const CLIENTS: u8 = 2;
/// Most parameters one call carries (the HGCM limit is higher; no service reads more).
pub const MAX_PARAMS: u8 = 8;

/// One parameter, before the target turns it into an HGCM parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParmSpec {
    /// A 32-bit value.
    U32(u32),
    /// A 64-bit value.
    U64(u64),
    /// A buffer the guest sends.
    In(Vec<u8>),
    /// A zero-filled buffer of this many bytes for the host to fill.
    Out(u16),
    /// A buffer in both directions.
    Both(Vec<u8>),
    /// A string, framed the way the target service expects its strings (sent to the host).
    Text(Vec<u8>),
}

/// One step of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A guest call from client `client`.
    Call {
        /// Which client (below [`CLIENTS`]).
        client: u8,
        /// The service function.
        function: u8,
        /// Its parameters.
        params: Vec<ParmSpec>,
    },
    /// Cancels the `call`-th call submitted so far (modulo the number submitted).
    Cancel {
        /// Index into the submitted calls.
        call: u8,
    },
    /// Disconnects client `client` (cancelling its pending calls) and connects it again.
    Reconnect {
        /// Which client (below [`CLIENTS`]).
        client: u8,
    },
    /// A host call to the service.
    Host {
        /// The host function.
        function: u16,
        /// Its parameters.
        params: Vec<ParmSpec>,
    },
}

/// Reads the input front to back; past the end every byte reads as zero.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&first, rest)) => {
                self.bytes = rest;
                first
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for byte in &mut out {
            *byte = self.u8();
        }
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// A length-prefixed byte string; shorter than its length if the input ends first.
    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.u16()).min(self.bytes.len());
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        taken.to_vec()
    }

    fn params(&mut self) -> Vec<ParmSpec> {
        let count = self.u8() % (MAX_PARAMS + 1);
        (0..count).map(|_| self.parm()).collect()
    }

    fn parm(&mut self) -> ParmSpec {
        match self.u8() % 6 {
            0 => ParmSpec::U32(u32::from_le_bytes(self.array())),
            1 => ParmSpec::U64(u64::from_le_bytes(self.array())),
            2 => ParmSpec::In(self.bytes()),
            3 => ParmSpec::Out(self.u16()),
            4 => ParmSpec::Both(self.bytes()),
            _ => ParmSpec::Text(self.bytes()),
        }
    }
}

/// Decodes fuzz input into a script. Never fails: every input is some script.
pub fn decode(input: &[u8]) -> Vec<Op> {
    let mut reader = Reader { bytes: input };
    let mut script = Vec::new();
    while !reader.bytes.is_empty() {
        let tag = reader.u8();
        let client = (tag >> 2) % CLIENTS;
        script.push(match tag % 4 {
            0 => Op::Call {
                client,
                function: reader.u8(),
                params: reader.params(),
            },
            1 => Op::Cancel { call: reader.u8() },
            2 => Op::Reconnect { client },
            _ => Op::Host {
                function: reader.u16(),
                params: reader.params(),
            },
        });
    }
    script
}

/// Encodes a script as fuzz input; `decode(&encode(s)) == s` for every script whose clients are
/// below [`CLIENTS`], with at most [`MAX_PARAMS`] parameters a call and byte strings shorter
/// than 64 KiB.
pub fn encode(script: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in script {
        match op {
            Op::Call {
                client,
                function,
                params,
            } => {
                out.push(client << 2);
                out.push(*function);
                encode_params(&mut out, params);
            }
            Op::Cancel { call } => out.extend([1, *call]),
            Op::Reconnect { client } => out.push(client << 2 | 2),
            Op::Host { function, params } => {
                out.push(3);
                out.extend(function.to_le_bytes());
                encode_params(&mut out, params);
            }
        }
    }
    out
}

fn encode_params(out: &mut Vec<u8>, params: &[ParmSpec]) {
    out.push(u8::try_from(params.len()).unwrap_or(u8::MAX));
    for parm in params {
        match parm {
            ParmSpec::U32(value) => {
                out.push(0);
                out.extend(value.to_le_bytes());
            }
            ParmSpec::U64(value) => {
                out.push(1);
                out.extend(value.to_le_bytes());
            }
            ParmSpec::In(bytes) => encode_bytes(out, 2, bytes),
            ParmSpec::Out(capacity) => {
                out.push(3);
                out.extend(capacity.to_le_bytes());
            }
            ParmSpec::Both(bytes) => encode_bytes(out, 4, bytes),
            ParmSpec::Text(bytes) => encode_bytes(out, 5, bytes),
        }
    }
}

fn encode_bytes(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    out.push(kind);
    out.extend(u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_and_parameter_kind_round_trips() {
        let script = vec![
            Op::Call {
                client: 1,
                function: 7,
                params: vec![
                    ParmSpec::U32(0xDEAD_BEEF),
                    ParmSpec::U64(u64::MAX - 1),
                    ParmSpec::In(b"abc".to_vec()),
                    ParmSpec::Out(300),
                    ParmSpec::Both(vec![0; 5]),
                    ParmSpec::Text(b"/x".to_vec()),
                ],
            },
            Op::Cancel { call: 9 },
            Op::Reconnect { client: 1 },
            Op::Host {
                function: 0x105,
                params: vec![ParmSpec::U32(1)],
            },
            Op::Call {
                client: 0,
                function: 0,
                params: vec![],
            },
        ];
        assert_eq!(decode(&encode(&script)), script);
    }

    #[test]
    fn a_truncated_input_still_decodes() {
        // A call whose byte string claims 255 bytes but has 2.
        let script = decode(&[0, 3, 1, 2, 0xFF, 0, b'a', b'b']);
        assert_eq!(
            script,
            vec![Op::Call {
                client: 0,
                function: 3,
                params: vec![ParmSpec::In(b"ab".to_vec())],
            }]
        );
        assert_eq!(decode(&[]), vec![]);
    }
}
