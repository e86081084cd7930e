//! The refresh token itself: base64url(`sid` 16 bytes ‖ generation 4 bytes ‖ secret 32 bytes ‖
//! tag 16 bytes), its HMAC tag under the session's family key, the hash the store keeps, and the
//! seal of a rotated token's successor. Cryptography only: no store, no clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub(super) const SID_BYTES: usize = 16;
const SECRET_BYTES: usize = 32;
const TAG_BYTES: usize = 16;
const TOKEN_BYTES: usize = SID_BYTES + 4 + SECRET_BYTES + TAG_BYTES;
/// Longest refresh token looked at (its base64url length).
pub const REFRESH_TOKEN_CHARS: usize = (TOKEN_BYTES * 4).div_ceil(3);

/// A parsed refresh token.
pub(super) struct RefreshToken {
    pub(super) sid: [u8; SID_BYTES],
    pub(super) generation: u32,
    secret: [u8; SECRET_BYTES],
    tag: [u8; TAG_BYTES],
}

pub(super) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random number generator is available");
    bytes
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A session id as records and tokens carry it (hex).
pub(super) fn sid_string(sid: &[u8; SID_BYTES]) -> String {
    hex(sid)
}

pub(super) fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl RefreshToken {
    pub(super) fn new(sid: [u8; SID_BYTES], generation: u32, family_key: &[u8]) -> Self {
        Self::with_secret(sid, generation, random(), family_key)
    }

    fn with_secret(
        sid: [u8; SID_BYTES],
        generation: u32,
        secret: [u8; SECRET_BYTES],
        family_key: &[u8],
    ) -> Self {
        let mut token = RefreshToken {
            sid,
            generation,
            secret,
            tag: [0; TAG_BYTES],
        };
        token.tag = token.expected_tag(family_key);
        token
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        if text.len() != REFRESH_TOKEN_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let bytes: [u8; TOKEN_BYTES] = bytes.try_into().ok()?;
        let (sid, rest) = bytes.split_at(SID_BYTES);
        let (generation, rest) = rest.split_at(4);
        let (secret, tag) = rest.split_at(SECRET_BYTES);
        Some(RefreshToken {
            sid: sid.try_into().ok()?,
            generation: u32::from_be_bytes(generation.try_into().ok()?),
            secret: secret.try_into().ok()?,
            tag: tag.try_into().ok()?,
        })
    }

    fn bytes(&self) -> Vec<u8> {
        [
            &self.sid[..],
            &self.generation.to_be_bytes(),
            &self.secret,
            &self.tag,
        ]
        .concat()
    }

    pub(super) fn encode(&self) -> String {
        b64(&self.bytes())
    }

    pub(super) fn sid(&self) -> String {
        hex(&self.sid)
    }

    /// What the store keeps of this token.
    pub(super) fn hash(&self) -> String {
        b64(&Sha256::digest(self.bytes()))
    }

    fn expected_tag(&self, family_key: &[u8]) -> [u8; TAG_BYTES] {
        let mac = hmac(
            family_key,
            &[&self.sid, &self.generation.to_be_bytes(), &self.secret],
        );
        mac[..TAG_BYTES].try_into().expect("a prefix of the MAC")
    }

    /// Whether this token was issued for the session whose family key this is.
    pub(super) fn is_genuine(&self, family_key: &[u8]) -> bool {
        self.expected_tag(family_key).ct_eq(&self.tag).into()
    }

    /// The one-time pad that seals the successor's secret: only this token's holder can derive it,
    /// and only with the server-held `seal_key` (a copy of the store and an old token are not
    /// enough).
    fn successor_pad(&self, seal_key: &[u8; 32]) -> [u8; SECRET_BYTES] {
        hmac(
            &self.secret,
            &[
                b"refresh-successor",
                seal_key,
                &self.sid,
                &self.generation.wrapping_add(1).to_be_bytes(),
            ],
        )
    }

    pub(super) fn seal_successor(&self, successor: &RefreshToken, seal_key: &[u8; 32]) -> String {
        let pad = self.successor_pad(seal_key);
        let sealed: Vec<u8> = successor
            .secret
            .iter()
            .zip(pad)
            .map(|(s, p)| s ^ p)
            .collect();
        b64(&sealed)
    }

    pub(super) fn unseal_successor(
        &self,
        sealed: &str,
        family_key: &[u8],
        seal_key: &[u8; 32],
    ) -> Option<RefreshToken> {
        let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let sealed: [u8; SECRET_BYTES] = sealed.try_into().ok()?;
        let mut secret = self.successor_pad(seal_key);
        for (s, x) in secret.iter_mut().zip(sealed) {
            *s ^= x;
        }
        Some(RefreshToken::with_secret(
            self.sid,
            self.generation.wrapping_add(1),
            secret,
            family_key,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_url_safe_and_opaque() {
        let key = [7u8; 32];
        let token = RefreshToken::new(random(), 3, &key);
        let text = token.encode();
        assert_eq!(text.len(), REFRESH_TOKEN_CHARS);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(text.matches('.').count(), 0, "not a JWT");
        let back = RefreshToken::parse(&text).unwrap();
        assert_eq!(
            (back.sid, back.generation, back.secret),
            (token.sid, 3, token.secret)
        );
        assert!(back.is_genuine(&key));
        assert!(!back.is_genuine(&[8u8; 32]));
    }

    #[test]
    fn a_mangled_token_is_not_genuine_and_garbage_does_not_parse() {
        let key = [1u8; 32];
        let text = RefreshToken::new(random(), 1, &key).encode();
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[SID_BYTES + 4] ^= 1;
        let mangled = RefreshToken::parse(&b64(&bytes)).unwrap();
        assert!(!mangled.is_genuine(&key));
        for garbage in [
            "",
            "abc",
            &"A".repeat(REFRESH_TOKEN_CHARS + 1),
            &"*".repeat(REFRESH_TOKEN_CHARS),
        ] {
            assert!(RefreshToken::parse(garbage).is_none(), "{garbage}");
        }
    }

    #[test]
    fn only_the_previous_token_unseals_its_successor() {
        let key = [2u8; 32];
        let sid = random();
        let previous = RefreshToken::new(sid, 4, &key);
        let successor = RefreshToken::new(sid, 5, &key);
        let server = [9u8; 32];
        let sealed = previous.seal_successor(&successor, &server);
        let opened = previous.unseal_successor(&sealed, &key, &server).unwrap();
        assert_eq!(opened.encode(), successor.encode());
        let other = RefreshToken::new(sid, 4, &key);
        assert_ne!(
            other
                .unseal_successor(&sealed, &key, &server)
                .unwrap()
                .hash(),
            successor.hash()
        );
        // A copy of the store and the previous token, without the server-held key: nothing.
        assert_ne!(
            previous
                .unseal_successor(&sealed, &key, &[0u8; 32])
                .unwrap()
                .hash(),
            successor.hash()
        );
    }
}
