//! Identifier newtypes: the team taken from the authorizer claims and the opaque integration id.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The tenant, taken only from the authorizer claims.
///
/// Restricted to a conservative alphabet because it becomes part of DynamoDB keys
/// (`TEAM#<team>`), secret tags and log fields; a `#` would let one team's keys collide with
/// another's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TeamId(String);

impl TeamId {
    /// Validates a team identifier: 1-128 characters of `[A-Za-z0-9._:@|-]`.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'|'));
        ok.then(|| Self(raw.to_owned()))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TeamId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| "invalid team id".to_owned())
    }
}

impl From<TeamId> for String {
    fn from(value: TeamId) -> Self {
        value.0
    }
}

impl fmt::Display for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An integration's id: 128 random bits as 32 lower-case hex characters.
///
/// It appears in the webhook URL, so it must be unguessable (security policy 8.6.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IntegrationId(String);

impl IntegrationId {
    /// A fresh id from `rand`'s thread-local CSPRNG (ChaCha, seeded from the OS).
    pub fn generate() -> Self {
        Self(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// Accepts exactly 32 lower-case hex characters.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IntegrationId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| "invalid integration id".to_owned())
    }
}

impl From<IntegrationId> for String {
    fn from(value: IntegrationId) -> Self {
        value.0
    }
}

impl fmt::Display for IntegrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_ids_reject_key_separators_and_oversize_values() {
        for bad in ["", "a#b", "a b", "ä", &"x".repeat(129), "a/b", "a\nb"] {
            assert!(TeamId::parse(bad).is_none(), "{bad:?} accepted");
        }
        for good in ["team-1", "org:acme", "a.b_c", &"x".repeat(128)] {
            assert!(TeamId::parse(good).is_some(), "{good:?} rejected");
        }
    }

    #[test]
    fn generated_integration_ids_are_distinct_and_parse_back() {
        let a = IntegrationId::generate();
        let b = IntegrationId::generate();
        assert_ne!(a, b);
        assert_eq!(IntegrationId::parse(a.as_str()), Some(a.clone()));
        assert!(IntegrationId::parse(&a.as_str().to_uppercase()).is_none());
        assert!(IntegrationId::parse("abc").is_none());
    }
}
