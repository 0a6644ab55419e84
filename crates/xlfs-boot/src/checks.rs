//! Scripted checks: named steps that send a command and expect an answer.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize, Serializer};

use crate::Console;

/// One scripted step: optionally send a line, then expect a substring on the
/// console within a timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What this step checks, e.g. `"dom0 shell"`.
    pub name: String,
    /// A line to send first (a newline is added), if any.
    #[serde(default)]
    pub send: Option<String>,
    /// The substring to wait for.
    pub expect: String,
    /// How long to wait for it, in seconds (default 60).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

fn default_timeout_s() -> u64 {
    60
}

impl Check {
    /// A check that only waits for `expect`.
    pub fn wait(name: &str, expect: &str, timeout_s: u64) -> Check {
        Check {
            name: name.into(),
            send: None,
            expect: expect.into(),
            timeout_s,
        }
    }

    /// A check that sends `send`, then waits for `expect`.
    pub fn send(name: &str, send: &str, expect: &str, timeout_s: u64) -> Check {
        Check {
            send: Some(send.into()),
            ..Check::wait(name, expect, timeout_s)
        }
    }
}

/// How a [`Check`] went. Durations serialize as seconds (a float).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Whether the pattern showed up in time.
    pub ok: bool,
    /// Time since QEMU started when the check ended (matched or failed):
    /// e.g. "time to dom0 shell".
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    /// How long this check took.
    #[serde(serialize_with = "secs")]
    pub took: Duration,
    /// Why it failed.
    pub error: Option<String>,
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Runs `checks` in order on the console, stopping at the first failure (its
/// result is the last one returned).
pub fn run_checks(c: &mut Console, checks: &[Check]) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(checks.len());
    for check in checks {
        let begun = Instant::now();
        let outcome = check
            .send
            .as_deref()
            .map_or(Ok(()), |line| c.sendline(line))
            .and_then(|()| c.expect(&check.expect, Duration::from_secs(check.timeout_s)));
        let result = CheckResult {
            name: check.name.clone(),
            ok: outcome.is_ok(),
            at: c.elapsed(),
            took: begun.elapsed(),
            error: outcome.err().map(|e| e.to_string()),
        };
        match &result.error {
            None => tracing::info!(check = %result.name, at = ?result.at, "check passed"),
            Some(e) => tracing::warn!(check = %result.name, "check failed: {e}"),
        }
        let failed = !result.ok;
        results.push(result);
        if failed {
            break;
        }
    }
    results
}

/// Runs a check on the build machine instead of the console: `send` is a shell command
/// (`sh -c`), and its output (stdout and stderr) must contain `expect`. It is tried again every
/// two seconds until it does or `timeout_s` has passed (a service may still be starting).
/// Returns the result and the last attempt's exit status and output.
pub fn run_on_build_machine(check: &Check) -> (CheckResult, String) {
    let begun = Instant::now();
    let deadline = begun + Duration::from_secs(check.timeout_s);
    let cmd = check.send.clone().unwrap_or_default();
    loop {
        let (status, out) = run_until(&cmd, deadline);
        let ok = status == Some(0) && out.contains(&check.expect);
        let last = match status {
            Some(c) => format!("$ {cmd}\n(exit {c})\n{out}"),
            None => format!("$ {cmd}\n(no exit status: killed at the check's timeout)\n{out}"),
        };
        if ok || Instant::now() + Duration::from_secs(2) >= deadline {
            let result = CheckResult {
                name: check.name.clone(),
                ok,
                at: begun.elapsed(),
                took: begun.elapsed(),
                error: (!ok).then(|| {
                    format!(
                        "expected exit 0 and output containing {:?} within {}s",
                        check.expect, check.timeout_s
                    )
                }),
            };
            return (result, last);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Run `sh -c cmd`, killing it at `deadline`: (exit code, stdout + stderr).
fn run_until(cmd: &str, deadline: Instant) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    let dir = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => return (None, format!("cannot make a temporary file: {e}")),
    };
    let out_path = dir.join("out");
    let Ok(out) = std::fs::File::create(&out_path) else {
        return (None, "cannot create the output file".into());
    };
    let Ok(err) = out.try_clone() else {
        return (None, "cannot duplicate the output file".into());
    };
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (None, format!("cannot run sh: {e}")),
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = String::from_utf8_lossy(&std::fs::read(&out_path).unwrap_or_default()).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    (status, text)
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "xlfs-check-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_machine_checks_pass_and_fail_with_the_output() {
        let (r, out) = run_on_build_machine(&Check::send("echo", "echo hello world", "hello", 5));
        assert!(r.ok, "{r:?} {out}");
        let (r, out) = run_on_build_machine(&Check::send("wrong", "echo hi; exit 3", "hello", 1));
        assert!(!r.ok);
        assert!(r.error.unwrap().contains("\"hello\""));
        assert!(out.contains("(exit 3)") && out.contains("hi"), "{out}");
        // A command that hangs is killed at the timeout.
        let t = Instant::now();
        let (r, out) = run_on_build_machine(&Check::send("hang", "sleep 30", "x", 1));
        assert!(!r.ok && t.elapsed() < Duration::from_secs(10), "{out}");
        assert!(out.contains("killed"), "{out}");
    }

    #[test]
    fn check_deserializes_with_defaults() {
        let c: Check = serde_json::from_str(r#"{"name":"login","expect":"login:"}"#).unwrap();
        assert_eq!(c, Check::wait("login", "login:", 60));
        let r = CheckResult {
            name: "x".into(),
            ok: true,
            at: Duration::from_millis(12345),
            took: Duration::from_millis(500),
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"name":"x","ok":true,"at":12.345,"took":0.5,"error":null}"#
        );
    }
}
