//! API keys made through the admin API: `sr_<prefix>_<secret>`.
//!
//! The prefix (12 hex digits) is public: it finds the record without the secret. The
//! secret is 256 random bits, so a plain SHA-256 of the whole key is a safe digest (there
//! is nothing to brute-force), and the stored digest is compared in constant time.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Caller, KeyLimits};
use crate::store::keys::{KeyRecord, SecretDigest};

const SCHEME: &str = "sr_";

/// A key's plaintext (shown once) and what is stored of it.
pub struct NewSecret {
    pub plaintext: String,
    pub stored: SecretDigest,
}

pub fn generate(now: DateTime<Utc>) -> NewSecret {
    let prefix = hex::encode(rand::random::<[u8; 6]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let plaintext = format!("{SCHEME}{prefix}_{secret}");
    NewSecret {
        stored: SecretDigest {
            prefix,
            digest: digest_hex(&plaintext),
            created_at: now,
            retires_at: None,
        },
        plaintext,
    }
}

pub fn new_key_id() -> String {
    format!("key_{}", crate::domain::session::new_id())
}

pub fn digest_hex(bearer: &str) -> String {
    hex::encode(Sha256::digest(bearer.as_bytes()))
}

/// The public prefix of a bearer shaped like one of our keys.
pub fn prefix_of(bearer: &str) -> Option<&str> {
    let (prefix, secret) = bearer.strip_prefix(SCHEME)?.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(prefix, 12) && hex(secret, 64)).then_some(prefix)
}

/// True when `bearer` is a secret of `record` still in force and the key has not expired.
pub fn verify(record: &KeyRecord, bearer: &str, now: DateTime<Utc>) -> bool {
    if record.expires_at.is_some_and(|at| at <= now) {
        return false;
    }
    let presented = digest_hex(bearer);
    // Every secret is compared, matching or not, so timing says nothing about which one.
    record.secrets.iter().fold(false, |found, secret| {
        let same: bool = presented.as_bytes().ct_eq(secret.digest.as_bytes()).into();
        found | (same && secret.retires_at.is_none_or(|at| at > now))
    })
}

pub fn limits(record: &KeyRecord) -> KeyLimits {
    KeyLimits {
        rpm: record.rate_limit_rpm,
        tpm: record.rate_limit_tpm,
        daily_budget_nano_usd: record.daily_budget_usd.map(usd_to_nano),
    }
}

pub fn caller(record: &KeyRecord) -> Caller {
    Caller {
        tenant: record.tenant.clone(),
        key_name: record.name.clone(),
        key_id: record.key_id.clone(),
        limits: limits(record),
        session_scope: None,
    }
}

/// A rotated record: a new current secret, the old ones retiring after `grace`; secrets
/// whose grace already ended are dropped. Returns the record and the new plaintext.
pub fn rotate(record: &KeyRecord, grace: Duration, now: DateTime<Utc>) -> (KeyRecord, String) {
    let fresh = generate(now);
    let mut rotated = record.clone();
    rotated
        .secrets
        .retain(|s| s.retires_at.is_none_or(|at| at > now));
    for old in &mut rotated.secrets {
        let ends = now + grace;
        old.retires_at = Some(old.retires_at.map_or(ends, |at| at.min(ends)));
    }
    rotated.secrets.push(fresh.stored);
    rotated.revision += 1;
    (rotated, fresh.plaintext)
}

pub fn usd_to_nano(usd: f64) -> u64 {
    (usd * 1e9).round().max(0.0) as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn record(secret: SecretDigest) -> KeyRecord {
        KeyRecord {
            key_id: new_key_id(),
            name: "n".into(),
            tenant: "t".into(),
            rate_limit_rpm: None,
            rate_limit_tpm: None,
            daily_budget_usd: Some(1.5),
            expires_at: None,
            created_at: Utc::now(),
            revision: 1,
            secrets: vec![secret],
        }
    }

    #[test]
    fn a_key_verifies_and_its_digest_is_all_that_is_kept() {
        let now = Utc::now();
        let key = generate(now);
        assert_eq!(prefix_of(&key.plaintext), Some(key.stored.prefix.as_str()));
        let stored = serde_json::to_string(&key.stored).unwrap();
        assert!(!stored.contains(&key.plaintext[16..]));
        let rec = record(key.stored);
        assert!(verify(&rec, &key.plaintext, now));
        let (head, last) = key.plaintext.split_at(key.plaintext.len() - 1);
        // Swap the last character for a different one, whatever it was.
        let tampered = format!("{head}{}", if last == "0" { "1" } else { "0" });
        assert_ne!(tampered, key.plaintext);
        assert!(!verify(&rec, &tampered, now));
        assert_eq!(limits(&rec).daily_budget_nano_usd, Some(1_500_000_000));
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_grace_period_only() {
        let now = Utc::now();
        let old = generate(now);
        let (rotated, new) = rotate(&record(old.stored), Duration::seconds(60), now);
        assert!(verify(&rotated, &new, now));
        assert!(verify(
            &rotated,
            &old.plaintext,
            now + Duration::seconds(59)
        ));
        assert!(!verify(
            &rotated,
            &old.plaintext,
            now + Duration::seconds(61)
        ));
        let (again, _) = rotate(
            &rotated,
            Duration::seconds(600),
            now + Duration::seconds(61),
        );
        assert_eq!(again.secrets.len(), 2, "the retired secret is dropped");
    }

    #[test]
    fn malformed_bearers_have_no_prefix() {
        for bad in ["", "sr_", "sr_abc_def", "static-key", "sr_0123456789ab_xyz"] {
            assert_eq!(prefix_of(bad), None, "{bad}");
        }
    }
}
