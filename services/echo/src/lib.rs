//! `Echo`: an example HGCM service, a test fixture for the framework and the guest end-to-end
//! tests, and a template for plugin authors.
//!
//! The crate `vmmdev-svc-echo-plugin` (`services/echo/plugin`) exports it as a plugin
//! (`libvmmdev_echo.so`, loaded with `Hgcm::load_plugin("vmmdev_echo", config)`); this library's [`echo_entry`] can be
//! registered as a built-in (`Hgcm::register_builtin(vmmdev_svc_echo::echo_entry, config)`).
//!
//! # Guest functions
//!
//! | No. | Name | Parameters | Result |
//! |---|---|---|---|
//! | 1 | [`FN_ECHO`] | 0: buffer in (to host), 1: buffer out (from host) | Copies buffer 0 into buffer 1 and reports the copied length on buffer 1. `VERR_BUFFER_OVERFLOW` if buffer 1 is shorter (it then holds the first bytes). |
//! | 2 | [`FN_WAIT`] | 0: u32 timeout in ms (0 = none), 1: u32 out wake reason | Completes when a host call [`HOST_FN_WAKE_ALL`] wakes it (`VINF_SUCCESS`, reason [`WAKE_REASON_HOST`]), when the timeout passes (`VERR_TIMEOUT`, reason [`WAKE_REASON_TIMEOUT`]), or is let go when cancelled. For signal/timeout/kill interruption tests. |
//! | 3 | [`FN_PANIC`] | none | Panics inside the service (containment tests) if the configuration contains `allow_panic`; otherwise `VERR_ACCESS_DENIED`. |
//! | 4 | [`FN_NOOP`] | none | `VINF_SUCCESS` at once (latency benchmark). |
//! | 5 | [`FN_NOTIFY`] | 0: u32 code, 1: buffer payload (to host, ≤ 64 KiB) | Sends `(code, payload)` to the embedder's subscribers. |
//! | 6 | [`FN_INFO`] | 0: u32 out requestor, 1: u32 out client id, 2: u32 out 1 if restored | The call's own identity as the host saw it. |
//! | 7 | [`FN_STATS`] | 0: u64 out calls served by the service, 1: u32 out calls served for this client | Survives save/restore. |
//!
//! # Host functions
//!
//! | No. | Name | Parameters |
//! |---|---|---|
//! | 1 | [`HOST_FN_WAKE_ALL`] | 0: u32 out number woken (optional) |
//! | 2 | [`HOST_FN_CLIENT_COUNT`] | 0: u32 out connected clients |
//! | 3 | [`HOST_FN_WAITER_COUNT`] | 0: u32 out parked `WAIT` calls |
//!
//! # Configuration
//!
//! A comma- or space-separated list of flags: `allow_panic`. Anything else refuses the load with
//! `VERR_INVALID_PARAMETER`.

use std::collections::BTreeMap;
use std::time::Duration;

use vmmdev_hgcm_sdk::{Call, ClientId, Host, Params, Requestor, Service, Status};

mod waiters;

use waiters::Waiters;

/// The service name.
pub const SERVICE_NAME: &str = "Echo";

/// Guest function: copy buffer 0 into buffer 1.
pub const FN_ECHO: u32 = 1;
/// Guest function: wait for a wake-up, a timeout or a cancel.
pub const FN_WAIT: u32 = 2;
/// Guest function: panic (when allowed by the configuration).
pub const FN_PANIC: u32 = 3;
/// Guest function: do nothing.
pub const FN_NOOP: u32 = 4;
/// Guest function: send a notification to the embedder.
pub const FN_NOTIFY: u32 = 5;
/// Guest function: report the call's requestor, client and restored flag.
pub const FN_INFO: u32 = 6;
/// Guest function: report call counters.
pub const FN_STATS: u32 = 7;

/// Host function: wake every waiter.
pub const HOST_FN_WAKE_ALL: u32 = 1;
/// Host function: count clients.
pub const HOST_FN_CLIENT_COUNT: u32 = 2;
/// Host function: count waiters.
pub const HOST_FN_WAITER_COUNT: u32 = 3;

/// `FN_WAIT` reason: woken by the host.
pub const WAKE_REASON_HOST: u32 = 1;
/// `FN_WAIT` reason: timed out.
pub const WAKE_REASON_TIMEOUT: u32 = 2;

/// Largest buffer `FN_ECHO` copies.
pub const MAX_ECHO_BYTES: usize = 16 * 1024 * 1024;
/// Largest `FN_NOTIFY` payload.
pub const MAX_NOTIFY_BYTES: usize = 64 * 1024;

/// Version of the saved state.
const STATE_VERSION: u32 = 1;

/// The echo service.
pub struct Echo {
    host: Host,
    allow_panic: bool,
    waiters: Waiters,
    served: u64,
    /// Calls served per client (a B-tree: a few clients, looked up on every call).
    per_client: BTreeMap<ClientId, u32>,
}

impl std::fmt::Debug for Echo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Echo")
            .field("served", &self.served)
            .field("clients", &self.per_client.len())
            .finish()
    }
}

impl Echo {
    /// Builds the service from its configuration string.
    pub fn new(host: Host, config: &str) -> Result<Echo, i32> {
        let mut allow_panic = false;
        for flag in config.split([',', ' ']).filter(|f| !f.is_empty()) {
            match flag {
                "allow_panic" => allow_panic = true,
                _ => return Err(Status::VERR_INVALID_PARAMETER.raw()),
            }
        }
        let waiters = Waiters::start().map_err(|_| Status::VERR_NO_MEMORY.raw())?;
        Ok(Echo {
            host,
            allow_panic,
            waiters,
            served: 0,
            per_client: BTreeMap::new(),
        })
    }

    fn echo(params: &mut Params) -> Result<i32, i32> {
        params.expect_count(2)?;
        let data = params
            .buffer(0)?
            .copy_in(MAX_ECHO_BYTES)
            .map_err(|_| Status::VERR_INVALID_PARAMETER.raw())?;
        let mut out = params.buffer_mut(1)?;
        let copied = out
            .write_at(0, &data)
            .map_err(|_| Status::VERR_INVALID_PARAMETER.raw())?;
        out.set_reported_len(copied)
            .map_err(|_| Status::VERR_INVALID_PARAMETER.raw())?;
        Ok(if copied < data.len() {
            Status::VERR_BUFFER_OVERFLOW.raw()
        } else {
            Status::VINF_SUCCESS.raw()
        })
    }

    fn send_notification(&self, params: &Params) -> Result<i32, i32> {
        params.expect_count(2)?;
        let code = params.u32(0)?;
        let payload = params
            .buffer(1)?
            .copy_in(MAX_NOTIFY_BYTES)
            .map_err(|_| Status::VERR_INVALID_PARAMETER.raw())?;
        Ok(self.host.notify(code, &payload))
    }

    fn info(call: &mut Call) -> Result<i32, i32> {
        let (requestor, client, restored) = (call.requestor(), call.client(), call.is_restored());
        let params = call.params_mut();
        params.expect_count(3)?;
        params.set_u32(0, requestor.0)?;
        params.set_u32(1, client.0)?;
        params.set_u32(2, u32::from(restored))?;
        Ok(Status::VINF_SUCCESS.raw())
    }

    fn stats(&self, call: &mut Call) -> Result<i32, i32> {
        let for_client = self.per_client.get(&call.client()).copied().unwrap_or(0);
        let params = call.params_mut();
        params.expect_count(2)?;
        params.set_u64(0, self.served)?;
        params.set_u32(1, for_client)?;
        Ok(Status::VINF_SUCCESS.raw())
    }
}

fn status(result: Result<i32, i32>) -> i32 {
    result.unwrap_or_else(|status| status)
}

impl Service for Echo {
    const STATE_VERSION: u32 = STATE_VERSION;

    fn connect(
        &mut self,
        client: ClientId,
        _requestor: Requestor,
        _restoring: bool,
    ) -> Result<(), i32> {
        self.per_client.insert(client, 0);
        Ok(())
    }

    fn disconnect(&mut self, client: ClientId) {
        self.per_client.remove(&client);
        self.waiters.drop_client(client);
    }

    fn call(&mut self, mut call: Call) {
        self.served += 1;
        if let Some(count) = self.per_client.get_mut(&call.client()) {
            *count += 1;
        }
        let result = match call.function() {
            FN_ECHO => Self::echo(call.params_mut()),
            FN_WAIT => {
                let params = call.params();
                match (params.expect_count(2), params.u32(0), params.u32(1)) {
                    (Ok(()), Ok(timeout_ms), Ok(_)) => {
                        let timeout =
                            (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms.into()));
                        self.waiters.park(call, timeout);
                        return;
                    }
                    _ => Err(Status::VERR_INVALID_PARAMETER.raw()),
                }
            }
            FN_PANIC if self.allow_panic => panic!("FN_PANIC called with allow_panic set"),
            FN_PANIC => Err(Status::VERR_ACCESS_DENIED.raw()),
            FN_NOOP => Ok(Status::VINF_SUCCESS.raw()),
            FN_NOTIFY => self.send_notification(call.params()),
            FN_INFO => Self::info(&mut call),
            FN_STATS => self.stats(&mut call),
            _ => Err(Status::VERR_NOT_SUPPORTED.raw()),
        };
        call.complete(status(result));
    }

    fn cancelled(&mut self, _client: ClientId) {
        self.waiters.drop_cancelled();
    }

    fn host_call(&mut self, function: u32, params: &mut Params) -> i32 {
        let count = match function {
            HOST_FN_WAKE_ALL => self.waiters.wake_all(),
            HOST_FN_CLIENT_COUNT => self.per_client.len(),
            HOST_FN_WAITER_COUNT => self.waiters.count(),
            _ => return Status::VERR_NOT_SUPPORTED.raw(),
        };
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        match (function, params.is_empty()) {
            (HOST_FN_WAKE_ALL, true) => Status::VINF_SUCCESS.raw(),
            _ => status(
                params
                    .set_u32(0, count)
                    .map(|()| Status::VINF_SUCCESS.raw()),
            ),
        }
    }

    fn save_state(&mut self) -> Vec<u8> {
        self.served.to_le_bytes().to_vec()
    }

    fn load_state(&mut self, version: u32, data: &[u8]) -> Result<(), i32> {
        if version != STATE_VERSION {
            return Err(Status::VERR_NOT_SUPPORTED.raw());
        }
        let bytes: [u8; 8] = data
            .try_into()
            .map_err(|_| Status::VERR_INVALID_PARAMETER.raw())?;
        self.served = u64::from_le_bytes(bytes);
        Ok(())
    }

    fn save_client(&mut self, client: ClientId) -> Vec<u8> {
        self.per_client
            .get(&client)
            .copied()
            .unwrap_or(0)
            .to_le_bytes()
            .to_vec()
    }

    fn load_client(&mut self, client: ClientId, version: u32, data: &[u8]) -> Result<(), i32> {
        if version != STATE_VERSION {
            return Err(Status::VERR_NOT_SUPPORTED.raw());
        }
        let bytes: [u8; 4] = data
            .try_into()
            .map_err(|_| Status::VERR_INVALID_PARAMETER.raw())?;
        self.per_client.insert(client, u32::from_le_bytes(bytes));
        Ok(())
    }

    fn unload(&mut self) {
        self.waiters.wake_all();
    }
}

vmmdev_hgcm_sdk::service_entry!(pub fn echo_entry, Echo, "Echo", Echo::new);
