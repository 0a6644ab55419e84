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
    client_makeflags(CLIENT.get()?)
}

/// The `MAKEFLAGS` value that points a make at `c`.
fn client_makeflags(c: &jobserver::Client) -> Option<String> {
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

/// The local pool on descriptors of its own (duplicates of the jobserver's pipe, unknown to make),
/// for the compile jobs that lend their local slot: make marks the descriptors it knows
/// close-on-exec for the non-recursive recipe lines of a sub-make (kbuild's compile lines), so
/// the compile jobs there could not reach them.
static LOCAL_DUP: OnceLock<(i32, i32)> = OnceLock::new();

/// Make [`LOCAL_DUP`] (close-on-exec here; [`configure_local_dup`] opens them to a build).
pub fn init_local_dup() -> std::io::Result<()> {
    if LOCAL_DUP.get().is_some() {
        return Ok(());
    }
    let Some((r, w)) = makeflags().as_deref().and_then(auth_fds) else {
        return Ok(());
    };
    let dup = |fd: i32| -> std::io::Result<i32> {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor this process owns (the jobserver's pipe).
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) };
        if new < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(new)
        }
    };
    let _ = LOCAL_DUP.set((dup(r)?, dup(w)?));
    Ok(())
}

/// [`LOCAL_DUP`]'s descriptors, `READ,WRITE`.
pub fn local_dup_fds() -> Option<String> {
    LOCAL_DUP.get().map(|(r, w)| format!("{r},{w}"))
}

/// Let a child inherit [`LOCAL_DUP`].
pub fn configure_local_dup(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    if let Some(&(r, w)) = LOCAL_DUP.get() {
        // SAFETY: only fcntl, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in [r, w] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

/// The `R,W` descriptors of a `MAKEFLAGS` value's `--jobserver-auth=` (not a fifo).
fn auth_fds(flags: &str) -> Option<(i32, i32)> {
    let fds = flags
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--jobserver-auth="))?;
    let (r, w) = fds.split_once(',')?;
    Some((r.parse().ok()?, w.parse().ok()?))
}

/// Every descriptor [`configure`], [`configure_remote`] and [`configure_local_dup`] open to a
/// build: the sandbox closes all others ([`xlfs_sandbox::Spec::inherit_fds`]).
pub fn inherited_fds() -> Vec<i32> {
    let mut fds = Vec::new();
    for flags in [makeflags(), REMOTE.get().and_then(client_makeflags)]
        .into_iter()
        .flatten()
    {
        if let Some((r, w)) = auth_fds(&flags) {
            fds.extend([r, w]);
        }
    }
    if let Some(&(r, w)) = LOCAL_DUP.get() {
        fds.extend([r, w]);
    }
    fds
}

/// The remote pool's descriptors, `READ,WRITE`, as a child sees them.
pub fn remote_fds() -> Option<String> {
    let flags = client_makeflags(REMOTE.get()?)?;
    auth_fds(&flags).map(|(r, w)| format!("{r},{w}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn jobserver_descriptors_from_makeflags() {
        assert_eq!(
            super::auth_fds("-j --jobserver-fds=3,4 --jobserver-auth=3,4"),
            Some((3, 4))
        );
        assert_eq!(super::auth_fds(" --jobserver-auth=fifo:/tmp/GMfifo1"), None);
        assert_eq!(super::auth_fds("-j2"), None);
    }
}
