//! The crate's error type.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// How to install QEMU, for error messages.
pub const QEMU_INSTALL_HINT: &str = "install it with `apt-get update && apt-get install -y \
--no-install-recommends -t bookworm-backports qemu-system-x86` (Debian 12 with backports; \
plain `apt-get install qemu-system-x86` elsewhere), or point XLFS_QEMU at a qemu-system-x86_64 binary";

/// Everything that can go wrong while booting and checking a machine.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The QEMU binary is not installed (or not where it was said to be).
    #[error("QEMU not found: `{}` is not installed; {QEMU_INSTALL_HINT}", qemu.display())]
    QemuNotFound {
        /// The binary that was looked for.
        qemu: PathBuf,
    },

    /// The machine description cannot be run (a missing kernel, a module
    /// path QEMU cannot express, ...).
    #[error("invalid machine: {0}")]
    InvalidMachine(String),

    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. "creating console log /x/y.log".
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A regular expression given to `expect_re` does not compile.
    #[error("invalid pattern {pattern:?}: {source}")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it does not compile.
        #[source]
        source: regex::Error,
    },

    /// Writing to the serial console failed, normally because QEMU exited.
    #[error(
        "cannot write to the serial console ({source}){}; console log: {}",
        if *.exited { ": QEMU has exited" } else { "" },
        log.display()
    )]
    Send {
        /// Whether QEMU had exited.
        exited: bool,
        /// The console log.
        log: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An expected pattern did not show up on the console in time, or QEMU
    /// exited first.
    #[error("{}", expect_message(.expected, .waited, .reason, .tail, .log, .qemu_stderr))]
    Expect {
        /// What was expected (the pattern; regexes are shown as `/re/`).
        expected: String,
        /// How long it was waited for.
        waited: Duration,
        /// Why the wait ended.
        reason: ExpectReason,
        /// The last console lines (escape sequences and `\r` stripped).
        tail: String,
        /// The console log, holding the raw bytes.
        log: PathBuf,
        /// The end of what QEMU itself printed on stderr (empty if nothing).
        qemu_stderr: String,
    },

    /// QEMU did not exit within the time given to `wait_exit`; it was killed.
    #[error(
        "QEMU did not exit within {:.1}s and was killed\n--- last console lines ---\n{tail}\n--- end (console log: {}) ---",
        waited.as_secs_f64(),
        log.display()
    )]
    ExitTimeout {
        /// How long it was waited for.
        waited: Duration,
        /// The last console lines.
        tail: String,
        /// The console log.
        log: PathBuf,
    },

    /// A command run on the console with `run` gave output that could not be
    /// understood.
    #[error("command {cmd:?}: {reason}")]
    Command {
        /// The command.
        cmd: String,
        /// What went wrong.
        reason: String,
    },
}

/// Why an `expect` gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectReason {
    /// The time was up.
    TimedOut,
    /// QEMU exited (with this status, if it could be had) or closed its
    /// serial output.
    Exited(Option<ExitStatus>),
}

impl fmt::Display for ExpectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectReason::TimedOut => f.write_str("timed out"),
            ExpectReason::Exited(Some(s)) => write!(f, "QEMU exited ({s})"),
            ExpectReason::Exited(None) => f.write_str("QEMU closed the serial console"),
        }
    }
}

fn expect_message(
    expected: &str,
    waited: &Duration,
    reason: &ExpectReason,
    tail: &str,
    log: &std::path::Path,
    qemu_stderr: &str,
) -> String {
    let mut s = format!(
        "{reason} after {:.1}s waiting for {expected} on the serial console\n--- last console lines ---\n",
        waited.as_secs_f64()
    );
    if tail.is_empty() {
        s.push_str("(no console output)\n");
    } else {
        s.push_str(tail);
        s.push('\n');
    }
    s.push_str(&format!("--- end (console log: {}) ---", log.display()));
    if !qemu_stderr.is_empty() {
        s.push_str("\nQEMU said:\n");
        s.push_str(qemu_stderr);
    }
    s
}

impl BootError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BootError::Io {
            what: what.into(),
            source,
        }
    }
}
