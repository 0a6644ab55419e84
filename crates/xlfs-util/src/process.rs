//! Child processes that do not outlive the thread that started them.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The process `cmd` starts gets `signal` when the thread that spawns it ends (prctl's
/// `PR_SET_PDEATHSIG`), so that a killed or interrupted xlfs leaves nothing running behind it:
/// SIGKILL for a sandboxed build, SIGTERM for QEMU (which then flushes its disks and quits).
/// If xlfs ended between the fork and the prctl, the child is already an orphan and nothing would
/// send the signal: it notices (its parent is no longer xlfs) and fails to start instead.
pub fn end_with_this_thread(cmd: &mut Command, signal: libc::c_int) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl(2) and getppid(2) are async-signal-safe, and the closure allocates only on
    // the error path, as std's own pre_exec errors do.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("xlfs ended while the child was starting"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    /// The child of a thread that ends gets the signal; a plain child would sleep on.
    #[test]
    fn the_child_ends_with_the_thread_that_started_it() {
        let spawn = |guarded: bool| {
            std::thread::spawn(move || {
                let mut cmd = Command::new("sleep");
                cmd.arg("30");
                if guarded {
                    end_with_this_thread(&mut cmd, libc::SIGKILL);
                }
                cmd.spawn().expect("spawn sleep")
            })
            .join()
            .expect("the spawning thread")
        };
        let mut guarded = spawn(true);
        let mut plain = spawn(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = guarded.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the child outlived the thread that started it"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(
            plain.try_wait().expect("try_wait").is_none(),
            "the unguarded child ended too"
        );
        plain.kill().expect("kill");
        plain.wait().expect("wait");
    }
}
