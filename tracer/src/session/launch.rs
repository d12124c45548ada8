//! Starting the traced command: forked, held at a gate until the probes are attached, then
//! exec'd (as the invoking user when started through sudo).
use std::{ffi::CString, os::fd::AsRawFd};

use anyhow::{bail, Context, Result};
use nix::{
    sys::wait::{waitpid, WaitStatus},
    unistd::{fork, pipe, ForkResult, Gid, Pid, Uid},
};

pub struct Gated {
    pub pid: u32,
    gate: Option<std::os::fd::OwnedFd>,
    exec_errors: std::os::fd::OwnedFd,
}

fn ids_from_sudo() -> Option<(Uid, Gid)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let uid = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    (uid != 0).then(|| (Uid::from_raw(uid), Gid::from_raw(gid)))
}

/// Hands a file tracer created to the user who ran `sudo tracer ...`, so a recording or summary
/// is theirs, not root's. Nothing to do without sudo.
pub fn give_to_invoker(path: &std::path::Path) {
    if let Some((uid, gid)) = ids_from_sudo() {
        if let Err(e) = nix::unistd::chown(path, Some(uid), Some(gid)) {
            eprintln!(
                "tracer: warning: cannot give {} to uid {uid}: {e}",
                path.display()
            );
        }
    }
}

/// Shell exit codes for a command that cannot be started.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
pub const EXIT_COMMAND_NOT_FOUND: i32 = 127;

/// Checks, as a shell would before running it, that `program` names an executable file;
/// fails with the shell's exit code (127 not found, 126 not executable) so the user hears
/// about their command before anything about runtime libraries.
pub fn check_command(program: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<std::path::PathBuf> = if program.contains('/') {
        vec![program.into()]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    let mut not_executable = None;
    for c in candidates {
        let Ok(meta) = std::fs::metadata(&c) else {
            continue;
        };
        if meta.is_dir() {
            not_executable.get_or_insert((c, "is a directory"));
        } else if meta.permissions().mode() & 0o111 == 0
            || nix::unistd::access(&c, nix::unistd::AccessFlags::X_OK).is_err()
        {
            not_executable.get_or_insert((c, "is not executable (no x permission)"));
        } else {
            return Ok(c);
        }
    }
    Err(match not_executable {
        Some((path, why)) => crate::exit::fail(
            EXIT_NOT_EXECUTABLE,
            format!("cannot run {program}: {} {why}", path.display()),
        ),
        None if program.contains('/') => crate::exit::fail(
            EXIT_COMMAND_NOT_FOUND,
            format!("command not found: {program} (no such file)"),
        ),
        None => crate::exit::fail(
            EXIT_COMMAND_NOT_FOUND,
            format!("command not found: {program} (not in any PATH directory)"),
        ),
    })
}

/// Forks `argv`; the child waits for [`Gated::release`] before exec. With `log`, the command
/// reads /dev/null and writes its stdout and stderr to `log`: `tracer top` draws its table on
/// the terminal and reads keys from it, so the command may neither print over the one nor
/// take the other.
pub fn spawn_gated(argv: &[String], log: Option<&std::fs::File>) -> Result<Gated> {
    let program = argv.first().context("no command given")?;
    check_command(program)?;
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).context("argument contains a NUL byte"))
        .collect::<Result<_>>()?;
    let redirect = match log {
        Some(log) => {
            let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
            Some((null, log))
        }
        None => None,
    };
    let (gate_r, gate_w) = pipe()?;
    let (err_r, err_w) = pipe2_cloexec()?;
    let ids = ids_from_sudo();
    // SAFETY: the child only calls async-signal-safe functions before exec.
    match unsafe { fork() }.context("fork failed")? {
        ForkResult::Child => {
            drop(gate_w);
            drop(err_r);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(gate_r.as_raw_fd(), &mut b);
            if b[0] != b'g' {
                unsafe { libc::_exit(126) };
            }
            // dup2 clears close-on-exec on the copies: the command keeps them, tracer's own
            // descriptors of the files still close at exec.
            if let Some((null, log)) = &redirect {
                for (from, to) in [
                    (null.as_raw_fd(), libc::STDIN_FILENO),
                    (log.as_raw_fd(), libc::STDOUT_FILENO),
                    (log.as_raw_fd(), libc::STDERR_FILENO),
                ] {
                    if nix::unistd::dup2(from, to).is_err() {
                        unsafe { libc::_exit(126) };
                    }
                }
            }
            if let Some((uid, gid)) = ids {
                let _ = nix::unistd::setgroups(&[gid]);
                if nix::unistd::setgid(gid).is_err() || nix::unistd::setuid(uid).is_err() {
                    unsafe { libc::_exit(126) };
                }
            }
            let e = nix::unistd::execvp(&cargs[0], &cargs).unwrap_err();
            let _ = nix::unistd::write(&err_w, &(e as i32).to_le_bytes());
            unsafe { libc::_exit(127) };
        }
        ForkResult::Parent { child } => {
            drop(gate_r);
            drop(err_w);
            Ok(Gated {
                pid: child.as_raw() as u32,
                gate: Some(gate_w),
                exec_errors: err_r,
            })
        }
    }
}

fn pipe2_cloexec() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

impl Gated {
    /// Lets the child exec; fails if exec failed.
    pub fn release(&mut self, program: &str) -> Result<()> {
        if let Some(gate) = self.gate.take() {
            nix::unistd::write(&gate, b"g")?;
        }
        let mut b = [0u8; 4];
        match nix::unistd::read(self.exec_errors.as_raw_fd(), &mut b) {
            Ok(4) => {
                let errno = nix::errno::Errno::from_raw(i32::from_le_bytes(b));
                let _ = waitpid(Pid::from_raw(self.pid as i32), None);
                bail!("cannot execute {program}: {errno}")
            }
            _ => Ok(()),
        }
    }

    /// Kills a child that never got released (setup failed after fork).
    pub fn abort(mut self) {
        self.gate.take();
        let _ = waitpid(Pid::from_raw(self.pid as i32), None);
    }
}

/// Blocks until `pid` exits; returns the shell-style exit code.
pub fn wait_exit(pid: u32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid as i32), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}
