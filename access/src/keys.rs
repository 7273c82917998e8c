//! Keys an admin mints for an agent.
//!
//! A minted key reads `cbk_<id>_<secret>`: `cbk_` marks it, `<id>` (12
//! characters of `[a-z0-9]`) finds its stored entry without trying every
//! hash, and `<secret>` is 32 random characters of the same alphabet
//! (about 165 bits). The store keeps the entry (`StoredKey`: id, agent,
//! name, the SHA-256 of the secret), never the key. A fast hash is enough
//! here because the secret is random and long; a slow password hash
//! (argon2) is for the secrets people choose, in the credentials file.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "cbk_";
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const ID_LEN: usize = 12;
pub const SECRET_LEN: usize = 32;

/// A minted key as presented: its id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedKeyText {
    pub id: String,
    pub secret: String,
}

impl MintedKeyText {
    /// Reads `cbk_<id>_<secret>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<MintedKeyText> {
        let rest = text.strip_prefix(KEY_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let ok = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b));
        (ok(id, ID_LEN) && ok(secret, SECRET_LEN)).then(|| MintedKeyText {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

/// What the store keeps of a minted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub agent: String,
    /// Unique per agent; `DELETE /api/v1/agents/{id}/keys/{name}` names it.
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
}

impl StoredKey {
    pub fn matches(&self, presented: &MintedKeyText) -> bool {
        presented.id == self.id && sha256_hex(&presented.secret) == self.secret_sha256
    }
}

/// Mints a key for `agent` named `name`: the text to hand out once, and
/// what to store.
pub fn mint(agent: &str, name: &str) -> (String, StoredKey) {
    let mut rng = rand::rng();
    let mut draw = |len: usize| -> String {
        (0..len)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let id = draw(ID_LEN);
    let secret = draw(SECRET_LEN);
    let stored = StoredKey {
        id: id.clone(),
        agent: agent.to_owned(),
        name: name.to_owned(),
        secret_sha256: sha256_hex(&secret),
    };
    (format!("{KEY_PREFIX}{id}_{secret}"), stored)
}

pub(crate) fn sha256_hex(text: &str) -> String {
    // By hand: a `format!` per byte costs ten times the hash itself, and a
    // minted key is hashed on every request that presents it.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(2 * digest.len());
    for b in digest {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 0x0f)] as char);
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_key_reads_back_and_matches_only_its_entry() {
        let (text, stored) = mint("ann", "desk");
        let presented = MintedKeyText::parse(&text).expect("parses");
        assert_eq!(presented.id, stored.id);
        assert!(stored.matches(&presented));
        assert!(!stored.secret_sha256.contains(&presented.secret));
        let (_, other) = mint("ann", "desk");
        assert!(!other.matches(&presented));
        let mut wrong = presented.clone();
        wrong.secret.replace_range(
            0..1,
            if wrong.secret.starts_with('a') {
                "b"
            } else {
                "a"
            },
        );
        assert!(!stored.matches(&wrong));
    }

    /// Stored entries hold this lowercase hex: how it is written must not
    /// change, or every key minted before would stop matching.
    #[test]
    fn the_stored_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn only_the_exact_form_parses() {
        let good = format!("cbk_{}_{}", "a".repeat(ID_LEN), "0".repeat(SECRET_LEN));
        assert!(MintedKeyText::parse(&good).is_some());
        for bad in [
            format!("cbx_{}_{}", "a".repeat(ID_LEN), "0".repeat(SECRET_LEN)),
            format!("cbk_{}_{}", "a".repeat(ID_LEN - 1), "0".repeat(SECRET_LEN)),
            format!("cbk_{}_{}", "A".repeat(ID_LEN), "0".repeat(SECRET_LEN)),
            format!("cbk_{}_{}x", "a".repeat(ID_LEN), "0".repeat(SECRET_LEN)),
            format!("cbk_{}{}", "a".repeat(ID_LEN), "0".repeat(SECRET_LEN)),
        ] {
            assert!(MintedKeyText::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ids_are_spread_over_the_alphabet() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| mint("a", "k").1.id).collect();
        assert_eq!(ids.len(), 1000);
    }
}
