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

#[cfg(test)]
mod tests {
    use super::*;

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
