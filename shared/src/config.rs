//! Typed configuration helpers: every function parses its `Config` once from a variable source
//! (the process environment in Lambda, the template plus overrides in the local host).

use std::str::FromStr;

/// A source of configuration variables.
pub trait VarSource {
    /// The variable's value, if set.
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl VarSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> VarSource for F {
    fn var(&self, key: &str) -> Option<String> {
        self(key)
    }
}

/// A missing or malformed variable, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Required and absent or empty.
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    /// Present but unparsable.
    #[error("invalid value for environment variable {key}: {reason}")]
    Invalid {
        /// Variable name.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A required, non-empty variable.
pub fn required(src: &dyn VarSource, key: &'static str) -> Result<String, ConfigError> {
    match src.var(key) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(ConfigError::Missing(key)),
    }
}

/// An optional variable; empty counts as unset.
pub fn optional(src: &dyn VarSource, key: &str) -> Option<String> {
    src.var(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A parsed variable with a default.
pub fn parsed_or<T: FromStr>(src: &dyn VarSource, key: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match optional(src, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid { key, reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_variables_are_named() {
        let src = |k: &str| match k {
            "A" => Some("x".to_owned()),
            "N" => Some("12x".to_owned()),
            "E" => Some("  ".to_owned()),
            _ => None,
        };
        assert_eq!(required(&src, "A").expect("set"), "x");
        assert!(required(&src, "E").unwrap_err().to_string().contains("E"));
        assert!(required(&src, "B").unwrap_err().to_string().contains("missing environment variable B"));
        assert_eq!(parsed_or(&src, "M", 5u64).expect("default"), 5);
        assert!(parsed_or(&src, "N", 5u64).unwrap_err().to_string().contains("N"));
    }
}
