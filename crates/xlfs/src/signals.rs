//! Ctrl-C, SIGTERM and SIGHUP. One thread of this process receives them (signal-hook); what they
//! do is set by the command that runs, for as long as a [`Scope`] lives (the build phase of
//! `build` and `up`, a `rebuild`'s scratch build). Outside a scope they do what they do by
//! default: end the process. So a Ctrl-C during `up`'s boot check ends it, instead of being
//! taken for a build's.

use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
pub use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

type Handler = Arc<dyn Fn(i32) + Send + Sync>;

/// The handler of the scope that lives, if one does.
static CURRENT: Mutex<Option<Handler>> = Mutex::new(None);
/// Set once the receiving thread runs.
static STARTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// While the returned scope lives, SIGINT, SIGTERM and SIGHUP call `handler` with the signal's
/// number (on a thread of their own, one signal at a time). Scopes do not nest: a new one replaces
/// the handler of the one before until it is dropped.
pub fn scope(handler: impl Fn(i32) + Send + Sync + 'static) -> Result<Scope> {
    STARTED
        .get_or_init(|| {
            let mut signals =
                signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("xlfs-signals".into())
                .spawn(move || {
                    for sig in signals.forever() {
                        let handler = CURRENT.lock().ok().and_then(|c| c.clone());
                        match handler {
                            Some(h) => h(sig),
                            // No scope: the signal's default action (the process ends).
                            None => {
                                let _ = signal_hook::low_level::emulate_default_handler(sig);
                            }
                        }
                    }
                })
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
        .context("cannot install the handler of Ctrl-C, SIGTERM and SIGHUP")?;
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(handler));
    Ok(Scope(()))
}

/// Ends the handling set by [`scope`] when dropped.
pub struct Scope(());

impl Drop for Scope {
    fn drop(&mut self) {
        *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `f` in a forked child and returns its wait status. (The test runner gives every
    /// test a process of its own: no other thread holds a lock across the fork.)
    fn in_child(f: impl FnOnce()) -> libc::c_int {
        // SAFETY: the child only runs `f`, then `_exit`s.
        match unsafe { libc::fork() } {
            0 => {
                f();
                unsafe { libc::_exit(0) }
            }
            pid => {
                assert!(pid > 0, "fork failed");
                let mut status = 0;
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                status
            }
        }
    }

    /// In a scope a Ctrl-C is the handler's, with its number; once the scope is dropped it ends
    /// the process again, as by default (`up`'s boot check after its build, say).
    #[test]
    fn a_scope_takes_the_signals_and_its_end_gives_the_default_back() {
        let status = in_child(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let tx = Mutex::new(tx);
            let scope = scope(move |sig| {
                let _ = tx.lock().map(|t| t.send(sig));
            })
            .unwrap();
            for sig in [SIGINT, SIGTERM, SIGINT] {
                unsafe { libc::raise(sig) };
                if rx.recv_timeout(Duration::from_secs(30)) != Ok(sig) {
                    unsafe { libc::_exit(3) }
                }
            }
            drop(scope);
            unsafe { libc::raise(SIGINT) };
            std::thread::sleep(Duration::from_secs(30));
            // Still alive: the signal was swallowed.
            unsafe { libc::_exit(4) }
        });
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == SIGINT,
            "the child ended with status {status:#x} (exit 3: the handler missed a signal; exit \
             4: a Ctrl-C after the scope was swallowed)"
        );
    }
}
