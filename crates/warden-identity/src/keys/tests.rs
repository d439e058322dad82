#![allow(clippy::unwrap_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;

use super::*;

const NOW: i64 = 1_780_000_000;
const TTL: i64 = 900;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn pem_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pem"))
        .collect();
    files.sort();
    files
}

#[test]
fn creates_a_private_directory_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("warden-data/keys");
    let ring = KeyRing::open_or_create(&dir, NOW).unwrap();
    assert_eq!(mode(&dir), 0o700);
    let files = pem_files(&dir);
    assert_eq!(files.len(), 1);
    let kid = ring.active().kid().to_string();
    assert_eq!(
        files[0].file_name().unwrap().to_str().unwrap(),
        format!("{NOW}-{kid}.pem")
    );
    assert_eq!(mode(&files[0]), 0o600);
    // The kid is the first 8 bytes of the public key's SHA-256.
    let digest = Sha256::digest(ring.active().verifying_key().as_bytes());
    let expected: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(kid, expected);
    // A PKCS#8 v1 document (RFC 8410 §7) holding the seed.
    let der = decode_pem(&fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(der.len(), 48);
    assert!(der.starts_with(&[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]));
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file is left behind"
    );
}

#[test]
fn keys_reload_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ring = KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    let first = ring.active().verifying_key();
    let reopened = KeyRing::open_or_create(tmp.path(), NOW + 10).unwrap();
    assert_eq!(reopened.active().verifying_key(), first);
    assert_eq!(reopened.active().created_unix(), NOW);
    assert_eq!(pem_files(tmp.path()).len(), 1, "reopening must not create another key");

    let second = ring.rotate(NOW + 20).unwrap();
    let reopened = KeyRing::open_or_create(tmp.path(), NOW + 30).unwrap();
    assert_eq!(reopened.active().kid(), &second);
    assert_eq!(reopened.older.len(), 1);
    assert_eq!(reopened.older[0].verifying_key(), first);
    for file in pem_files(tmp.path()) {
        assert_eq!(mode(&file), 0o600);
    }
}

#[test]
fn rotation_in_the_same_second_keeps_the_newest_active() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ring = KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    ring.rotate(NOW).unwrap();
    let newest = ring.rotate(NOW).unwrap();
    assert_eq!(ring.active().kid(), &newest);
    assert_eq!(ring.active().created_unix(), NOW + 2);
    let reopened = KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    assert_eq!(reopened.active().kid(), &newest);
}

#[test]
fn old_keys_stay_published_until_their_tokens_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ring = KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    let old = ring.active().kid().clone();
    let new = ring.rotate(NOW + 1000).unwrap();
    let kids = |now| {
        ring.published(now, TTL)
            .iter()
            .map(|key| key.kid().clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(kids(NOW + 1000), [new.clone(), old.clone()]);
    assert_eq!(kids(NOW + 1000 + TTL + 59), [new.clone(), old]);
    assert_eq!(kids(NOW + 1000 + TTL + 60), [new]);
}

#[test]
fn jwks_lists_the_published_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    let jwks = ring.jwks(NOW, TTL);
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], ring.active().kid().as_str());
    let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    assert_eq!(x, ring.active().verifying_key().as_bytes());
}

#[test]
fn refuses_a_key_file_others_can_read() {
    let tmp = tempfile::tempdir().unwrap();
    KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    let file = pem_files(tmp.path()).remove(0);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let err = KeyRing::open_or_create(tmp.path(), NOW).unwrap_err();
    assert!(matches!(err, KeyError::Permissions { mode: 0o644, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("chmod 600 {}", file.display())), "{message}");
    assert!(message.contains("mode 644"), "{message}");
}

#[test]
fn corrupt_key_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    let file = pem_files(tmp.path()).remove(0);

    fs::write(&file, "not a key").unwrap();
    let err = KeyRing::open_or_create(tmp.path(), NOW).unwrap_err();
    assert!(matches!(err, KeyError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");

    fs::write(&file, format!("{PEM_BEGIN}\nAAAA\n{PEM_END}\n")).unwrap();
    let err = KeyRing::open_or_create(tmp.path(), NOW).unwrap_err();
    assert!(err.to_string().contains("not an Ed25519 PKCS#8 private key"), "{err}");
}

#[test]
fn a_key_file_must_hold_the_key_its_name_says() {
    let tmp = tempfile::tempdir().unwrap();
    KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    let file = pem_files(tmp.path()).remove(0);
    let renamed = tmp.path().join(format!("{NOW}-0123456789abcdef.pem"));
    fs::rename(&file, &renamed).unwrap();
    let err = KeyRing::open_or_create(tmp.path(), NOW).unwrap_err();
    assert!(
        err.to_string().contains("not `0123456789abcdef` as its name says"),
        "{err}"
    );

    fs::rename(&renamed, tmp.path().join("signing.pem")).unwrap();
    let err = KeyRing::open_or_create(tmp.path(), NOW).unwrap_err();
    assert!(
        err.to_string().contains("its name must be `<created_unix>-<kid>.pem`"),
        "{err}"
    );
}

#[test]
fn leftover_temporary_files_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    fs::write(tmp.path().join(".1-0123456789abcdef.pem.tmp"), "half a key").unwrap();
    let reopened = KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    assert_eq!(reopened.active().kid(), ring.active().kid());
}

#[test]
fn debug_output_shows_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = KeyRing::open_or_create(tmp.path(), NOW).unwrap();
    let debug = format!("{ring:?}");
    let seed_hex: String = ring
        .active()
        .key
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!debug.contains(&seed_hex));
    assert!(!debug.contains(&format!("{:?}", ring.active().key.to_bytes())));
}
