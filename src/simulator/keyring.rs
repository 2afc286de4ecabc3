//! The AccessKeys the simulator accepts: the configured long-lived one, and the temporary ones its
//! STS and metadata faces issue, each refused after its expiry as ECS refuses an expired token.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::aliyun::credentials::credential::Credential;
use crate::aliyun::signer::{SigningKey, v3};

/// What a request's AccessKeyId must come with.
#[derive(Clone)]
pub struct Key {
    /// The secret as a V1 (HMAC-SHA1) key.
    pub signing: SigningKey,
    /// The secret as a V3 (HMAC-SHA256) key.
    pub v3: v3::SigningKey,
    /// The token requests must carry, for a temporary key.
    pub security_token: Option<String>,
    /// When a temporary key stops being accepted.
    pub expiration: Option<SystemTime>,
}

/// Why a key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Never issued.
    Unknown,
    /// Issued, and past its expiry.
    Expired,
}

/// The long-lived credential and every temporary one issued.
#[derive(Debug)]
pub struct Keyring {
    base: Credential,
    base_key: SigningKey,
    base_v3: v3::SigningKey,
    issued: Mutex<HashMap<String, Key>>,
    accepted: Mutex<HashSet<String>>,
    sequence: AtomicU64,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Keyring {
    /// A keyring accepting `base`.
    pub fn new(base: Credential) -> Self {
        Self {
            base_key: SigningKey::new(base.access_key_secret()),
            base_v3: v3::SigningKey::new(base.access_key_secret()),
            base,
            issued: Mutex::default(),
            accepted: Mutex::default(),
            sequence: AtomicU64::new(0),
        }
    }

    /// The long-lived credential.
    pub fn base(&self) -> &Credential {
        &self.base
    }

    /// The key for `id` at `now`.
    pub fn lookup(&self, id: &str, now: SystemTime) -> Result<Key, Refused> {
        if id == self.base.access_key_id() {
            return Ok(Key {
                signing: self.base_key.clone(),
                v3: self.base_v3.clone(),
                security_token: self.base.security_token().map(str::to_owned),
                expiration: None,
            });
        }
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let key = issued.get(id).ok_or(Refused::Unknown)?;
        match key.expiration {
            Some(at) if now >= at => Err(Refused::Expired),
            _ => Ok(key.clone()),
        }
    }

    /// Issues a temporary credential for `tag` (who asked, for which role), valid for `lifetime`
    /// from now, to the second as the expiry is written. Its id is `STS.<tag>.<sequence>`.
    pub fn issue(&self, tag: &str, lifetime: Duration) -> Credential {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        let id = format!("STS.{tag}.{n:06}");
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let token = format!("CAIS{}", uuid::Uuid::new_v4().simple());
        let whole_seconds = (SystemTime::now() + lifetime)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expiration = UNIX_EPOCH + Duration::from_secs(whole_seconds);
        let key = Key {
            signing: SigningKey::new(&secret),
            v3: v3::SigningKey::new(&secret),
            security_token: Some(token.clone()),
            expiration: Some(expiration),
        };
        self.issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), key);
        Credential::new(id, secret, Some(token)).expiring_at(expiration)
    }

    /// Notes that `id` signed a request ECS authenticated (whatever the action then answered).
    pub fn note_accepted(&self, id: &str) {
        if id != self.base.access_key_id() {
            let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            if !accepted.contains(id) {
                accepted.insert(id.to_owned());
            }
        }
    }

    /// The temporary AccessKeyIds that signed authenticated ECS requests.
    pub fn temporary_ids_accepted(&self) -> HashSet<String> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
