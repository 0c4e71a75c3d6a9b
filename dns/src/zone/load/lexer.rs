//! Splitting master-file bytes into entries (RFC 1035 section 5.1).
//!
//! An entry is one line, or several joined by parentheses; its tokens are separated by blanks.
//! Quotes group blanks into one token, `;` starts a comment, and a backslash escapes the byte
//! after it. Escapes are left in the token (`\032`, `\.`): only the field parser knows whether
//! the token is a name, where `\.` is a byte of a label, or a character-string. The lexer works
//! on bytes, since a zone file may hold any octet inside a quoted string.

/// One token of an entry.
#[derive(Debug, Clone, Copy)]
pub struct Token<'a> {
    /// The bytes as written, without the surrounding quotes of a quoted token.
    pub text: &'a [u8],
    /// Written between double quotes.
    pub quoted: bool,
    /// The line the token starts on.
    pub line: u32,
}

impl Token<'_> {
    /// The token for messages (invalid UTF-8 replaced).
    pub fn show(&self) -> String {
        String::from_utf8_lossy(self.text).into_owned()
    }
}

/// Where an entry starts.
#[derive(Debug, Clone, Copy)]
pub struct EntryStart {
    pub line: u32,
    /// The line starts with a blank: the owner is the previous record's.
    pub blank_owner: bool,
}

/// Reads entries from the text of one file.
#[derive(Debug)]
pub struct Lexer<'a> {
    src: &'a [u8],
    at: usize,
    line: u32,
}

/// A syntax error: the line and the reason.
pub type LexError = (u32, String);

impl<'a> Lexer<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        Lexer {
            src,
            at: 0,
            line: 1,
        }
    }

    /// The next entry's tokens into `tokens`; `None` at the end of the file.
    pub fn next_entry(
        &mut self,
        tokens: &mut Vec<Token<'a>>,
    ) -> Result<Option<EntryStart>, LexError> {
        let bytes = self.src;
        loop {
            tokens.clear();
            if self.at >= bytes.len() {
                return Ok(None);
            }
            let start = EntryStart {
                line: self.line,
                blank_owner: matches!(bytes[self.at], b' ' | b'\t'),
            };
            let mut depth = 0u32;
            let mut open_line = self.line;
            loop {
                let Some(&byte) = bytes.get(self.at) else {
                    if depth > 0 {
                        return Err((open_line, "unbalanced parentheses".to_string()));
                    }
                    break;
                };
                match byte {
                    b' ' | b'\t' | b'\r' => self.at += 1,
                    b';' => {
                        while self.at < bytes.len() && bytes[self.at] != b'\n' {
                            self.at += 1;
                        }
                    }
                    b'\n' => {
                        self.at += 1;
                        self.line += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b'(' => {
                        if depth == 0 {
                            open_line = self.line;
                        }
                        depth += 1;
                        self.at += 1;
                    }
                    b')' => {
                        if depth == 0 {
                            return Err((self.line, "\")\" without \"(\"".to_string()));
                        }
                        depth -= 1;
                        self.at += 1;
                    }
                    b'"' => {
                        let line = self.line;
                        self.at += 1;
                        let begin = self.at;
                        self.skip_quoted()?;
                        tokens.push(Token {
                            text: &bytes[begin..self.at],
                            quoted: true,
                            line,
                        });
                        // The closing quote.
                        self.at += 1;
                    }
                    _ => {
                        let begin = self.at;
                        while let Some(&b) = bytes.get(self.at) {
                            match b {
                                b'\\' => self.at = (self.at + 2).min(bytes.len()),
                                // `key="quoted value"` (SVCB parameters) stays one token.
                                b'"' => {
                                    self.at += 1;
                                    self.skip_quoted()?;
                                    self.at += 1;
                                }
                                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' => break,
                                _ => self.at += 1,
                            }
                        }
                        tokens.push(Token {
                            text: &bytes[begin..self.at],
                            quoted: false,
                            line: self.line,
                        });
                    }
                }
            }
            if !tokens.is_empty() {
                return Ok(Some(start));
            }
        }
    }

    /// Moves to the closing quote of a quoted string whose opening quote is behind.
    fn skip_quoted(&mut self) -> Result<(), LexError> {
        loop {
            match self.src.get(self.at) {
                None | Some(b'\n') => {
                    return Err((self.line, "unterminated quoted string".to_string()));
                }
                Some(b'\\') => {
                    if self.src.get(self.at + 1) == Some(&b'\n') {
                        self.line += 1;
                    }
                    self.at += 2;
                }
                Some(b'"') => return Ok(()),
                Some(_) => self.at += 1,
            }
        }
    }
}

/// The bytes a token stands for, escapes resolved.
pub fn unescape(text: &[u8]) -> Result<Vec<u8>, crate::wire::name::NameError> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        if text[at] == b'\\' {
            let (byte, used) = crate::wire::name::unescape_at(&text[at..])?;
            out.push(byte);
            at += used;
        } else {
            out.push(text[at]);
            at += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Line, blank owner, and (token, quoted) of each entry.
    type Entry = (u32, bool, Vec<(String, bool)>);

    fn entries(src: &str) -> Vec<Entry> {
        let mut lexer = Lexer::new(src.as_bytes());
        let mut tokens = Vec::new();
        let mut out = Vec::new();
        while let Some(start) = lexer.next_entry(&mut tokens).unwrap() {
            out.push((
                start.line,
                start.blank_owner,
                tokens.iter().map(|t| (t.show(), t.quoted)).collect(),
            ));
        }
        out
    }

    #[test]
    fn entries_join_parentheses_and_skip_comments() {
        let got = entries("a A 1 ; c\n\n  B ( x\n y ) z\n\"q ;\" k=\"v w\" \\\" e\\ f\n");
        let plain = |s: &str| (s.to_string(), false);
        assert_eq!(
            got,
            vec![
                (1, false, vec![plain("a"), plain("A"), plain("1")]),
                (
                    3,
                    true,
                    vec![plain("B"), plain("x"), plain("y"), plain("z")]
                ),
                (
                    5,
                    false,
                    vec![
                        ("q ;".to_string(), true),
                        plain("k=\"v w\""),
                        plain("\\\""),
                        plain("e\\ f"),
                    ]
                ),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let error = |src: &str| {
            let mut tokens = Vec::new();
            let mut lexer = Lexer::new(src.as_bytes());
            loop {
                match lexer.next_entry(&mut tokens) {
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    Err(e) => return Some(e),
                }
            }
        };
        assert_eq!(
            error("a\nb ( c\n"),
            Some((2, "unbalanced parentheses".into()))
        );
        assert_eq!(error("a )\n"), Some((1, "\")\" without \"(\"".into())));
        assert_eq!(
            error("a\nb \"open\n"),
            Some((2, "unterminated quoted string".into()))
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(b"a\\032b\\.\\\\").unwrap(), b"a b.\\");
        assert_eq!(unescape(b"\\255").unwrap(), [255]);
        assert!(matches!(
            unescape(b"\\256"),
            Err(crate::wire::name::NameError::EscapeAbove255(256))
        ));
        assert!(unescape(b"\\25").is_err());
        assert!(unescape(b"x\\").is_err());
    }
}
