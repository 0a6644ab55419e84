//! Resumable HTTP downloads into a `.part` file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::cache::{self, BUF_SIZE};
use crate::fetcher::TryError;
use crate::FetchError;

/// How many requests one download may take while each makes progress.
const MAX_TRIES: u32 = 5;

/// How often, and how patiently, a request that failed for a reason that may pass is repeated
/// at the same place before the fetcher moves on to the next one.
///
/// Transient: connection refused or reset, timeouts and other I/O errors on the connection,
/// HTTP 5xx and 429, and a body that broke off before any byte arrived. Not transient: other
/// HTTP statuses (404, 403, ...), DNS failures, bad URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Repeats after the first request (0: no retries).
    pub retries: u32,
    /// The wait before the first repeat; each further wait doubles it.
    pub first_delay: Duration,
    /// The longest single wait.
    pub max_delay: Duration,
}

impl Default for Retries {
    /// 3 retries, after 0.5 s, 1 s and 2 s.
    fn default() -> Self {
        Retries {
            retries: 3,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl Retries {
    /// The wait before repeat number `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        self.first_delay
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max_delay)
    }
}

/// How one request ended, short of a complete body.
enum DlError {
    /// The place failed (HTTP error, unreachable host, ...): try the next one.
    Place(String),
    /// The place failed in a way that may pass (see [`Retries`]): try it again after a while.
    Transient(String),
    /// The body broke off after `received` new bytes; the `.part` keeps them.
    Interrupted { message: String, received: u64 },
    /// The `.part` file was removed; starting over from zero may help.
    Restart(String),
    /// Writing the `.part` file failed.
    Cache(FetchError),
}

/// Download `url` into `part`, resuming what `part` already holds, until its
/// sha256 is `sha256`. Returns the number of bytes received.
///
/// A broken-off transfer that made progress is resumed with a `Range`
/// request (up to [`MAX_TRIES`] requests). A resumed file that fails
/// verification is downloaded once more from zero, in case the partial
/// file was stale. On a mismatch the `.part` file is removed.
pub(crate) fn download(
    agent: &ureq::Agent,
    retries: &Retries,
    url: &str,
    part: &Path,
    sha256: &str,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<u64, TryError> {
    let mut downloaded = 0;
    let mut tries = 0;
    let mut restarted = false;
    let mut repeats = 0;
    loop {
        tries += 1;
        let offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let appended = match request(agent, url, part, offset, progress, &mut downloaded) {
            Ok(appended) => appended,
            Err(DlError::Interrupted { message, received }) => {
                if received > 0 && tries < MAX_TRIES {
                    tracing::info!("{url}: {message}; resuming");
                    continue;
                }
                if received == 0 && repeats < retries.retries {
                    repeats += 1;
                    back_off(retries, repeats, url, &message);
                    continue;
                }
                return Err(TryError::Place(message));
            }
            Err(DlError::Transient(message)) => {
                if repeats < retries.retries {
                    repeats += 1;
                    back_off(retries, repeats, url, &message);
                    continue;
                }
                return Err(TryError::Place(format!(
                    "{message} (tried {} times)",
                    repeats + 1
                )));
            }
            Err(DlError::Restart(message)) => {
                if !restarted {
                    restarted = true;
                    tracing::info!("{url}: {message}; starting over");
                    continue;
                }
                return Err(TryError::Place(message));
            }
            Err(DlError::Place(message)) => return Err(TryError::Place(message)),
            Err(DlError::Cache(e)) => return Err(TryError::Fatal(e)),
        };
        let actual = cache::sha256_file(part).map_err(|e| FetchError::io(part, e))?;
        if actual == sha256 {
            return Ok(downloaded);
        }
        cache::remove_if_exists(part).map_err(|e| FetchError::io(part, e))?;
        let message = format!("sha256 mismatch: expected {sha256}, got {actual}");
        if appended && !restarted {
            restarted = true;
            tracing::info!("{url}: resumed download: {message}; starting over");
            continue;
        }
        return Err(TryError::Place(message));
    }
}

fn back_off(retries: &Retries, n: u32, url: &str, message: &str) {
    let wait = retries.delay(n);
    tracing::info!(
        "{url}: {message}; trying again in {wait:?} ({n} of {})",
        retries.retries
    );
    std::thread::sleep(wait);
}

/// One GET request, appending to `part` from `offset` (when the server
/// honours the range) or rewriting it. Returns whether it appended to
/// earlier bytes, i.e. whether the result depends on the old `.part`.
fn request(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    offset: u64,
    progress: &dyn Fn(u64, Option<u64>),
    downloaded: &mut u64,
) -> Result<bool, DlError> {
    let cache_err = |e: io::Error| DlError::Cache(FetchError::io(part, e));
    // No transparent decompression: the bytes on disk must be the server's bytes.
    let mut req = agent.get(url).set("Accept-Encoding", "identity");
    if offset > 0 {
        req = req.set("Range", &format!("bytes={offset}-"));
    }
    let resp = match req.call() {
        Ok(resp) => resp,
        // Nothing left to send: the partial file may be complete already.
        Err(ureq::Error::Status(416, _)) if offset > 0 => return Ok(true),
        Err(ureq::Error::Status(code, resp)) => {
            let text = resp.status_text().trim();
            let message = if text.is_empty() {
                format!("HTTP {code}")
            } else {
                format!("HTTP {code} {text}")
            };
            return Err(if code >= 500 || code == 429 {
                DlError::Transient(message)
            } else {
                DlError::Place(message)
            });
        }
        Err(ureq::Error::Transport(t)) => {
            let message = describe_transport(&t);
            return Err(match t.kind() {
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io => DlError::Transient(message),
                _ => DlError::Place(message),
            });
        }
    };
    let length = resp
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (start, total) = match resp.status() {
        200 => (0, length),
        206 if offset > 0 => {
            let range = resp.header("Content-Range").unwrap_or("").to_string();
            match parse_content_range(&range) {
                Some((start, total)) if start == offset => (offset, total.or(length.map(|l| offset + l))),
                _ => {
                    cache::remove_if_exists(part).map_err(cache_err)?;
                    return Err(DlError::Restart(format!(
                        "bad Content-Range {range:?} for a request from byte {offset}"
                    )));
                }
            }
        }
        code => return Err(DlError::Place(format!("unexpected HTTP {code}"))),
    };

    let file = if start == 0 {
        File::create(part)
    } else {
        OpenOptions::new().append(true).open(part)
    }
    .map_err(cache_err)?;
    let mut out = BufWriter::with_capacity(BUF_SIZE, file);
    let mut body = resp.into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = start;
    let mut received = 0;
    progress(done, total);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.flush().map_err(cache_err)?;
                return Err(DlError::Interrupted {
                    message: format!("{e} (after {})", of_total(done, total)),
                    received,
                });
            }
        };
        out.write_all(&buf[..n]).map_err(cache_err)?;
        done += n as u64;
        received += n as u64;
        *downloaded += n as u64;
        progress(done, total);
    }
    out.flush().map_err(cache_err)?;
    if let Some(total) = total {
        if done < total {
            return Err(DlError::Interrupted {
                message: format!("connection closed after {}", of_total(done, Some(total))),
                received,
            });
        }
    }
    Ok(start > 0)
}

fn of_total(done: u64, total: Option<u64>) -> String {
    match total {
        Some(total) => format!("{done} of {total} bytes"),
        None => format!("{done} bytes"),
    }
}

/// Parse `bytes START-END/TOTAL` (TOTAL may be `*`) into `(START, TOTAL)`.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let total = total.trim().parse().ok();
    Some((start, total))
}

/// A transport error without the URL (the attempt already names the place).
fn describe_transport(t: &ureq::Transport) -> String {
    let mut msg = t.kind().to_string().to_lowercase();
    if let Some(m) = t.message() {
        msg.push_str(": ");
        msg.push_str(m);
    }
    if let Some(source) = std::error::Error::source(t) {
        let source = source.to_string();
        if !msg.contains(&source) {
            msg.push_str(": ");
            msg.push_str(&source);
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let r = Retries::default();
        let ms = |n| r.delay(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(40)],
            [500, 1000, 2000, 2000, 2000]
        );
    }

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range(""), None);
    }
}
