//! The log's signing key and its checkpoints: C2SP `tlog-checkpoint` bodies (origin, tree size,
//! base64 root) signed as C2SP `signed-note`s with Ed25519.
//!
//! The key lives in `<lake>/log-key.pem` (PKCS#8, mode 0600), created on first open. Its public half
//! is published as a C2SP verifier key `<name>+<key id hex>+<base64(0x01 ‖ public key)>`, where the
//! name is the log's origin and the key id is the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ key).
//! A note's signature line is `— <name> <base64(key id ‖ signature)>`, the signature covering the
//! note's text up to and including its final newline.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::{Hash, hex};

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
const ED25519: u8 = 0x01;

/// Why a note or key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("verifier key `{0}` is not `<name>+<key id>+<base64 key>` for an Ed25519 key")]
    BadVerifierKey(String),
    #[error("the note is malformed: {0}")]
    Malformed(String),
    #[error("the note carries no signature by `{name}` with key id {key_id}")]
    NoSignature { name: String, key_id: String },
    #[error("the signature by `{0}` does not verify: the note was altered or signed by another key")]
    BadSignature(String),
}

/// The log's Ed25519 key and its name (the log origin).
pub struct LogKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// Loads the key at `path`, or creates it (0600, synced) when there is none.
    pub fn load_or_create(path: &Path, name: &str) -> io::Result<LogKey> {
        let key = match fs::read_to_string(path) {
            Ok(pem) => decode_key(&pem).map_err(|reason| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "log key `{}` is unusable: {reason}; restore it from backup",
                        path.display()
                    ),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed)
                    .map_err(|e| io::Error::other(format!("no randomness for the log key: {e}")))?;
                let key = SigningKey::from_bytes(&seed);
                write_key(path, &key)?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(LogKey {
            name: name.to_owned(),
            key,
        })
    }

    /// Loads the key at `path`; never creates one.
    pub fn load(path: &Path, name: &str) -> io::Result<LogKey> {
        let pem = fs::read_to_string(path)?;
        let key = decode_key(&pem).map_err(|reason| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("log key `{}` is unusable: {reason}", path.display()),
            )
        })?;
        Ok(LogKey {
            name: name.to_owned(),
            key,
        })
    }

    /// A key from a seed (tests).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> LogKey {
        LogKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The C2SP verifier key string that checks this key's notes.
    pub fn verifier_key(&self) -> String {
        let public = self.key.verifying_key();
        let mut encoded = vec![ED25519];
        encoded.extend_from_slice(public.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex(&key_id(&self.name, public.as_bytes())),
            STANDARD.encode(encoded)
        )
    }

    /// Signs `text` (which must end in a newline) as a signed note.
    pub fn sign_note(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, self.key.verifying_key().as_bytes()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }

    /// Signs a checkpoint of the tree of `size` leaves with root `root`.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash) -> SignedCheckpoint {
        let text = format!("{}\n{size}\n{}\n", self.name, STANDARD.encode(root));
        SignedCheckpoint {
            origin: self.name.clone(),
            size,
            root: *root,
            note: self.sign_note(&text),
        }
    }
}

/// A parsed C2SP verifier key.
#[derive(Debug, Clone)]
pub struct VerifierKey {
    pub name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let bad = || NoteError::BadVerifierKey(text.to_owned());
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let raw = STANDARD.decode(b64).map_err(|_| bad())?;
        let (&alg, key_bytes) = raw.split_first().ok_or_else(bad)?;
        let key_bytes: [u8; 32] = key_bytes.try_into().map_err(|_| bad())?;
        if alg != ED25519 || name.is_empty() {
            return Err(bad());
        }
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad())?;
        let key_id = key_id(name, &key_bytes);
        if hex(&key_id) != id_hex {
            return Err(bad());
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// The key id as 8 hex digits.
    pub fn key_id_hex(&self) -> String {
        hex(&self.key_id)
    }

    /// Checks a signed note and returns its text (up to and including its last newline before the
    /// blank line).
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| NoteError::Malformed("no blank line before signatures".to_owned()))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(NoteError::Malformed(format!(
                    "signature line `{line}` does not start with an em dash"
                )));
            };
            let Some((name, b64)) = rest.rsplit_once(' ') else {
                return Err(NoteError::Malformed(format!(
                    "signature line `{line}` has no signature"
                )));
            };
            if name != self.name {
                continue;
            }
            let blob = STANDARD
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64".to_owned()))?;
            if blob.len() != 4 + 64 || blob[..4] != self.key_id {
                continue;
            }
            let sig_bytes: [u8; 64] = blob[4..]
                .try_into()
                .map_err(|_| NoteError::Malformed("signature has the wrong length".to_owned()))?;
            return self
                .key
                .verify(text.as_bytes(), &Signature::from_bytes(&sig_bytes))
                .map(|()| text)
                .map_err(|_| NoteError::BadSignature(self.name.clone()));
        }
        Err(NoteError::NoSignature {
            name: self.name.clone(),
            key_id: self.key_id_hex(),
        })
    }

    /// Checks a signed checkpoint note and parses it.
    pub fn verify_checkpoint(&self, note: &str) -> Result<SignedCheckpoint, NoteError> {
        let text = self.verify_note(note)?;
        let mut lines = text.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(NoteError::Malformed(
                "a checkpoint needs origin, size and root lines".to_owned(),
            ));
        };
        if origin != self.name {
            return Err(NoteError::Malformed(format!(
                "checkpoint origin `{origin}` is not the key's `{}`",
                self.name
            )));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| NoteError::Malformed(format!("tree size `{size}` is not a number")))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| NoteError::Malformed(format!("root `{root}` is not a base64 SHA-256 hash")))?;
        Ok(SignedCheckpoint {
            origin: origin.to_owned(),
            size,
            root,
            note: note.to_owned(),
        })
    }
}

/// A checkpoint and its signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub origin: String,
    /// Tree size: the number of events covered.
    pub size: u64,
    pub root: Hash,
    /// The C2SP signed note text.
    pub note: String,
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn decode_key(pem: &str) -> Result<SigningKey, String> {
    let body = pem
        .trim()
        .strip_prefix(PEM_BEGIN)
        .and_then(|rest| rest.strip_suffix(PEM_END))
        .ok_or("it is not a PEM `PRIVATE KEY` document")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|_| "its PEM body is not valid base64")?;
    SigningKey::from_pkcs8_der(&der).map_err(|e| format!("it is not an Ed25519 PKCS#8 key: {e}"))
}

fn write_key(path: &Path, key: &SigningKey) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let der = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_der()
    .map_err(|e| io::Error::other(e.to_string()))?;
    let body = STANDARD.encode(der.as_bytes());
    let mut pem = format!("{PEM_BEGIN}\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    let tmp = path.with_extension("pem.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        crate::wal::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn checkpoints_sign_and_verify() {
        let key = LogKey::from_seed("example.com/audit", [7; 32]);
        let vkey = VerifierKey::parse(&key.verifier_key()).unwrap();
        let root = leaf_hash(b"x");
        let cp = key.sign_checkpoint(42, &root);
        assert!(cp.note.starts_with("example.com/audit\n42\n"));
        assert!(cp.note.contains("\n\n\u{2014} example.com/audit "));
        let parsed = vkey.verify_checkpoint(&cp.note).unwrap();
        assert_eq!((parsed.size, parsed.root), (42, root));
        // Any change to the body breaks the signature.
        let forged = cp.note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            vkey.verify_checkpoint(&forged).unwrap_err(),
            NoteError::BadSignature("example.com/audit".into())
        );
        // Another key's verifier finds no signature of its own.
        let other = VerifierKey::parse(&LogKey::from_seed("example.com/audit", [8; 32]).verifier_key()).unwrap();
        assert!(matches!(
            other.verify_checkpoint(&cp.note),
            Err(NoteError::NoSignature { .. })
        ));
        assert!(VerifierKey::parse("name+00000000+AAAA").is_err());
    }

    #[test]
    fn the_key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log-key.pem");
        let a = LogKey::load_or_create(&path, "o").unwrap();
        let b = LogKey::load_or_create(&path, "o").unwrap();
        assert_eq!(a.verifier_key(), b.verifier_key());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::write(&path, "junk").unwrap();
        assert!(
            LogKey::load_or_create(&path, "o")
                .unwrap_err()
                .to_string()
                .contains("unusable")
        );
    }
}
