//! Signing keys and the signed description of an uploaded artifact (pure: no I/O).
//!
//! As in Nix's narinfo, what is signed is a short fingerprint of the artifact, not the artifact
//! itself: its key, the sha256 and size of its `.tar.zst` and the sha256 of its manifest. A
//! receiver checks the signature against its trusted public keys first, then the bytes it
//! downloads against the signed hashes.
//!
//! Keys are written as `NAME:BASE64`: the public key is 32 bytes, the secret key the 32-byte
//! seed followed by the public key (64 bytes, Nix's layout).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};

/// What is wrong with a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("malformed key `{0}`: expected NAME:BASE64 with a name of [A-Za-z0-9._-]")]
    Malformed(String),
    #[error("key `{name}`: {reason}")]
    Invalid { name: String, reason: String },
}

fn split_named(text: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let text = text.trim();
    let (name, b64) = text
        .split_once(':')
        .ok_or_else(|| KeyError::Malformed(shorten(text)))?;
    if !valid_key_name(name) {
        return Err(KeyError::Malformed(shorten(text)));
    }
    let bytes = B64.decode(b64).map_err(|e| KeyError::Invalid {
        name: name.into(),
        reason: format!("not base64: {e}"),
    })?;
    Ok((name, bytes))
}

/// A secret is never shown in full, even in an error.
fn shorten(text: &str) -> String {
    match text.split_once(':') {
        Some((name, _)) => format!("{name}:…"),
        None => "…".into(),
    }
}

/// Key names: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A named ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub name: String,
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// Parses `NAME:BASE64` (32 bytes).
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let (name, bytes) = split_named(text)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| KeyError::Invalid {
            name: name.into(),
            reason: format!("a public key is 32 bytes, this one {}", b.len()),
        })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::Invalid {
            name: name.into(),
            reason: e.to_string(),
        })?;
        Ok(PublicKey {
            name: name.into(),
            key,
        })
    }

    /// Whether `sig` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], sig: &Signature) -> bool {
        if sig.key != self.name {
            return false;
        }
        let Ok(bytes) = B64.decode(&sig.sig) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            return false;
        };
        self.key
            .verify(message, &ed25519_dalek::Signature::from_bytes(&bytes))
            .is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, B64.encode(self.key.as_bytes()))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A named ed25519 secret key. Its `Debug` shows the name and the public half only.
pub struct SecretKey {
    pub name: String,
    key: ed25519_dalek::SigningKey,
}

impl SecretKey {
    /// A key from 32 random bytes (the caller reads them from the operating system).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SecretKey, KeyError> {
        if !valid_key_name(name) {
            return Err(KeyError::Malformed(format!("{name}:…")));
        }
        Ok(SecretKey {
            name: name.into(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `NAME:BASE64` (64 bytes: seed, then public key, checked to match).
    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        let (name, bytes) = split_named(text)?;
        let invalid = |reason: &str| KeyError::Invalid {
            name: name.into(),
            reason: reason.into(),
        };
        if bytes.len() != 64 {
            return Err(invalid("a secret key is 64 bytes (seed and public key)"));
        }
        let seed: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != &bytes[32..] {
            return Err(invalid("its public half does not belong to its seed"));
        }
        Ok(SecretKey {
            name: name.into(),
            key,
        })
    }

    /// The secret key's text form, for its file (mode 0600). Never printed.
    pub fn to_secret_string(&self) -> String {
        let mut bytes = self.key.to_bytes().to_vec();
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}:{}", self.name, B64.encode(bytes))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature {
            key: self.name.clone(),
            sig: B64.encode(self.key.sign(message).to_bytes()),
        }
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({}, secret redacted)", self.public())
    }
}

/// One detached signature: the signing key's name and the base64 ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub key: String,
    pub sig: String,
}

/// The signed description of one artifact in a cache (the object `info/KEY.json`): where its
/// bytes are (`artifacts/SHA256.tar.zst`, `manifests/MANIFEST_SHA256.json`, both named by
/// content) and the signatures over its [`fingerprint`](Info::fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Info {
    /// Format version: 1.
    pub version: u32,
    /// The package key.
    pub key: String,
    /// sha256 (lowercase hex) and size of the `.tar.zst`.
    pub sha256: String,
    pub size: u64,
    /// sha256 of the manifest object's bytes.
    pub manifest_sha256: String,
    /// The package's name and version, for people reading the cache (not signed: they do not
    /// decide anything).
    #[serde(default)]
    pub package: String,
    #[serde(default)]
    pub signatures: Vec<Signature>,
}

impl Info {
    pub fn new(key: &str, sha256: &str, size: u64, manifest_sha256: &str, package: &str) -> Info {
        Info {
            version: 1,
            key: key.into(),
            sha256: sha256.into(),
            size,
            manifest_sha256: manifest_sha256.into(),
            package: package.into(),
            signatures: Vec::new(),
        }
    }

    /// What is signed: every field that decides what gets installed.
    pub fn fingerprint(&self) -> Vec<u8> {
        format!(
            "xlfs-artifact-v1;{};{};{};{}",
            self.key, self.sha256, self.size, self.manifest_sha256
        )
        .into_bytes()
    }

    pub fn sign(&mut self, key: &SecretKey) {
        let sig = key.sign(&self.fingerprint());
        self.signatures.retain(|s| s.key != sig.key);
        self.signatures.push(sig);
    }

    /// The trusted key whose signature verifies, or why none does.
    pub fn check_signature<'a>(&self, trusted: &'a [PublicKey]) -> Result<&'a PublicKey, String> {
        if self.signatures.is_empty() {
            return Err("it carries no signature".into());
        }
        let msg = self.fingerprint();
        for k in trusted {
            if self.signatures.iter().any(|s| k.verifies(&msg, s)) {
                return Ok(k);
            }
        }
        let names: Vec<&str> = self.signatures.iter().map(|s| s.key.as_str()).collect();
        if self
            .signatures
            .iter()
            .any(|s| trusted.iter().any(|k| k.name == s.key))
        {
            Err(format!(
                "its signature by {} does not verify (the signed fields were changed)",
                names.join(", ")
            ))
        } else {
            Err(format!(
                "it is signed by {}, which is not a trusted key (trusted: {})",
                names.join(", "),
                if trusted.is_empty() {
                    "none; add one with `xlfs key trust NAME:KEY`".to_string()
                } else {
                    trusted
                        .iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, b: u8) -> SecretKey {
        SecretKey::from_seed(name, [b; 32]).unwrap()
    }

    #[test]
    fn keys_round_trip_and_debug_hides_the_secret() {
        let k = key("a-1", 7);
        let text = k.to_secret_string();
        let back = SecretKey::parse(&text).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(PublicKey::parse(&k.public().to_string()).unwrap(), k.public());
        let secret_b64 = text.split_once(':').unwrap().1;
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(secret_b64), "{dbg}");
        assert!(!dbg.contains(&B64.encode([7u8; 32])), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        let k = key("a", 1);
        let text = k.to_secret_string();
        // The public half does not match the seed.
        let mut bytes = B64.decode(text.split_once(':').unwrap().1).unwrap();
        bytes[40] ^= 1;
        let bad = format!("a:{}", B64.encode(&bytes));
        let e = SecretKey::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("public half"), "{e}");
        assert!(!e.contains(&B64.encode(&bytes)));
        assert!(PublicKey::parse("no-colon").is_err());
        assert!(PublicKey::parse("bad name:AAAA").is_err());
        assert!(PublicKey::parse("a:AAAA")
            .unwrap_err()
            .to_string()
            .contains("32 bytes"));
    }

    #[test]
    fn signatures_verify_only_for_trusted_keys_and_unchanged_fields() {
        let (a, b) = (key("a", 1), key("b", 2));
        let mut info = Info::new("k", &"1".repeat(64), 10, &"2".repeat(64), "zlib 1.3.1");
        assert!(info
            .check_signature(&[a.public()])
            .unwrap_err()
            .contains("no signature"));
        info.sign(&a);
        assert_eq!(info.check_signature(&[b.public(), a.public()]).unwrap().name, "a");
        let e = info.check_signature(&[b.public()]).unwrap_err();
        assert!(e.contains("signed by a, which is not a trusted key"), "{e}");
        // The package label is not signed; every deciding field is.
        let mut relabelled = info.clone();
        relabelled.package = "other".into();
        assert!(relabelled.check_signature(&[a.public()]).is_ok());
        for change in [
            |i: &mut Info| i.sha256 = "3".repeat(64),
            |i: &mut Info| i.size = 11,
            |i: &mut Info| i.manifest_sha256 = "4".repeat(64),
            |i: &mut Info| i.key = "other".into(),
        ] {
            let mut t = info.clone();
            change(&mut t);
            let e = t.check_signature(&[a.public()]).unwrap_err();
            assert!(e.contains("does not verify"), "{e}");
        }
        // A signature claiming a trusted name but made with another key.
        let mut forged = info.clone();
        forged.signatures = vec![key("a", 9).sign(&info.fingerprint())];
        assert!(forged.check_signature(&[a.public()]).is_err());
    }
}
