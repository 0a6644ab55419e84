//! One GNU make jobserver for the whole run, shared by every build: with `-j N`, at most N jobs
//! run at once across all packages. xlfs holds the implicit job slot of the first running package;
//! each further package holds a token, and every `make` inside takes more tokens for its own jobs.

use std::process::Command;
use std::sync::OnceLock;

static CLIENT: OnceLock<jobserver::Client> = OnceLock::new();

/// Create the jobserver with `jobs` slots in total (the first one implicit).
pub fn init(jobs: usize) -> std::io::Result<&'static jobserver::Client> {
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let client = jobserver::Client::new(jobs.saturating_sub(1))?;
    Ok(CLIENT.get_or_init(|| client))
}

pub fn client() -> Option<&'static jobserver::Client> {
    CLIENT.get()
}

/// Let a child inherit the jobserver's file descriptors.
pub fn configure(cmd: &mut Command) {
    if let Some(c) = CLIENT.get() {
        c.configure_make(cmd);
    }
}

/// The `MAKEFLAGS` value that points a make at the jobserver.
pub fn makeflags() -> Option<String> {
    let c = CLIENT.get()?;
    let mut cmd = Command::new("true");
    c.configure_make(&mut cmd);
    cmd.get_envs()
        .find(|(k, _)| *k == "MAKEFLAGS")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().to_string()))
}

/// The second pool: job slots of other machines (icecream), beyond the `-j` local ones. A compile
/// job that takes one lends its local slot back to make while it runs remotely (see
/// [`crate::cctools`]).
static REMOTE: OnceLock<jobserver::Client> = OnceLock::new();

/// Create the remote pool with `slots` tokens (none: no pool).
pub fn init_remote(slots: usize) -> std::io::Result<()> {
    if slots == 0 || REMOTE.get().is_some() {
        return Ok(());
    }
    let client = jobserver::Client::new(slots)?;
    let _ = REMOTE.set(client);
    Ok(())
}

/// Let a child inherit the remote pool's file descriptors.
pub fn configure_remote(cmd: &mut Command) {
    if let Some(c) = REMOTE.get() {
        c.configure(cmd);
    }
}

/// The remote pool's descriptors, `READ,WRITE`, as a child sees them.
pub fn remote_fds() -> Option<String> {
    let c = REMOTE.get()?;
    let mut cmd = Command::new("true");
    c.configure_make(&mut cmd);
    let flags = cmd
        .get_envs()
        .find(|(k, _)| *k == "MAKEFLAGS")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().to_string()))?;
    flags
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--jobserver-auth="))
        .filter(|fds| fds.contains(',') && !fds.starts_with("fifo:"))
        .map(str::to_string)
}
