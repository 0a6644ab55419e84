//! A running QEMU with its serial console piped to us.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use regex::bytes::Regex;

use crate::machine::find_qemu;
use crate::text::tail_lines;
use crate::{BootError, ExpectReason, Machine};

/// How many console lines an error shows.
pub const TAIL_LINES: usize = 30;
/// How much of QEMU's own stderr is kept (its end).
const STDERR_KEEP: usize = 64 * 1024;
/// How often a pattern is searched for at most while output streams in.
const SCAN_INTERVAL: Duration = Duration::from_millis(20);
/// How long `kill` waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a killed QEMU to be reaped before leaving that to a
/// background thread.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// What the reader threads collected.
#[derive(Default)]
struct State {
    /// Every byte of serial output so far.
    out: Vec<u8>,
    /// The serial output pipe was closed (QEMU exited).
    out_eof: bool,
    /// The end of QEMU's stderr.
    err: Vec<u8>,
    /// Why writing the log failed, if it did.
    log_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A reader thread cannot panic while holding the lock in a way that
        // leaves the state inconsistent: keep going with what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The most bytes written to the console at once (see [`Console::send`]).
pub const SEND_CHUNK: usize = 32;
/// The pause between two chunks of one write.
pub const SEND_PAUSE: Duration = Duration::from_millis(30);

/// A running machine whose serial console is piped.
///
/// A reader thread appends every byte QEMU writes on the serial console to
/// the log file (raw, as it comes) and to an in-memory buffer; [`expect`]
/// searches that buffer after a read position it then advances. QEMU runs in
/// its own process group, which is killed when the `Console` is dropped.
///
/// [`expect`]: Console::expect
pub struct Console {
    child: Option<Child>,
    pid: u32,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
    pos: usize,
    started: Instant,
    log: PathBuf,
    status: Option<ExitStatus>,
    next_marker: u64,
}

/// A matcher: finds `(start, end)` of the first match in a byte slice.
type Finder<'a> = dyn FnMut(&[u8]) -> Option<(usize, usize)> + 'a;

impl Console {
    /// Starts QEMU for `m` with the serial console on pipes, logging it to
    /// `log` (created or truncated, parent directories created).
    pub fn spawn(m: &Machine, log: &Path) -> Result<Console, BootError> {
        let qemu = find_qemu(&m.qemu)?;
        m.validate()?;
        Self::spawn_command(&qemu, &m.args(), log)
    }

    /// Starts any program as if it were QEMU with `-serial stdio`: its stdout
    /// is the console, its stdin the keyboard. Used by [`Console::spawn`];
    /// handy for tests with a stand-in.
    pub fn spawn_command(program: &Path, args: &[String], log: &Path) -> Result<Console, BootError> {
        if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| BootError::io(format!("creating {}", dir.display()), e))?;
        }
        let log_file = File::create(log)
            .map_err(|e| BootError::io(format!("creating console log {}", log.display()), e))?;
        tracing::info!(
            program = %program.display(),
            args = ?args,
            log = %log.display(),
            "starting QEMU"
        );
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            // QEMU is in a process group of its own (a Ctrl-C meant for xlfs is not QEMU's), so
            // nothing else would end it with xlfs.
            xlfs_util::end_with_this_thread(&mut cmd, libc::SIGTERM);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| BootError::io(format!("starting {}", program.display()), e))?;
        let started = Instant::now();
        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let readers = vec![
            spawn_reader("xlfs-boot-serial", stdout, Some(log_file), shared.clone(), false),
            spawn_reader("xlfs-boot-stderr", stderr, None, shared.clone(), true),
        ];
        Ok(Console {
            pid: child.id(),
            stdin: child.stdin.take(),
            child: Some(child),
            shared,
            readers,
            pos: 0,
            started,
            log: log.to_path_buf(),
            status: None,
            next_marker: 1,
        })
    }

    /// QEMU's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The console log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything the console printed so far (lossily decoded, raw).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().out).into_owned()
    }

    /// The read position: how many bytes of output [`expect`](Self::expect)
    /// has consumed.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Skips everything printed so far, so the next `expect` only sees new
    /// output.
    pub fn skip_pending(&mut self) {
        self.pos = self.shared.lock().out.len();
    }

    /// The end of what QEMU printed on its own stderr (warnings, errors).
    pub fn qemu_stderr(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().err).into_owned()
    }

    /// The last `n` console lines, cleaned of escape sequences and `\r`.
    pub fn tail(&self, n: usize) -> String {
        tail_lines(&self.shared.lock().out, n)
    }

    /// Waits until `pattern` (a plain substring) appears in the output after
    /// the read position, and advances the position past it. Returns the
    /// text from the old position up to and including the match.
    ///
    /// Fails with [`BootError::Expect`] on timeout or when QEMU exits first.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String, BootError> {
        let needle = pattern.as_bytes();
        let mut find = |hay: &[u8]| find_bytes(hay, needle).map(|i| (i, i + needle.len()));
        let (text, _) = self.wait_match(&format!("{pattern:?}"), timeout, &mut find)?;
        Ok(lossy(&text))
    }

    /// Like [`expect`](Self::expect) with a regular expression (Rust `regex`
    /// syntax, matched against the raw bytes). Returns the text up to and
    /// including the match.
    pub fn expect_re(&mut self, re: &str, timeout: Duration) -> Result<String, BootError> {
        let (text, _) = self.expect_captures(re, timeout)?;
        Ok(text)
    }

    /// Like [`expect_re`](Self::expect_re), also returning the capture groups
    /// (group 0 is the whole match; a group that did not take part is `""`).
    pub fn expect_captures(
        &mut self,
        re: &str,
        timeout: Duration,
    ) -> Result<(String, Vec<String>), BootError> {
        let (text, _, caps) = self.expect_raw(re, timeout)?;
        Ok((lossy(&text), caps))
    }

    /// The regex behind `expect_re`/`expect_captures`/`run`: the raw text up
    /// to and including the match, where the match starts in it, and the
    /// capture groups.
    fn expect_raw(
        &mut self,
        re: &str,
        timeout: Duration,
    ) -> Result<(Vec<u8>, usize, Vec<String>), BootError> {
        let rx = Regex::new(re).map_err(|source| BootError::BadPattern {
            pattern: re.into(),
            source,
        })?;
        let mut find = |hay: &[u8]| rx.find(hay).map(|m| (m.start(), m.end()));
        let (text, start) = self.wait_match(&format!("/{re}/"), timeout, &mut find)?;
        let caps = rx
            .captures(&text[start..])
            .map(|c| {
                c.iter()
                    .map(|g| g.map_or_else(String::new, |g| lossy(g.as_bytes())))
                    .collect()
            })
            .unwrap_or_default();
        Ok((text, start, caps))
    }

    /// Waits for whichever of `patterns` (plain substrings) shows up first;
    /// returns its index and the text up to and including it.
    pub fn expect_any(&mut self, patterns: &[&str], timeout: Duration) -> Result<(usize, String), BootError> {
        let mut which = 0;
        let mut find = |hay: &[u8]| {
            let mut best: Option<(usize, usize, usize)> = None;
            for (i, p) in patterns.iter().enumerate() {
                if let Some(s) = find_bytes(hay, p.as_bytes()) {
                    if best.is_none_or(|(bs, _, _)| s < bs) {
                        best = Some((s, s + p.len(), i));
                    }
                }
            }
            best.map(|(s, e, i)| {
                which = i;
                (s, e)
            })
        };
        let what = patterns
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let (text, _) = self.wait_match(&what, timeout, &mut find)?;
        Ok((which, lossy(&text)))
    }

    /// The waiting loop behind every `expect`: returns the raw output from
    /// the old read position to the end of the match, and where the match
    /// starts in it.
    fn wait_match(
        &mut self,
        what: &str,
        timeout: Duration,
        find: &mut Finder<'_>,
    ) -> Result<(Vec<u8>, usize), BootError> {
        let begun = Instant::now();
        let deadline = begun + timeout;
        let shared = self.shared.clone();
        let mut st = shared.lock();
        let mut scanned_len = usize::MAX;
        let mut last_scan: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let fresh = st.out.len() != scanned_len;
            let due = last_scan.is_none_or(|t| now >= t + SCAN_INTERVAL);
            let finished = st.out_eof || now >= deadline;
            if fresh && (due || finished) {
                scanned_len = st.out.len();
                last_scan = Some(now);
                let from = self.pos.min(st.out.len());
                if let Some((s, e)) = find(&st.out[from..]) {
                    let text = st.out[from..from + e].to_vec();
                    self.pos = from + e;
                    return Ok((text, s));
                }
            }
            if finished {
                // Everything that arrived was scanned above, under the lock.
                let waited = begun.elapsed();
                let eof = st.out_eof;
                let tail = tail_lines(&st.out, TAIL_LINES);
                drop(st);
                let reason = if eof {
                    self.exit_reason()
                } else {
                    ExpectReason::TimedOut
                };
                tracing::debug!(%what, ?waited, %reason, "expect failed");
                return Err(BootError::Expect {
                    expected: what.to_string(),
                    waited,
                    reason,
                    tail,
                    log: self.log.clone(),
                    qemu_stderr: tail_lines(&self.shared.lock().err, 10),
                });
            }
            let wake = if fresh {
                // Output came in too soon after the last scan: wait out the
                // interval (or the deadline).
                last_scan.map_or(now, |t| t + SCAN_INTERVAL).min(deadline)
            } else {
                deadline
            };
            let dur = wake.saturating_duration_since(now);
            st = shared
                .cond
                .wait_timeout(st, dur)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Why the output ended, after reaping QEMU briefly.
    fn exit_reason(&mut self) -> ExpectReason {
        ExpectReason::Exited(self.try_status(Duration::from_millis(500)))
    }

    /// Polls for QEMU's exit status for up to `wait`.
    fn try_status(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if self.status.is_some() {
                return self.status;
            }
            let child = self.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(s)) => {
                    self.status = Some(s);
                    return Some(s);
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }

    /// QEMU's exit status if it has exited (does not wait).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.try_status(Duration::ZERO)
    }

    /// Sends raw bytes to the serial console.
    ///
    /// Text longer than [`SEND_CHUNK`] goes in chunks of that size with [`SEND_PAUSE`] between
    /// them: Xen keeps only 128 bytes of serial input for dom0 (`SERIAL_RX_SIZE`) and drops the
    /// rest when dom0, busy under TCG, does not read it in time.
    pub fn send(&mut self, text: &str) -> Result<(), BootError> {
        tracing::trace!(text, "send");
        let result = match self.stdin.as_mut() {
            Some(w) => {
                let mut r = Ok(());
                for (i, chunk) in text.as_bytes().chunks(SEND_CHUNK).enumerate() {
                    if i > 0 {
                        std::thread::sleep(SEND_PAUSE);
                    }
                    r = w.write_all(chunk).and_then(|()| w.flush());
                    if r.is_err() {
                        break;
                    }
                }
                r
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "console input is closed",
            )),
        };
        result.map_err(|source| {
            let exited = self.try_status(Duration::from_millis(200)).is_some();
            BootError::Send {
                exited,
                log: self.log.clone(),
                source,
            }
        })
    }

    /// Sends `line` followed by a newline.
    pub fn sendline(&mut self, line: &str) -> Result<(), BootError> {
        self.send(&format!("{line}\n"))
    }

    /// Runs a shell command on the console (a shell prompt must be there)
    /// and returns its exit code and output (`\r` removed).
    ///
    /// The command goes through `eval` between two markers printed with
    /// `printf`, so it may hold `;`, `&`, `#`, quotes or newlines, it runs in
    /// the console's shell (a `cd` stays in effect), and the echoed input
    /// line never matches the markers. Kernel messages printed on the console
    /// meanwhile end up in the output. Keep commands below ~3,000 bytes (the
    /// terminal's line buffer is 4,096).
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String), BootError> {
        let deadline = Instant::now() + timeout;
        let id = self.next_marker;
        self.next_marker += 1;
        let quoted = cmd.replace('\'', r"'\''");
        self.sendline(&format!(
            "printf '__XLFS_%s%s__\\n' B {id}; eval '{quoted}'; printf '__XLFS_%s%s=%d__\\n' E {id} \"$?\""
        ))?;
        self.expect(&format!("__XLFS_B{id}__"), timeout)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let (text, start, caps) = self.expect_raw(&format!(r"__XLFS_E{id}=(-?[0-9]+)__"), left)?;
        let rc = caps
            .get(1)
            .and_then(|c| c.parse::<i32>().ok())
            .ok_or_else(|| BootError::Command {
                cmd: cmd.into(),
                reason: format!("cannot read the exit code from {:?}", lossy(&text)),
            })?;
        // The output starts after the begin marker's line end.
        let out = lossy(&text[..start]).replace('\r', "");
        let out = out.strip_prefix('\n').unwrap_or(&out).to_string();
        tracing::debug!(cmd, rc, "ran on the console");
        Ok((rc, out))
    }

    /// Waits up to `timeout` for QEMU to exit by itself (e.g. after a
    /// poweroff). If it does not, kills it and fails with
    /// [`BootError::ExitTimeout`].
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, BootError> {
        let begun = Instant::now();
        if let Some(s) = self.try_status(timeout) {
            self.drain_output(Duration::from_secs(2));
            return Ok(s);
        }
        self.kill();
        Err(BootError::ExitTimeout {
            waited: begun.elapsed(),
            tail: self.tail(TAIL_LINES),
            log: self.log.clone(),
        })
    }

    /// Waits (boundedly) for the reader threads to see the end of the output,
    /// so the log and buffer are complete.
    fn drain_output(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let shared = self.shared.clone();
        let mut st = shared.lock();
        while !st.out_eof {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = shared
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(st);
        for r in self.readers.drain(..) {
            // The stderr reader may still be busy; never wait for it.
            if r.is_finished() {
                let _ = r.join();
            }
        }
        if let Some(e) = &self.shared.lock().log_error {
            tracing::warn!(log = %self.log.display(), "console log incomplete: {e}");
        }
    }

    /// Kills QEMU's process group: SIGTERM, then SIGKILL if it is still there
    /// after a grace period. Idempotent.
    pub fn kill(&mut self) {
        self.terminate(TERM_GRACE);
    }

    /// Kills QEMU, waiting `grace` between SIGTERM and SIGKILL (zero: SIGKILL
    /// at once). Never blocks for long: a process that does not die is left
    /// to a background thread to reap.
    pub(crate) fn terminate(&mut self, grace: Duration) {
        self.stdin = None;
        if self.try_status(Duration::ZERO).is_none() && self.child.is_some() {
            let pgid = self.pid as libc::pid_t;
            if !grace.is_zero() {
                signal_group(pgid, libc::SIGTERM);
            }
            if self.try_status(grace).is_none() {
                signal_group(pgid, libc::SIGKILL);
                if self.try_status(REAP_WAIT).is_none() {
                    if let Some(mut child) = self.child.take() {
                        tracing::warn!(pid = self.pid, "QEMU does not die; reaping it in the background");
                        std::thread::spawn(move || {
                            let _ = child.wait();
                        });
                    }
                    return;
                }
            }
            tracing::debug!(pid = self.pid, status = ?self.status, "QEMU killed");
        }
        self.drain_output(Duration::from_millis(500));
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; no
        // memory is involved.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

fn spawn_reader(
    name: &str,
    mut from: impl Read + Send + 'static,
    mut log: Option<File>,
    shared: Arc<Shared>,
    is_stderr: bool,
) -> JoinHandle<()> {
    let body = move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let chunk = &buf[..n];
            let mut log_err = None;
            if let Some(f) = log.as_mut() {
                if let Err(e) = f.write_all(chunk) {
                    log_err = Some(e.to_string());
                    log = None;
                }
            }
            let mut st = shared.lock();
            if is_stderr {
                st.err.extend_from_slice(chunk);
                if st.err.len() > STDERR_KEEP {
                    let cut = st.err.len() - STDERR_KEEP;
                    st.err.drain(..cut);
                }
            } else {
                st.out.extend_from_slice(chunk);
            }
            if log_err.is_some() {
                st.log_error = log_err;
            }
            drop(st);
            shared.cond.notify_all();
        }
        if let Some(f) = log.as_mut() {
            let _ = f.flush();
        }
        if !is_stderr {
            shared.lock().out_eof = true;
        }
        shared.cond.notify_all();
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .expect("spawning a console reader thread")
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Runs QEMU for `m` with the serial console (and QEMU's monitor, `Ctrl-A c`;
/// quit with `Ctrl-A x`) on this terminal, and returns when QEMU exits.
pub fn interactive(m: &Machine) -> Result<ExitStatus, BootError> {
    let qemu = find_qemu(&m.qemu)?;
    m.validate()?;
    let args = m.args_with_serial("mon:stdio");
    tracing::info!(qemu = %qemu.display(), args = ?args, "starting QEMU interactively");
    let mut cmd = Command::new(&qemu);
    xlfs_util::end_with_this_thread(&mut cmd, libc::SIGTERM);
    cmd.args(&args)
        .status()
        .map_err(|e| BootError::io(format!("running {}", qemu.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_bytes_works() {
        assert_eq!(find_bytes(b"hello world", b"world"), Some(6));
        assert_eq!(find_bytes(b"hello", b"xyz"), None);
        assert_eq!(find_bytes(b"ab", b"abc"), None);
        assert_eq!(find_bytes(b"ab", b""), Some(0));
    }
}
