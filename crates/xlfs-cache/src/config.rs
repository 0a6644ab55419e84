//! The caches of one home: `HOME/cache.toml`.
//!
//! ```toml
//! trusted-keys = ["builders-1:BASE64…"]   # whose signatures are accepted
//! timeout = 5                             # seconds a cache may take to answer (default 5)
//!
//! [cache.team]
//! url = "s3://xlfs-artifacts/lfs"         # bucket and prefix
//! endpoint = "http://10.0.0.5:8333"       # S3-compatible endpoint (AWS when absent)
//! region = "us-east-1"
//! push = true                             # upload what `xlfs build` builds
//! ```
//!
//! No credentials are kept here: they come from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or the usual AWS files (see [`crate::creds`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sign::PublicKey;

/// The default bound on one answer of a cache.
pub const DEFAULT_TIMEOUT_SECS: u64 = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, rename = "cache")]
    pub caches: BTreeMap<String, CacheConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub push: bool,
    /// Seconds; overrides the home's `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// `s3://BUCKET[/PREFIX]`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Url {
    pub fn parse(url: &str) -> Result<S3Url, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{url}` is not an s3:// URL; write s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "`{bucket}` in `{url}` is not a bucket name (3 to 63 of a-z, 0-9, '-', '.')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|p| p == "." || p == ".." || (p.is_empty() && !prefix.is_empty()))
        {
            return Err(format!(
                "the prefix `{prefix}` in `{url}` has an empty, `.` or `..` part"
            ));
        }
        Ok(S3Url {
            bucket: bucket.into(),
            prefix: prefix.into(),
        })
    }
}

/// Cache names: 1 to 32 of `[a-z0-9-]`, starting with a letter or digit.
pub fn valid_cache_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl CacheConfig {
    pub fn timeout(&self, config: &Config) -> Duration {
        Duration::from_secs(
            self.timeout
                .or(config.timeout)
                .unwrap_or(DEFAULT_TIMEOUT_SECS)
                .max(1),
        )
    }
}

impl Config {
    /// Parses the text of `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (name, cache) in &c.caches {
            if !valid_cache_name(name) {
                return Err(format!(
                    "{}: [cache.{name}]: a cache name is 1 to 32 of a-z, 0-9 and '-'",
                    path.display()
                ));
            }
            S3Url::parse(&cache.url).map_err(|e| format!("{}: [cache.{name}] url: {e}", path.display()))?;
        }
        c.trusted()
            .map_err(|e| format!("{}: trusted-keys: {e}", path.display()))?;
        Ok(c)
    }

    /// The trusted public keys.
    pub fn trusted(&self) -> Result<Vec<PublicKey>, String> {
        self.trusted_keys
            .iter()
            .map(|k| PublicKey::parse(k).map_err(|e| e.to_string()))
            .collect()
    }

    /// `HOME/cache.toml`, or an empty configuration when there is none.
    pub fn load(home: &Path) -> Result<Config, String> {
        let path = config_path(home);
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes `HOME/cache.toml` atomically.
    pub fn save(&self, home: &Path) -> Result<(), String> {
        let path = config_path(home);
        let text = toml::to_string_pretty(self).map_err(|e| e.to_string())?;
        let text = format!("# xlfs shared caches (`xlfs cache`, `xlfs key`)\n{text}");
        crate::write_atomic(&path, text.as_bytes(), 0o644)
    }
}

pub fn config_path(home: &Path) -> PathBuf {
    home.join("cache.toml")
}

/// Where a home keeps its signing key (mode 0600).
pub fn secret_key_path(home: &Path) -> PathBuf {
    home.join("keys").join("signing.secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            S3Url::parse("s3://xlfs-cache/team/lfs/").unwrap(),
            S3Url {
                bucket: "xlfs-cache".into(),
                prefix: "team/lfs".into()
            }
        );
        assert_eq!(S3Url::parse("s3://abc").unwrap().prefix, "");
        for bad in [
            "http://x/y",
            "s3://A_B/x",
            "s3://ab",
            "s3://abc/x/../y",
            "s3://abc/x//y",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_round_trip_and_errors_name_the_field() {
        let mut c = Config::default();
        c.caches.insert(
            "team".into(),
            CacheConfig {
                url: "s3://bucket/p".into(),
                endpoint: Some("http://127.0.0.1:8333".into()),
                region: None,
                push: true,
                timeout: None,
            },
        );
        let text = toml::to_string_pretty(&c).unwrap();
        let back = Config::parse(&text, Path::new("cache.toml")).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.caches["team"].timeout(&back), Duration::from_secs(5));
        let e = Config::parse("[cache.team]\nurl = \"http://x\"\n", Path::new("h/cache.toml")).unwrap_err();
        assert!(e.contains("h/cache.toml: [cache.team] url:"), "{e}");
        let e = Config::parse("[cache.team]\nurl = \"s3://abc\"\npsuh = true\n", Path::new("c")).unwrap_err();
        assert!(e.contains("psuh"), "{e}");
        let e = Config::parse("trusted-keys = [\"k:AAAA\"]\n", Path::new("c")).unwrap_err();
        assert!(e.contains("trusted-keys"), "{e}");
    }
}
