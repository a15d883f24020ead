//! Runs a script against one service through the real HGCM framework, and checks what must
//! hold whatever the guest sent.
//!
//! The checks every target shares, at the end of each input:
//! * every call the framework accepted and did not cancel completes exactly once, also the ones
//!   still waiting when their client disconnects (a lost completion hangs a guest thread
//!   forever);
//! * the service has not failed (the framework contains a panicking service by failing it;
//!   under libFuzzer the panic itself already aborts);
//! * the service still answers a guest that connects afterwards.

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};
use vmmdev_hgcm::{
    Buffer, CallOutcome, CallRequest, ClientId, Direction, Hgcm, HgcmConfig, HostCallError,
    LoadEntry, Parm, RequestId, Requestor,
};

use crate::script::{Op, ParmSpec};

/// How long the end-of-input checks wait for completions that must come. Far above any
/// legitimate completion time, so only a lost completion reaches it.
const DEADLINE: Duration = Duration::from_secs(10);

/// The Linux kernel driver (vboxsf's calls).
pub const KERNEL: Requestor = Requestor(0x2);
/// Root through /dev/vboxguest.
pub const ROOT: Requestor = Requestor(0x8B);
/// A user process through /dev/vboxuser (VBoxClient runs as the desktop user).
pub const USER_DEVICE: Requestor = Requestor(0x800E);

/// Set in the environment, prints each call's function and status when an input ends (to see
/// how far a seed or a reproducer gets).
pub const TRACE: &str = "VMMDEV_FUZZ_TRACE";

/// What a target adds to the shared driver.
pub struct Target {
    /// The service's HGCM name.
    pub service: &'static str,
    /// The requestor of each client: the kernel, root, or a user through /dev/vboxuser.
    pub requestors: [Requestor; crate::script::CLIENTS as usize],
    /// Frames a [`ParmSpec::Text`] as the service's strings are framed.
    pub frame_text: fn(&[u8]) -> Vec<u8>,
    /// Which host functions the script may call: the host is trusted, so a function that takes
    /// host paths stays out of a target whose checks depend on what is shared.
    pub host_functions: fn(u16) -> bool,
}

/// One input's run: the framework with the service registered, and the calls made so far.
pub struct Session {
    hgcm: Hgcm,
    target: Target,
    clients: Vec<Option<ClientId>>,
    /// Each accepted call's request and function, in submission order.
    submitted: Vec<(RequestId, u32)>,
    /// How many of them were cancelled (their completions never run).
    cancelled: usize,
    done_tx: Sender<(usize, CallOutcome)>,
    done_rx: Receiver<(usize, CallOutcome)>,
}

impl Session {
    /// Starts the framework with the service `entry` configured by `config`.
    pub fn start(entry: LoadEntry, config: &str, target: Target) -> Session {
        let hgcm = Hgcm::new(HgcmConfig::default());
        if let Err(error) = hgcm.register_builtin(entry, config) {
            panic!("the fuzz configuration must register: {error}");
        }
        let (done_tx, done_rx) = unbounded();
        let mut session = Session {
            hgcm,
            clients: vec![None; target.requestors.len()],
            target,
            submitted: Vec::new(),
            cancelled: 0,
            done_tx,
            done_rx,
        };
        for client in 0..session.clients.len() {
            session.clients[client] = session.connect(client);
        }
        session
    }

    /// Runs the whole script, then the shared checks. Returns every call's outcome for the
    /// target's own checks.
    pub fn run(mut self, script: &[Op]) -> Vec<CallOutcome> {
        for op in script {
            self.step(op);
        }
        self.finish()
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Call {
                client,
                function,
                params,
            } => self.call(usize::from(*client), u32::from(*function), params),
            Op::Cancel { call } => {
                if !self.submitted.is_empty() {
                    let (id, _) = self.submitted[usize::from(*call) % self.submitted.len()];
                    // On Ok the call's completion never runs; a call already completed (or
                    // cancelled) is NotFound.
                    if self.hgcm.cancel(id).is_ok() {
                        self.cancelled += 1;
                    }
                }
            }
            Op::Reconnect { client } => {
                let client = usize::from(*client);
                self.disconnect(client);
                self.clients[client] = self.connect(client);
            }
            Op::Host { function, params } => {
                if (self.target.host_functions)(*function) {
                    let mut params = self.params(params);
                    match self.hgcm.host_call(
                        self.target.service,
                        u32::from(*function),
                        &mut params,
                    ) {
                        Ok(_) | Err(HostCallError::Reentrant) => {}
                        Err(error) => panic!("host call refused by the framework: {error}"),
                    }
                }
            }
        }
    }

    fn call(&mut self, client: usize, function: u32, params: &[ParmSpec]) {
        let Some(id) = self.clients[client] else {
            return;
        };
        let done = self.done_tx.clone();
        let index = self.submitted.len();
        let accepted = self.hgcm.call(
            CallRequest {
                client: id,
                function,
                params: self.params(params),
                requestor: self.target.requestors[client],
                restored: false,
            },
            Box::new(move |outcome| {
                let _ = done.send((index, outcome));
            }),
        );
        // A refusal at submission (too many pending calls for the category) completes nothing.
        if let Ok(request) = accepted {
            self.submitted.push((request, function));
        }
    }

    fn params(&self, specs: &[ParmSpec]) -> Vec<Parm> {
        specs
            .iter()
            .map(|spec| match spec {
                ParmSpec::U32(value) => Parm::U32(*value),
                ParmSpec::U64(value) => Parm::U64(*value),
                ParmSpec::In(bytes) => buffer(bytes.clone(), Direction::ToHost),
                ParmSpec::Out(capacity) => {
                    buffer(vec![0; usize::from(*capacity)], Direction::FromHost)
                }
                ParmSpec::Both(bytes) => buffer(bytes.clone(), Direction::Both),
                ParmSpec::Text(bytes) => buffer((self.target.frame_text)(bytes), Direction::ToHost),
            })
            .collect()
    }

    fn connect(&self, client: usize) -> Option<ClientId> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.hgcm
            .connect(
                self.target.service,
                self.target.requestors[client],
                Box::new(move |outcome| {
                    let _ = tx.send(outcome);
                }),
            )
            .ok()?;
        match rx.recv_timeout(DEADLINE) {
            Ok(outcome) if outcome.status >= 0 => Some(outcome.client),
            Ok(_) => None,
            Err(_) => panic!("a connect to {} never completed", self.target.service),
        }
    }

    /// Waits until the service has taken every call submitted so far: a host call is queued
    /// behind them on the service's thread. (A disconnect fails the calls still queued, which is
    /// right for a guest but would hide the calls from the service.)
    fn settle(&self) {
        let _ = self.hgcm.host_call(self.target.service, u32::MAX, &mut []);
    }

    fn disconnect(&mut self, client: usize) {
        let Some(id) = self.clients[client].take() else {
            return;
        };
        self.settle();
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self
            .hgcm
            .disconnect(
                id,
                Box::new(move |outcome| {
                    let _ = tx.send(outcome);
                }),
            )
            .is_ok()
            && rx.recv_timeout(DEADLINE).is_err()
        {
            panic!("a disconnect from {} never completed", self.target.service);
        }
    }

    fn finish(mut self) -> Vec<CallOutcome> {
        for client in 0..self.clients.len() {
            self.disconnect(client);
        }
        let expected = self.submitted.len() - self.cancelled;
        let mut outcomes = Vec::with_capacity(expected);
        while outcomes.len() < expected {
            match self.done_rx.recv_timeout(DEADLINE) {
                Ok(done) => outcomes.push(done),
                Err(_) => panic!(
                    "{} of {expected} calls to {} never completed after their clients disconnected",
                    expected - outcomes.len(),
                    self.target.service
                ),
            }
        }
        if self.done_rx.try_recv().is_ok() {
            panic!("a call to {} completed twice", self.target.service);
        }
        if let Err(HostCallError::ServiceFailed(name)) =
            self.hgcm.host_call(self.target.service, u32::MAX, &mut [])
        {
            panic!("the service {name} failed (a panic contained by the framework)");
        }
        if self.connect(0).is_none() {
            panic!(
                "{} refuses a new client after the script",
                self.target.service
            );
        }
        self.hgcm.shutdown();
        outcomes.sort_by_key(|(index, _)| *index);
        if std::env::var_os(TRACE).is_some() {
            for (index, outcome) in &outcomes {
                let function = self.submitted[*index].1;
                eprintln!(
                    "call {index}: function {function} -> status {}",
                    outcome.status
                );
            }
        }
        outcomes.into_iter().map(|(_, outcome)| outcome).collect()
    }
}

fn buffer(bytes: Vec<u8>, direction: Direction) -> Parm {
    Parm::Buffer(Buffer::host(bytes, direction))
}

/// The bytes the service left in the buffer parameters of a completed call.
pub fn output_buffers(outcome: &CallOutcome) -> impl Iterator<Item = Vec<u8>> + '_ {
    outcome.params.iter().filter_map(|parm| {
        let buffer = parm.as_buffer()?;
        let mut bytes = vec![0; buffer.len()];
        let read = buffer.read_at(0, &mut bytes).ok()?;
        bytes.truncate(read);
        Some(bytes)
    })
}
