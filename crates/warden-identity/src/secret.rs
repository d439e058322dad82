//! High-entropy bearer secrets: people's access tokens (`wdn_…`) and agents' client secrets (`wds_…`).
//!
//! A secret is 32 random bytes, base64url encoded behind a short prefix that tells a reader (and a
//! secret scanner) what it is. Only its SHA-256 is stored: the secret has 256 bits of entropy, so a
//! slow password hash would add nothing. Hashes are compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a secret is for; decides its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A person's API access token.
    AccessToken,
    /// An agent's client secret, traded for access tokens.
    ClientSecret,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::AccessToken => "wdn_",
            SecretKind::ClientSecret => "wds_",
        }
    }
}

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// A new random secret of `kind`, returned once to its holder.
pub fn generate(kind: SecretKind) -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    Ok(format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes)))
}

/// A random identifier of `n` bytes, hex encoded (for `jti`s and key ids).
pub fn random_hex(n: usize) -> Result<String, RandomError> {
    let mut bytes = vec![0u8; n];
    random_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `secret` hashes to `stored`, in constant time.
pub fn verify(secret: &str, stored: &[u8]) -> bool {
    let computed = hash(secret);
    stored.len() == computed.len() && bool::from(computed.ct_eq(stored))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = generate(SecretKind::AccessToken).unwrap();
        assert!(s.starts_with("wdn_"));
        assert_eq!(s.len(), 4 + 43);
        let stored = hash(&s);
        assert!(verify(&s, &stored));
        assert!(!verify(&format!("{s}x"), &stored));
        assert!(!verify(&s, &stored[..31]));
        assert_ne!(
            generate(SecretKind::ClientSecret).unwrap(),
            generate(SecretKind::ClientSecret).unwrap()
        );
    }
}
