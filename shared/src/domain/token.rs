//! The GitLab token as it arrives in a request body: bounded, validated and kept secret.

use secrecy::{ExposeSecret, SecretString};

/// Why a token field was refused. Never carries the token itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenFieldError {
    /// Shorter than [`MIN_TOKEN_LEN`].
    #[error("the token is too short")]
    TooShort,
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is too long")]
    TooLong,
    /// Contains spaces, control characters or non-ASCII characters.
    #[error("the token contains characters that a GitLab token never has")]
    BadCharacters,
}

/// Shortest accepted token (security policy C).
pub const MIN_TOKEN_LEN: usize = 20;
/// Longest accepted token (security policy C).
pub const MAX_TOKEN_LEN: usize = 512;

/// Checks a token field: 20-512 bytes of printable ASCII (0x21-0x7E). Anything else cannot be a
/// GitLab token and could smuggle header separators into the `PRIVATE-TOKEN` header.
pub fn validate_token(raw: &SecretString) -> Result<(), TokenFieldError> {
    let token = raw.expose_secret();
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(TokenFieldError::BadCharacters);
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenFieldError::TooShort);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenFieldError::TooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str) -> Result<(), TokenFieldError> {
        validate_token(&SecretString::from(s.to_owned()))
    }

    #[test]
    fn accepts_real_token_shapes() {
        assert_eq!(check("glpat-abcdefghijklmnopqrst"), Ok(()));
        assert_eq!(check(&"a".repeat(512)), Ok(()));
        assert_eq!(check("gloas-0123456789abcdef0123"), Ok(()));
    }

    #[test]
    fn rejects_spaces_controls_non_ascii_and_bad_lengths() {
        assert_eq!(check("glpat-abcdefghij klmnopqrst"), Err(TokenFieldError::BadCharacters));
        assert_eq!(check("glpat-abcdefghijklmnopqrst\r\nX-Evil: 1"), Err(TokenFieldError::BadCharacters));
        assert_eq!(check("glpat-abcdefghijklmnopqrs\0"), Err(TokenFieldError::BadCharacters));
        assert_eq!(check("glpat-abcdefghijklmnopqrsté"), Err(TokenFieldError::BadCharacters));
        assert_eq!(check("\tglpat-abcdefghijklmnopqrst"), Err(TokenFieldError::BadCharacters));
        assert_eq!(check("short"), Err(TokenFieldError::TooShort));
        assert_eq!(check(""), Err(TokenFieldError::TooShort));
        assert_eq!(check(&"a".repeat(513)), Err(TokenFieldError::TooLong));
    }
}
