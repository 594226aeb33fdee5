//! Text that people read: integration names typed by a user, language names reported by GitLab.
//! Characters that change how the surrounding text is displayed without being visible
//! themselves (bidirectional controls, zero-width characters) can make one name look like
//! another or reorder what follows it on screen, so they are refused in names a user types and
//! stripped from names GitLab reports.
//!
//! This is not escaping: a frontend must still escape every string for where it puts it (HTML
//! text and attributes, Markdown, URLs), because names may contain `<`, `&`, quotes and
//! Markdown syntax, which are legitimate.

/// Bidirectional formatting characters (Unicode's `Bidi_Control` property) and the invisible
/// format characters that join, separate or hide text: zero-width space, non-joiner and
/// joiner, word joiner, the invisible math operators, byte order mark and Mongolian vowel
/// separator, plus the soft hyphen.
pub fn is_hidden_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
            | '\u{180E}'
            | '\u{00AD}'
    )
}

/// Whether `s` contains a control character or a [hidden format character](is_hidden_format).
pub fn has_hidden_characters(s: &str) -> bool {
    s.chars().any(|c| c.is_control() || is_hidden_format(c))
}

/// `s` without control and [hidden format characters](is_hidden_format).
pub fn strip_hidden_characters(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() && !is_hidden_format(*c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_zero_width_characters_are_found_and_stripped() {
        // "Trojan Source": a right-to-left override makes "gnp.exe" read as "exe.png".
        for hostile in ["prod\u{202E}gnp.exe", "ad\u{200B}min", "\u{FEFF}GitLab", "a\u{2066}b\u{2069}", "x\u{061C}"] {
            assert!(has_hidden_characters(hostile), "{hostile:?}");
            let clean = strip_hidden_characters(hostile);
            assert!(!has_hidden_characters(&clean), "{clean:?}");
            assert!(clean.chars().count() < hostile.chars().count());
        }
        for fine in ["GitLab (prod)", "C++", "Jupyter Notebook", "Équipe sécurité", "開発", "<b>&amp;</b>"] {
            assert!(!has_hidden_characters(fine), "{fine:?}");
            assert_eq!(strip_hidden_characters(fine), fine);
        }
        assert_eq!(strip_hidden_characters("Ru\u{200D}st\n"), "Rust");
    }
}
