//! Child processes that leave nothing behind.
//!
//! A VM run starts QEMU (through a wrapper script that `exec`s it) and a device server; either may start
//! helpers of its own. Each child therefore gets its own process group, and ending it means `SIGKILL` to the
//! whole group. The child also asks the kernel to kill it when the thread that started it goes away
//! (`PR_SET_PDEATHSIG`), so even a test runner killed mid-run leaves no VM behind.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// How often [`GroupChild::wait_timeout`] looks at the child.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Errors of starting and waiting for a child.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {name}")]
    Spawn {
        /// What the child is (e.g. "qemu").
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Waiting for the child failed.
    #[error("cannot wait for {name}")]
    Wait {
        /// What the child is.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A child process leading its own process group; dropping it kills the group.
#[derive(Debug)]
pub struct GroupChild {
    name: String,
    child: Child,
    exit: Option<ExitStatus>,
}

impl GroupChild {
    /// Starts `command` as the leader of a new process group, named `name` in errors and logs.
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self, ProcessError> {
        command.process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
        // async-signal-safe, touches no memory of the parent and takes no locks.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| ProcessError::Spawn {
            name: name.to_owned(),
            source,
        })?;
        log::debug!("started {name} as process group {}", child.id());
        Ok(Self {
            name: name.to_owned(),
            child,
            exit: None,
        })
    }

    /// What the child is.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id, which is also its process group id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The pipe of the child's standard output, if it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The exit status if the child has ended, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(|source| ProcessError::Wait {
                name: self.name.clone(),
                source,
            })?;
        }
        Ok(self.exit)
    }

    /// Waits up to `timeout` for the child to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Kills every process of the group and reaps the leader; returns the leader's exit status.
    pub fn kill_group(&mut self) -> Result<ExitStatus, ProcessError> {
        self.signal_group();
        let status = self.child.wait().map_err(|source| ProcessError::Wait {
            name: self.name.clone(),
            source,
        })?;
        Ok(*self.exit.get_or_insert(status))
    }

    fn signal_group(&self) {
        let Ok(group) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) with a negative pid signals the process group we created; it has no memory
        // effects in this process.
        let result = unsafe { libc::kill(-group, libc::SIGKILL) };
        if result == -1 {
            let error = io::Error::last_os_error();
            // ESRCH: the group is already empty.
            if error.raw_os_error() != Some(libc::ESRCH) {
                log::warn!("cannot kill the process group of {}: {error}", self.name);
            }
        }
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        // Members of the group may outlive the leader, so the group is killed even after the leader ended.
        if let Err(error) = self.kill_group() {
            log::warn!("{error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn kill_group_also_ends_grandchildren() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "sleep 60 & echo $!; wait"])
            .stdout(Stdio::piped());
        let mut child = GroupChild::spawn("sh", &mut command).unwrap();
        let mut line = String::new();
        io::BufRead::read_line(
            &mut io::BufReader::new(child.take_stdout().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        assert!(std::path::Path::new(&format!("/proc/{grandchild}")).exists());

        child.kill_group().unwrap();

        // Killed, the grandchild is reparented and reaped (or left a zombie by a reaper that does not reap).
        let gone = || {
            let stat =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            stat.is_empty() || stat.split(' ').nth(2) == Some("Z")
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone() && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        assert!(
            gone(),
            "the grandchild {grandchild} survived the group kill"
        );
    }

    #[test]
    fn wait_timeout_returns_none_while_the_child_runs() {
        let mut child = GroupChild::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        assert_eq!(child.wait_timeout(Duration::from_millis(50)).unwrap(), None);
    }

    #[test]
    fn wait_timeout_returns_the_exit_status() {
        let mut child = GroupChild::spawn("sh", Command::new("sh").args(["-c", "exit 3"])).unwrap();
        let status = child
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(3));
    }

    #[test]
    fn missing_program_is_a_spawn_error_naming_the_child() {
        let error =
            GroupChild::spawn("vm", &mut Command::new("/nonexistent/vmmdev-e2e")).unwrap_err();
        assert!(matches!(&error, ProcessError::Spawn { name, .. } if name == "vm"));
    }

    #[test]
    fn child_runs_in_its_own_process_group() {
        let mut child = GroupChild::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: getpgid(2) only reads the process group of the given pid.
        let group = unsafe { libc::getpgid(pid) };
        assert_eq!(group, pid);
        child.kill_group().unwrap();
    }
}
