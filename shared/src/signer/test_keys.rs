//! Throwaway RSA keys for tests and benchmarks (`--features testing`): the one place they are
//! made. Each is generated fresh and lives only as long as the test's folder.

use std::path::{Path, PathBuf};

use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

/// A fresh 2048-bit RSA private key as PKCS#8 PEM.
pub fn private_pem() -> String {
    key()
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 PEM")
        .to_string()
}

fn key() -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key generation")
}

/// Writes a fresh key pair as `signing-key.pem` (PKCS#8) and `signing-key.pub.pem` (SPKI) into
/// `dir`, returning both paths.
pub fn write_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let key = key();
    let private = dir.join("signing-key.pem");
    let public = dir.join("signing-key.pub.pem");
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 PEM")
            .as_bytes(),
    )
    .expect("write the private key");
    std::fs::write(
        &public,
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("SPKI PEM"),
    )
    .expect("write the public key");
    (private, public)
}
