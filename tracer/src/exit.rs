//! Exit codes of bad input (as opposed to failures, which exit 1), and the error that carries
//! one up to `main`.

/// `--strict` found lost events.
pub const LOST_EVENTS: i32 = 3;
/// `attach`: no process has that PID.
pub const NO_SUCH_PROCESS: i32 = 4;
/// `attach`: the process does not map the runtime library.
pub const NOT_TT_METAL: i32 = 5;
/// `attach`: the process exited before the probes were live.
pub const TARGET_GONE: i32 = 6;

/// An error that ends tracer with its own exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub fn fail(code: i32, message: String) -> anyhow::Error {
    Failure { code, message }.into()
}

/// Whether `e` is a [`Failure`] with exit code `code`.
pub fn is_code(e: &anyhow::Error, code: i32) -> bool {
    e.downcast_ref::<Failure>().is_some_and(|f| f.code == code)
}

pub fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "tracer needs root to load eBPF programs and attach uprobes; run it with sudo \
             (the traced command still runs as you)"
        );
    }
    Ok(())
}
