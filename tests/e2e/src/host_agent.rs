//! The host agent: lets a guest step ask the host test to act while the guest runs.
//!
//! Some checks need the host in the middle of a step: the host sets a property the guest is waiting for,
//! adds a share the guest's automounter must pick up, reads what the guest put on the clipboard. The
//! agent is a thread of the host test that serves such requests over the device's own guest properties,
//! so it needs no extra channel into the guest and works the same with every backend:
//!
//! 1. The guest step runs `host_do VERB ARG...` (`tests/e2e/guest/lib.sh`), which sets the guest property
//!    [`REQUEST_PROPERTY`] to `TOKEN VERB ARG...` (TOKEN is fresh for every request).
//! 2. The agent sees the new token through the VMM's control endpoint (`--control PATH`), runs the handler
//!    registered for VERB and sets [`REPLY_PROPERTY`] to `TOKEN OK ANSWER` or `TOKEN ERR REASON`.
//! 3. `host_do` prints ANSWER and returns 0, or prints REASON and returns 1.
//!
//! Arguments are the request's words split on spaces, so an argument cannot contain a space; a handler
//! that takes free text joins its arguments. Answers and reasons are cut to one line of at most
//! [`MAX_REPLY_LEN`] bytes, below the guest properties service's default value limit.
//!
//! Requests are served one at a time, in the agent's thread: a handler that starts something long (a
//! host-side wait) starts it on a thread of its own and lets a later verb collect the result. The verb
//! `ping` is built in and answers `pong`.
//!
//! ```no_run
//! use vmmdev_e2e::host_agent::HostAgent;
//! # let (socket, dir) = (std::path::PathBuf::new(), std::path::PathBuf::new());
//! let agent = HostAgent::new()
//!     .on("set-prop", |ctx, args| {
//!         let [name, value] = args else { return Err("usage: set-prop NAME VALUE".into()) };
//!         ctx.control(serde_json::json!({"op": "guestproperty.set", "name": name, "value": value}))?;
//!         Ok(String::new())
//!     })
//!     .start(socket, dir);
//! // ... boot the guest with `--control <socket>` among the device's arguments ...
//! let served = agent.stop();
//! println!("{served}");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

/// The guest property a guest step sets to ask the host for something.
pub const REQUEST_PROPERTY: &str = "/E2E/Request";

/// The guest property the agent sets with its answer.
pub const REPLY_PROPERTY: &str = "/E2E/Reply";

/// The longest answer or reason the agent sends back, in bytes.
pub const MAX_REPLY_LEN: usize = 900;

/// The longest control socket path a `sockaddr_un` holds, without the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How long one control wait for a new request lasts before the agent checks whether it should stop.
const REQUEST_POLL: Duration = Duration::from_millis(500);

/// How long the agent sleeps while the control socket does not exist yet or cannot be reached.
const CONNECT_RETRY: Duration = Duration::from_millis(100);

/// The longest a single control request may take before the agent gives up on it.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a handler gets: the control endpoint and the run's directory. Cheap to clone, so a handler can
/// hand it to a thread of its own.
#[derive(Clone, Debug)]
pub struct HostContext {
    socket: PathBuf,
    run_dir: PathBuf,
}

impl HostContext {
    /// Sends one request to the control endpoint and returns its response when it has `"ok":true`.
    ///
    /// A failure (`"ok":false`, an unreachable socket, a malformed answer) is returned as one line of text,
    /// ready to be a handler's error.
    pub fn control(&self, request: Value) -> Result<Value, String> {
        let response = control_request(&self.socket, &request)?;
        if response.get("ok") == Some(&Value::Bool(true)) {
            Ok(response)
        } else {
            let error = response
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error text");
            Err(format!("control {}: {error}", request["op"]))
        }
    }

    /// The control socket, for handlers that run `vmmdev-ctl` against it.
    pub fn control_socket(&self) -> &Path {
        &self.socket
    }

    /// The test's run directory (shares, logs).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
}

/// A handler: the context and the request's arguments in, an answer or a reason out.
type Handler = Box<dyn Fn(&HostContext, &[&str]) -> Result<String, String> + Send + Sync>;

/// The verbs a test serves, before the agent starts.
#[derive(Default)]
pub struct HostAgent {
    handlers: HashMap<String, Handler>,
}

impl HostAgent {
    /// An agent that knows only `ping`.
    pub fn new() -> Self {
        Self::default().on("ping", |_, _| Ok("pong".to_owned()))
    }

    /// Serves `verb` with `handler`, replacing an earlier handler of the same verb.
    pub fn on(
        mut self,
        verb: &str,
        handler: impl Fn(&HostContext, &[&str]) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.handlers.insert(verb.to_owned(), Box::new(handler));
        self
    }

    /// Starts serving on the control endpoint at `control_socket` (which may appear later, when the VMM
    /// starts) until [`RunningAgent::stop`].
    pub fn start(self, control_socket: PathBuf, run_dir: PathBuf) -> RunningAgent {
        let stop = Arc::new(AtomicBool::new(false));
        let context = HostContext {
            socket: control_socket,
            run_dir,
        };
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve(&self.handlers, &context, &stop))
        };
        RunningAgent { stop, thread }
    }
}

impl fmt::Debug for HostAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut verbs: Vec<_> = self.handlers.keys().collect();
        verbs.sort();
        f.debug_struct("HostAgent").field("verbs", &verbs).finish()
    }
}

/// A serving agent.
#[derive(Debug)]
pub struct RunningAgent {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Served>,
}

impl RunningAgent {
    /// Stops serving (within about half a second) and returns what was served.
    pub fn stop(self) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| Served {
            requests: vec![ServedRequest {
                request: String::new(),
                outcome: Err("the agent's thread panicked".to_owned()),
            }],
        })
    }
}

/// One request the agent served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedRequest {
    /// The request without its token: `VERB ARG...`.
    pub request: String,
    /// The answer or the reason sent back.
    pub outcome: Result<String, String>,
}

/// Every request the agent served, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// The requests.
    pub requests: Vec<ServedRequest>,
}

impl Served {
    /// Whether a request starting with `verb` was served.
    pub fn saw(&self, verb: &str) -> bool {
        self.requests
            .iter()
            .any(|served| served.request.split(' ').next() == Some(verb))
    }
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "host agent served {} request(s)", self.requests.len())?;
        for served in &self.requests {
            match &served.outcome {
                Ok(answer) => writeln!(f, "  {} -> OK {answer}", served.request)?,
                Err(reason) => writeln!(f, "  {} -> ERR {reason}", served.request)?,
            }
        }
        Ok(())
    }
}

/// The control socket path for a run: in the run directory when it fits a `sockaddr_un`, else in the
/// temporary directory under a name unique to this process and run directory.
pub fn control_socket_path(dir: &Path) -> PathBuf {
    let preferred = dir.join("control.sock");
    if preferred.as_os_str().len() <= MAX_SOCKET_PATH {
        return preferred;
    }
    let tag = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("vmmdev-e2e-{}-{tag:.40}.ctl", std::process::id()))
}

/// A request as the guest wrote it: `TOKEN VERB ARG...`.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    token: &'a str,
    verb: &'a str,
    args: Vec<&'a str>,
}

impl<'a> Request<'a> {
    fn parse(value: &'a str) -> Option<Self> {
        let mut words = value.split(' ').filter(|word| !word.is_empty());
        let token = words.next()?;
        let verb = words.next()?;
        Some(Request {
            token,
            verb,
            args: words.collect(),
        })
    }

    /// `VERB ARG...`, as logged.
    fn text(&self) -> String {
        std::iter::once(self.verb)
            .chain(self.args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The reply property's value for `token` and `outcome`: one line, cut to [`MAX_REPLY_LEN`] bytes.
fn reply_value(token: &str, outcome: &Result<String, String>) -> String {
    let (kind, text) = match outcome {
        Ok(answer) => ("OK", answer),
        Err(reason) => ("ERR", reason),
    };
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX_REPLY_LEN {
        let mut cut = MAX_REPLY_LEN;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    format!("{token} {kind} {line}")
}

fn serve(handlers: &HashMap<String, Handler>, context: &HostContext, stop: &AtomicBool) -> Served {
    let mut served = Served::default();
    let mut last_token = String::new();
    while !stop.load(Ordering::Relaxed) {
        let current = match current_request(context) {
            Ok(value) => value,
            Err(error) => {
                log::trace!("host agent: {error}");
                std::thread::sleep(CONNECT_RETRY);
                continue;
            }
        };
        let Some(request) = current.as_deref().and_then(Request::parse) else {
            wait_for_request(context);
            continue;
        };
        if request.token == last_token {
            wait_for_request(context);
            continue;
        }
        last_token = request.token.to_owned();
        let outcome = match handlers.get(request.verb) {
            Some(handler) => handler(context, &request.args),
            None => Err(format!("the host agent has no verb '{}'", request.verb)),
        };
        log::info!("host agent: {} -> {outcome:?}", request.text());
        let reply = json!({
            "op": "guestproperty.set",
            "name": REPLY_PROPERTY,
            "value": reply_value(request.token, &outcome),
        });
        if let Err(error) = context.control(reply) {
            log::warn!("host agent: cannot answer '{}': {error}", request.text());
        }
        served.requests.push(ServedRequest {
            request: request.text(),
            outcome,
        });
    }
    served
}

/// The request property's value, `None` when it is not set.
fn current_request(context: &HostContext) -> Result<Option<String>, String> {
    let response = context.control(json!({"op": "guestproperty.get", "name": REQUEST_PROPERTY}))?;
    Ok(response
        .get("value")
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// Blocks until the request property changes or [`REQUEST_POLL`] passed.
fn wait_for_request(context: &HostContext) {
    let wait = json!({
        "op": "guestproperty.wait",
        "pattern": REQUEST_PROPERTY,
        "timeout_ms": REQUEST_POLL.as_millis() as u64,
    });
    if let Err(error) = context.control(wait) {
        log::trace!("host agent: {error}");
        std::thread::sleep(CONNECT_RETRY);
    }
}

/// One request on a fresh connection to the control endpoint.
fn control_request(socket: &Path, request: &Value) -> Result<Value, String> {
    let describe = |error: std::io::Error| format!("control socket {}: {error}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(describe)?;
    stream
        .set_read_timeout(Some(CONTROL_TIMEOUT))
        .map_err(describe)?;
    let mut line = request.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(describe)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(describe)?;
    serde_json::from_str(&answer).map_err(|error| {
        format!(
            "control socket {}: malformed answer {answer:?}: {error}",
            socket.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_splits_token_verb_and_arguments() {
        let request = Request::parse("1a2b set-prop /A  value").unwrap();
        assert_eq!(
            request,
            Request {
                token: "1a2b",
                verb: "set-prop",
                args: vec!["/A", "value"],
            }
        );
        assert_eq!(request.text(), "set-prop /A value");
    }

    #[test]
    fn request_without_verb_is_ignored() {
        assert_eq!(Request::parse("1a2b"), None);
        assert_eq!(Request::parse(""), None);
    }

    #[test]
    fn reply_is_one_line_with_token_and_kind() {
        assert_eq!(reply_value("t1", &Ok("a\nb".to_owned())), "t1 OK a b");
        assert_eq!(reply_value("t1", &Err("no".to_owned())), "t1 ERR no");
    }

    #[test]
    fn long_reply_is_cut_on_a_character_boundary() {
        let reply = reply_value("t", &Ok("é".repeat(MAX_REPLY_LEN)));
        assert!(reply.len() <= "t OK ".len() + MAX_REPLY_LEN);
        assert!(reply.ends_with('é'));
    }

    #[test]
    fn served_knows_which_verbs_it_saw() {
        let served = Served {
            requests: vec![ServedRequest {
                request: "set-prop /A v".to_owned(),
                outcome: Ok(String::new()),
            }],
        };
        assert!(served.saw("set-prop"));
        assert!(!served.saw("set"));
    }
}
