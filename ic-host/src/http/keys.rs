//! The subnet's keys: the BLS12-381 root key that signs every certificate (the IC scheme:
//! signatures in G1, 48 bytes; public key in G2, 96 bytes) and the one node's Ed25519 key that
//! signs query responses.
//!
//! With no delegation the clients take the subnet id to be `self_authenticating(root key DER)`
//! (ic-agent `fetch_subnet_by_canister`, agent-js `#doFetchSubnetKeys`), so the id is derived
//! here, not chosen. The node id is derived from the node key the way the IC derives node ids.
//! Both secrets persist in the state directory so that the root key can be pinned in a client's
//! configuration across restarts.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candid::Principal;
use ed25519_dalek::{Signer, SigningKey};

/// The DER prefix of an IC BLS12-381 public key (the IC interface specification, "Certification",
/// and ic-agent's `extract_der`): SEQUENCE { SEQUENCE { OID 1.3.6.1.4.1.44668.5.3.1.2.1,
/// OID 1.3.6.1.4.1.44668.5.3.2.1 }, BIT STRING (96 bytes) }.
pub const BLS_DER_PREFIX: [u8; 37] = *b"\x30\x81\x82\x30\x1d\x06\x0d\x2b\x06\x01\x04\x01\x82\xdc\x7c\x05\x03\x01\x02\x01\x06\x0c\x2b\x06\x01\x04\x01\x82\xdc\x7c\x05\x03\x02\x01\x03\x61\x00";

/// The DER prefix of an Ed25519 public key (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 },
/// BIT STRING (32 bytes) }.
pub const ED25519_DER_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// Domain separator of the certificate signature: `domain_sep("ic-state-root")`.
pub const STATE_ROOT_DOMAIN: &[u8] = b"\x0Dic-state-root";

/// The file (in the state directory) holding the BLS root secret, 32 bytes big-endian, in hex.
pub const ROOT_KEY_FILE: &str = "subnet_root_bls.key";
/// The file holding the node's Ed25519 secret seed, 32 bytes, in hex.
pub const NODE_KEY_FILE: &str = "node_ed25519.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a key: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The root key of the (only, root) subnet and the key of its one node.
pub struct SubnetKeys {
    root: ic_verify_bls_signature::PrivateKey,
    root_public: [u8; 96],
    node: SigningKey,
}

impl std::fmt::Debug for SubnetKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubnetKeys")
            .field("subnet_id", &self.subnet_id().to_text())
            .field("node_id", &self.node_id().to_text())
            .finish_non_exhaustive()
    }
}

impl SubnetKeys {
    /// Fresh random keys, persisted nowhere.
    pub fn random() -> SubnetKeys {
        let mut rng = rand::rngs::OsRng;
        SubnetKeys::from_secrets(ic_verify_bls_signature::PrivateKey::random(&mut rng), SigningKey::generate(&mut rng))
    }

    /// The keys kept in `state_dir` ([`ROOT_KEY_FILE`], [`NODE_KEY_FILE`]); a missing file is
    /// created with a fresh random key (mode 0600, the directory too if needed). A file that is
    /// there but does not hold a key is an error, never silently replaced. Without a directory:
    /// fresh random keys.
    pub fn load_or_create(state_dir: Option<&Path>) -> Result<SubnetKeys, KeyError> {
        let Some(dir) = state_dir else { return Ok(SubnetKeys::random()) };
        fs::create_dir_all(dir).map_err(|source| KeyError::Io { path: dir.to_path_buf(), source })?;
        let mut rng = rand::rngs::OsRng;
        let root_path = dir.join(ROOT_KEY_FILE);
        let root = match read_secret(&root_path)? {
            Some(bytes) => ic_verify_bls_signature::PrivateKey::deserialize(&bytes)
                .map_err(|e| KeyError::Corrupt { path: root_path.clone(), reason: format!("not a BLS12-381 scalar: {e:?}") })?,
            None => {
                let key = ic_verify_bls_signature::PrivateKey::random(&mut rng);
                write_secret(&root_path, &key.serialize())?;
                key
            }
        };
        let node_path = dir.join(NODE_KEY_FILE);
        let node = match read_secret(&node_path)? {
            Some(bytes) => SigningKey::from_bytes(&bytes),
            None => {
                let key = SigningKey::generate(&mut rng);
                write_secret(&node_path, &key.to_bytes())?;
                key
            }
        };
        Ok(SubnetKeys::from_secrets(root, node))
    }

    fn from_secrets(root: ic_verify_bls_signature::PrivateKey, node: SigningKey) -> SubnetKeys {
        let root_public = root.public_key().serialize();
        SubnetKeys { root, root_public, node }
    }

    /// The root public key as the clients expect it (`/api/v2/status` `root_key`,
    /// `/subnet/<id>/public_key`): the 37-byte prefix and the 96-byte G2 point, 133 bytes.
    pub fn root_key_der(&self) -> Vec<u8> {
        [&BLS_DER_PREFIX[..], &self.root_public[..]].concat()
    }

    /// The raw 96-byte G2 public key (what `ic_verify_bls_signature::verify_bls_signature` takes).
    pub fn root_key_raw(&self) -> [u8; 96] {
        self.root_public
    }

    /// `self_authenticating(root_key_der)`: the id every client assumes for a root subnet without delegation.
    pub fn subnet_id(&self) -> Principal {
        Principal::self_authenticating(self.root_key_der())
    }

    /// The node's Ed25519 public key in DER, 44 bytes (`/subnet/<id>/node/<node id>/public_key`).
    pub fn node_key_der(&self) -> Vec<u8> {
        [&ED25519_DER_PREFIX[..], self.node.verifying_key().as_bytes()].concat()
    }

    /// `self_authenticating(node_key_der)`, as the IC derives a node id from its signing key.
    pub fn node_id(&self) -> Principal {
        Principal::self_authenticating(self.node_key_der())
    }

    /// The certificate signature: BLS over `"\x0Dic-state-root" ‖ root_hash`.
    pub fn sign_root(&self, root_hash: &[u8; 32]) -> [u8; 48] {
        let message = [STATE_ROOT_DOMAIN, &root_hash[..]].concat();
        self.root.sign(&message).serialize()
    }

    /// An Ed25519 signature by the node over `message` (which carries its own domain separator).
    pub fn sign_node(&self, message: &[u8]) -> [u8; 64] {
        self.node.sign(message).to_bytes()
    }
}

/// The 32 bytes in `path` (hex, surrounding whitespace ignored), or `None` if there is no file.
fn read_secret(path: &Path) -> Result<Option<[u8; 32]>, KeyError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Io { path: path.to_path_buf(), source }),
    };
    let corrupt = |reason: String| KeyError::Corrupt { path: path.to_path_buf(), reason };
    let text = std::str::from_utf8(&text).map_err(|_| corrupt("not text".to_string()))?;
    let bytes = hex::decode(text.trim()).map_err(|e| corrupt(format!("not hex: {e}")))?;
    let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| corrupt(format!("{} bytes, expected 32", bytes.len())))?;
    Ok(Some(secret))
}

/// Writes `secret` in hex to `path`, readable by the owner only, without ever leaving a partial
/// file under the final name.
fn write_secret(path: &Path, secret: &[u8; 32]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(format!("{}\n", hex::encode(secret)).as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ic-host-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn der_encodings_have_the_specified_prefixes_and_lengths() {
        let keys = SubnetKeys::random();
        let der = keys.root_key_der();
        assert_eq!(der.len(), 133);
        assert_eq!(hex::encode(&der[..37]), "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100");
        assert_eq!(&der[37..], &keys.root_key_raw()[..]);
        let node = keys.node_key_der();
        assert_eq!(node.len(), 44);
        assert_eq!(hex::encode(&node[..12]), "302a300506032b6570032100");
    }

    #[test]
    fn ids_are_self_authenticating_sha224_of_the_der_keys() {
        use sha2::Digest;
        let keys = SubnetKeys::random();
        for (id, der) in [(keys.subnet_id(), keys.root_key_der()), (keys.node_id(), keys.node_key_der())] {
            let mut expected = sha2::Sha224::digest(&der).to_vec();
            expected.push(0x02);
            assert_eq!(id.as_slice(), &expected[..]);
        }
    }

    #[test]
    fn root_signatures_verify_over_the_domain_separated_root_hash() {
        let keys = SubnetKeys::random();
        let hash = [7u8; 32];
        let sig = keys.sign_root(&hash);
        let message = [b"\x0Dic-state-root".as_slice(), &hash].concat();
        assert!(ic_verify_bls_signature::verify_bls_signature(&sig, &message, &keys.root_key_raw()).is_ok());
        assert!(ic_verify_bls_signature::verify_bls_signature(&sig, &hash, &keys.root_key_raw()).is_err());
        assert!(ic_verify_bls_signature::verify_bls_signature(&keys.sign_root(&[8u8; 32]), &message, &keys.root_key_raw()).is_err());
    }

    #[test]
    fn node_signatures_verify_with_the_der_key() {
        let keys = SubnetKeys::random();
        let sig = keys.sign_node(b"message");
        let der = keys.node_key_der();
        let key = ed25519_dalek::VerifyingKey::from_bytes(der[12..].try_into().unwrap()).unwrap();
        assert!(key.verify_strict(b"message", &ed25519_dalek::Signature::from_bytes(&sig)).is_ok());
        assert!(key.verify_strict(b"messagf", &ed25519_dalek::Signature::from_bytes(&sig)).is_err());
    }

    #[test]
    fn keys_persist_in_the_state_dir_with_owner_only_permissions() {
        let dir = temp_dir("persist");
        let first = SubnetKeys::load_or_create(Some(&dir)).unwrap();
        let second = SubnetKeys::load_or_create(Some(&dir)).unwrap();
        assert_eq!(first.root_key_der(), second.root_key_der());
        assert_eq!(first.node_key_der(), second.node_key_der());
        assert_eq!(first.subnet_id(), second.subnet_id());
        #[cfg(unix)]
        for file in [ROOT_KEY_FILE, NODE_KEY_FILE] {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(dir.join(file)).unwrap().permissions().mode() & 0o777, 0o600, "{file}");
        }
        // Signatures of the reloaded key verify with the first key's public key.
        let message = [STATE_ROOT_DOMAIN, &[1u8; 32]].concat();
        assert!(ic_verify_bls_signature::verify_bls_signature(&second.sign_root(&[1u8; 32]), &message, &first.root_key_raw()).is_ok());
        // Without a directory the keys are fresh each time.
        assert_ne!(SubnetKeys::load_or_create(None).unwrap().root_key_der(), SubnetKeys::load_or_create(None).unwrap().root_key_der());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_node_key_is_created_and_the_root_key_kept() {
        let dir = temp_dir("partial");
        let first = SubnetKeys::load_or_create(Some(&dir)).unwrap();
        fs::remove_file(dir.join(NODE_KEY_FILE)).unwrap();
        let second = SubnetKeys::load_or_create(Some(&dir)).unwrap();
        assert_eq!(first.root_key_der(), second.root_key_der());
        assert_ne!(first.node_key_der(), second.node_key_der());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_key_files_are_typed_errors() {
        let dir = temp_dir("corrupt");
        SubnetKeys::load_or_create(Some(&dir)).unwrap();
        let root = dir.join(ROOT_KEY_FILE);
        let original = fs::read(&root).unwrap();
        for bad in [&b"zz"[..], b"0011", &[0xff; 40][..], b"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"] {
            fs::write(&root, bad).unwrap();
            match SubnetKeys::load_or_create(Some(&dir)) {
                Err(KeyError::Corrupt { path, .. }) => assert_eq!(path, root),
                other => panic!("{bad:?}: {other:?}"),
            }
            assert_eq!(fs::read(&root).unwrap(), bad, "a corrupt key file is never replaced");
        }
        fs::write(&root, &original).unwrap();
        fs::write(dir.join(NODE_KEY_FILE), "abc").unwrap();
        assert!(matches!(SubnetKeys::load_or_create(Some(&dir)), Err(KeyError::Corrupt { .. })));
        // A state "directory" that is a file is an I/O error.
        let file = dir.join("not-a-dir");
        fs::write(&file, "x").unwrap();
        assert!(matches!(SubnetKeys::load_or_create(Some(&file)), Err(KeyError::Io { .. })));
        let _ = fs::remove_dir_all(&dir);
    }
}
