//! S3 credentials: from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), else from the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`,
//! default `~/.aws/credentials`), profile `AWS_PROFILE` (default `default`). Never printed: the
//! `Debug` form shows the access key id only.

use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Where they came from (for messages): `environment` or the file's path.
    pub from: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("from", &self.from)
            .finish()
    }
}

/// Credentials from `env` (a lookup, normally `std::env::var`), else from the credentials file.
pub fn find(env: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, String> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: get("AWS_SESSION_TOKEN"),
            from: "environment".into(),
        });
    }
    let file = get("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| get("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    let profile = get("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let none = || {
        format!(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them to \
             profile [{profile}] of {}",
            file.as_deref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "~/.aws/credentials".into())
        )
    };
    let Some(path) = file.clone() else {
        return Err(none());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(none()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    parse_file(&text, &profile, &path).ok_or_else(none)
}

/// The profile's keys in an AWS credentials file (INI: `[profile]`, `key = value`).
pub fn parse_file(text: &str, profile: &str, path: &Path) -> Option<Credentials> {
    let mut section = String::new();
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
        from: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn environment_first_then_file_and_never_the_secret_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = FILEID\naws_secret_access_key = filesecret123\n\
             [ci]\naws_access_key_id=CIID\naws_secret_access_key=cisecret456\naws_session_token=tok789\n",
        )
        .unwrap();
        let mut env: HashMap<&str, String> = HashMap::new();
        env.insert("AWS_SHARED_CREDENTIALS_FILE", file.display().to_string());
        let c = find(&|k| env.get(k).cloned()).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("FILEID", "filesecret123")
        );
        env.insert("AWS_PROFILE", "ci".into());
        let c = find(&|k| env.get(k).cloned()).unwrap();
        assert_eq!(c.session_token.as_deref(), Some("tok789"));
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("CIID") && !dbg.contains("cisecret456") && !dbg.contains("tok789"),
            "{dbg}"
        );
        env.insert("AWS_ACCESS_KEY_ID", "ENVID".into());
        env.insert("AWS_SECRET_ACCESS_KEY", "envsecret".into());
        let c = find(&|k| env.get(k).cloned()).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.from.as_str()),
            ("ENVID", "environment")
        );
        env.clear();
        env.insert(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("none").display().to_string(),
        );
        let e = find(&|k| env.get(k).cloned()).unwrap_err();
        assert!(e.contains("AWS_ACCESS_KEY_ID") && e.contains("[default]"), "{e}");
    }
}
