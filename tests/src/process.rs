//! A child process owned by a test: its output goes to a log file, it dies with the
//! test (on drop, on panic, and through `PR_SET_PDEATHSIG` if the test process itself
//! is killed), and a failing test prints the tail of its log.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use crate::Error;

/// How many bytes of a log a failing test prints.
const LOG_TAIL_BYTES: u64 = 6000;

/// A running child process and the file its stdout and stderr go to.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    command: Command,
}

impl ManagedProcess {
    /// Starts `command` as `name`, appending its output to `log`. The child leads its
    /// own process group, so signals reach the scripts it execs as well.
    pub fn spawn(name: impl Into<String>, mut command: Command, log: &Path) -> Result<Self, Error> {
        let name = name.into();
        let child = spawn_logged(&name, &mut command, log)?;
        Ok(Self {
            name,
            child: Some(child),
            log: log.to_owned(),
            command,
        })
    }

    /// The name the process was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file the process writes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Fails with the log's tail when the process has exited; used by readiness polls
    /// so a crashed component fails the test at once instead of after a timeout.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        match self.try_wait() {
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: self.log_tail(),
            }),
            None if self.child.is_none() => Err(Error::Exited {
                name: self.name.clone(),
                status: "stopped".into(),
                log: self.log.clone(),
                tail: self.log_tail(),
            }),
            None => Ok(()),
        }
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit, then SIGKILLs it.
    /// Returns the exit status and whether the process stopped within the grace period.
    pub fn terminate(&mut self, grace: Duration) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        signal_group(&child, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((status, true));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(&child, Signal::SIGKILL);
        child.wait().ok().map(|s| (s, false))
    }

    /// Sends SIGKILL to the process group and reaps the process.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal_group(&child, Signal::SIGKILL);
        child.wait().ok()
    }

    /// Starts the same command again (after `terminate` or `kill`), appending to the
    /// same log.
    pub fn restart(&mut self) -> Result<(), Error> {
        if self.is_running() {
            self.kill();
        }
        self.child = Some(spawn_logged(&self.name, &mut self.command, &self.log)?);
        Ok(())
    }

    /// The last few KiB of the log.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log, LOG_TAIL_BYTES)
    }

    /// The whole log.
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== {} log ({}), last {} bytes =====\n{}\n===== end of {} log =====",
                self.name,
                self.log.display(),
                LOG_TAIL_BYTES,
                self.log_tail(),
                self.name
            );
        }
        self.kill();
    }
}

fn spawn_logged(name: &str, command: &mut Command, log: &Path) -> Result<Child, Error> {
    let open = |append: bool| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .open(log)
    };
    let out = open(true).map_err(|source| Error::Io {
        what: format!("open log {}", log.display()),
        source,
    })?;
    let err = out.try_clone().map_err(|source| Error::Io {
        what: format!("open log {}", log.display()),
        source,
    })?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    die_with_parent(command);
    command.spawn().map_err(|source| Error::Spawn {
        name: name.to_owned(),
        program: command.get_program().to_string_lossy().into_owned(),
        source,
    })
}

/// Makes the child receive SIGKILL when the thread that spawned it exits, so a test
/// process killed by a timeout leaves no JVMs behind. Spawn from a thread that lives
/// as long as the child (a test's own thread or a runtime worker, not a blocking-pool
/// thread).
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

fn signal_group(child: &Child, signal: Signal) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    // The group may already be gone; that is the desired state.
    let _ = killpg(Pid::from_raw(pid), signal);
}

/// The last `max` bytes of a file, lossily decoded.
pub fn read_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
