//! Warden's Ed25519 signing keys: kept on disk, rotated, and published as a JWKS.
//!
//! Each key lives in its own file `<created_unix>-<kid>.pem` (an unencrypted PKCS#8 private key, mode
//! 0600) in a directory of mode 0700. Files are written atomically, so a crash never leaves a half key
//! behind. The newest key signs; an older key stays published until every token it can have signed has
//! expired. Keys are never deleted here.
//!
//! A key id (`kid`) is the first 8 bytes of the SHA-256 of the public key, in hex: the same key always
//! has the same id, and the file name can be checked against its content.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::secret::{self, RandomError};

#[cfg(test)]
mod tests;

/// How long after its successor's creation, beyond the longest token lifetime, an old key stays
/// published: covers clock skew and a token minted just before rotation.
const PUBLISH_MARGIN_SECS: i64 = 60;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// A signing key's id, as it appears in token headers and the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kid(String);

impl Kid {
    fn of(key: &VerifyingKey) -> Kid {
        let digest = Sha256::digest(key.as_bytes());
        Kid(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One of Warden's Ed25519 signing keys.
pub struct SigningKey {
    kid: Kid,
    created_unix: i64,
    key: ed25519_dalek::SigningKey,
    /// The base64url JWS header every token signed with this key carries.
    header_b64: String,
}

impl SigningKey {
    fn new(key: ed25519_dalek::SigningKey, created_unix: i64) -> SigningKey {
        let kid = Kid::of(&key.verifying_key());
        let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid.as_str() });
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        SigningKey {
            kid,
            created_unix,
            key,
            header_b64,
        }
    }

    fn generate(created_unix: i64) -> Result<SigningKey, RandomError> {
        let mut seed = [0u8; 32];
        secret::random_bytes(&mut seed)?;
        Ok(SigningKey::new(
            ed25519_dalek::SigningKey::from_bytes(&seed),
            created_unix,
        ))
    }

    /// The key's id.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// When the key was created (unix seconds).
    pub fn created_unix(&self) -> i64 {
        self.created_unix
    }

    /// The public half, which verifies the key's signatures.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub(crate) fn header_b64(&self) -> &str {
        &self.header_b64
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }

    fn file_name(&self) -> String {
        format!("{}-{}.pem", self.created_unix, self.kid)
    }

    /// The key as a PKCS#8 v1 PEM document: the seed only, which every Ed25519 PKCS#8 reader accepts.
    fn to_pem(&self) -> Result<String, String> {
        let der = KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_der()
        .map_err(|e| e.to_string())?;
        let body = STANDARD.encode(der.as_bytes());
        let mut pem = format!("{PEM_BEGIN}\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        Ok(pem)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_unix", &self.created_unix)
            .finish_non_exhaustive()
    }
}

/// Why the signing keys cannot be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key directory could not be created or listed.
    #[error("cannot open key directory `{}`", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A key file could not be read.
    #[error("cannot read key file `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A key file is accessible to other users.
    #[error(
        "key file `{}` has mode {mode:03o} and may be read by other users; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file's name or content is not a Warden signing key.
    #[error("key file `{}` is not a valid signing key: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A new key file could not be written.
    #[error("cannot write key file `{}`", path.display())]
    Write {
        /// The file (or its directory, when syncing it failed).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No randomness for a new key.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Warden's signing keys: the active one and the older ones that may still verify tokens.
#[derive(Debug)]
pub struct KeyRing {
    dir: PathBuf,
    /// Older keys, oldest first.
    older: Vec<SigningKey>,
    /// The newest key; it signs every new token.
    active: SigningKey,
}

impl KeyRing {
    /// Loads the keys in `dir`, creating the directory (mode 0700) and a first key if there are none.
    pub fn open_or_create(dir: &Path, now_unix: i64) -> Result<KeyRing, KeyError> {
        create_private_dir(dir).map_err(|source| KeyError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let mut keys = load_keys(dir)?;
        let active = match keys.pop() {
            Some(active) => active,
            None => {
                let key = SigningKey::generate(now_unix)?;
                store_key(dir, &key)?;
                key
            }
        };
        Ok(KeyRing {
            dir: dir.to_owned(),
            older: keys,
            active,
        })
    }

    /// Creates and stores a new key, which signs from now on; returns its id.
    ///
    /// The new key's creation time is `now_unix`, or one second after the current key's if that is
    /// later, so the newest key is always the last created.
    pub fn rotate(&mut self, now_unix: i64) -> Result<Kid, KeyError> {
        let created = now_unix.max(self.active.created_unix.saturating_add(1));
        let key = SigningKey::generate(created)?;
        store_key(&self.dir, &key)?;
        let kid = key.kid.clone();
        let previous = std::mem::replace(&mut self.active, key);
        self.older.push(previous);
        Ok(kid)
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// The keys that still verify tokens, newest first: the active key, and every older key whose
    /// successor was created less than `max_token_ttl_secs` + 60 seconds before `now_unix`.
    pub fn published(&self, now_unix: i64, max_token_ttl_secs: i64) -> Vec<&SigningKey> {
        let window = max_token_ttl_secs.saturating_add(PUBLISH_MARGIN_SECS);
        let successors = self.older.iter().skip(1).chain(std::iter::once(&self.active));
        let still_valid = self
            .older
            .iter()
            .zip(successors)
            .filter(|(_, successor)| now_unix.saturating_sub(successor.created_unix) < window)
            .map(|(key, _)| key);
        let mut keys: Vec<&SigningKey> = still_valid.collect();
        keys.push(&self.active);
        keys.reverse();
        keys
    }

    /// The JWKS document (`/.well-known/jwks.json`) of the [published](KeyRing::published) keys.
    pub fn jwks(&self, now_unix: i64, max_token_ttl_secs: i64) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .published(now_unix, max_token_ttl_secs)
            .into_iter()
            .map(|key| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
                    "kid": key.kid.as_str(),
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        json!({ "keys": keys })
    }
}

/// Every key file in `dir`, oldest first.
fn load_keys(dir: &Path) -> Result<Vec<SigningKey>, KeyError> {
    let dir_err = |source| KeyError::Dir {
        path: dir.to_owned(),
        source,
    };
    let mut keys: Vec<SigningKey> = Vec::new();
    for entry in fs::read_dir(dir).map_err(dir_err)? {
        let path = entry.map_err(dir_err)?.path();
        // Temporary files start with a dot and do not end in `.pem`.
        if path.extension().is_some_and(|ext| ext == "pem") {
            let key = load_key(&path)?;
            if let Some(twin) = keys.iter().find(|k| k.kid == key.kid) {
                return Err(KeyError::Corrupt {
                    path,
                    reason: format!("key `{}` is also in `{}`", key.kid, twin.file_name()),
                });
            }
            keys.push(key);
        }
    }
    keys.sort_by(|a, b| (a.created_unix, &a.kid).cmp(&(b.created_unix, &b.kid)));
    Ok(keys)
}

fn load_key(path: &Path) -> Result<SigningKey, KeyError> {
    let corrupt = |reason: String| KeyError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let (created_unix, kid) =
        parse_file_name(path).ok_or_else(|| corrupt("its name must be `<created_unix>-<kid>.pem`".to_owned()))?;
    let metadata = fs::metadata(path).map_err(read_err)?;
    if let Some(mode) = loose_mode(&metadata) {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let pem = fs::read_to_string(path).map_err(read_err)?;
    let der = decode_pem(&pem).map_err(|reason| corrupt(reason.to_owned()))?;
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der)
        .map_err(|e| corrupt(format!("it is not an Ed25519 PKCS#8 private key: {e}")))?;
    let key = SigningKey::new(key, created_unix);
    if key.kid.as_str() != kid {
        return Err(corrupt(format!(
            "it holds key `{}`, not `{kid}` as its name says",
            key.kid
        )));
    }
    Ok(key)
}

/// `(created_unix, kid)` from a file name `<created_unix>-<kid>.pem`.
fn parse_file_name(path: &Path) -> Option<(i64, String)> {
    let stem = path.file_stem()?.to_str()?;
    let (created, kid) = stem.split_once('-')?;
    let created = created.parse().ok()?;
    let hex = kid.len() == 16 && kid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| (created, kid.to_owned()))
}

fn decode_pem(pem: &str) -> Result<Vec<u8>, &'static str> {
    let body = pem
        .trim()
        .strip_prefix(PEM_BEGIN)
        .and_then(|rest| rest.strip_suffix(PEM_END))
        .ok_or("it is not a PEM `PRIVATE KEY` document")?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(base64).map_err(|_| "its PEM body is not valid base64")
}

/// Writes `key` to `dir` atomically: a private temporary file, synced, renamed into place.
fn store_key(dir: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let path = dir.join(key.file_name());
    let tmp = dir.join(format!(".{}.tmp", key.file_name()));
    let pem = key.to_pem().map_err(|reason| KeyError::Write {
        path: path.clone(),
        source: io::Error::other(reason),
    })?;
    write_private_file(&tmp, pem.as_bytes()).map_err(|source| KeyError::Write {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, &path).map_err(|source| KeyError::Write {
        path: path.clone(),
        source,
    })?;
    sync_dir(dir).map_err(|source| KeyError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Creates `path` readable by its owner only, writes `bytes` and syncs them to disk.
fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A temporary file left by a crash may have any mode; start afresh.
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = create_private_file(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// The permission bits of a file that group or others may access, if they may.
#[cfg(unix)]
fn loose_mode(metadata: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_metadata: &fs::Metadata) -> Option<u32> {
    None
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
