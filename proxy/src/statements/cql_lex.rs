//! A small CQL tokenizer: just enough to find function calls, bind markers and table names
//! without being fooled by string literals, quoted identifiers or comments.
//!
//! Written by hand because the only complete CQL grammars are ANTLR ones (Java/Go); what the
//! proxy needs (`now()` sites, `?`/`:name` markers, the table after INSERT INTO / UPDATE /
//! FROM) is a flat scan over tokens, and a full parser would cost more than the request.

/// What a token is. Literals are kept as one token so their content is never looked into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unquoted identifier, keyword or number-like word (`[A-Za-z0-9_]+`).
    Word,
    /// `"Quoted"` identifier.
    QuotedIdent,
    /// `'string'` or `$$string$$` literal.
    Str,
    /// Any other single character (`(`, `)`, `,`, `.`, `?`, `:`, `=`, ...).
    Punct(char),
}

/// One token: its kind and byte span in the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }

    /// Is this the unquoted word `w` (case-insensitive, as CQL keywords and identifiers are)?
    pub fn is_word(&self, src: &str, w: &str) -> bool {
        self.kind == Kind::Word && self.text(src).eq_ignore_ascii_case(w)
    }

    pub fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }

    /// The identifier's name as Cassandra resolves it: unquoted names fold to lower case,
    /// quoted ones keep their case (with `""` unescaped).
    pub fn ident(&self, src: &str) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text(src).to_ascii_lowercase()),
            Kind::QuotedIdent => {
                let t = self.text(src);
                let inner = t.get(1..t.len().saturating_sub(1)).unwrap_or("");
                Some(inner.replace("\"\"", "\""))
            }
            _ => None,
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Splits `src` into tokens, dropping whitespace and comments (`--`, `//`, `/* */`).
/// Unterminated literals or comments run to the end of the text (the cluster will refuse the
/// statement; the proxy must only never look inside them).
pub fn tokenize(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if (c == b'-' && b.get(i + 1) == Some(&b'-'))
            || (c == b'/' && b.get(i + 1) == Some(&b'/'))
        {
            i = src[i..].find('\n').map(|n| i + n + 1).unwrap_or(b.len());
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = src[i + 2..]
                .find("*/")
                .map(|n| i + 2 + n + 2)
                .unwrap_or(b.len());
        } else if c == b'\'' || c == b'"' {
            // '' (or "") inside the literal is an escaped quote, not its end.
            let start = i;
            i += 1;
            loop {
                match b.get(i) {
                    None => break,
                    Some(&q) if q == c => {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(_) => i += 1,
                }
            }
            let kind = if c == b'\'' {
                Kind::Str
            } else {
                Kind::QuotedIdent
            };
            out.push(Token {
                kind,
                start,
                end: i,
            });
        } else if c == b'$' && b.get(i + 1) == Some(&b'$') {
            let start = i;
            i = src[i + 2..]
                .find("$$")
                .map(|n| i + 2 + n + 2)
                .unwrap_or(b.len());
            out.push(Token {
                kind: Kind::Str,
                start,
                end: i,
            });
        } else if is_word_byte(c) {
            let start = i;
            while i < b.len() && is_word_byte(b[i]) {
                i += 1;
            }
            // Never split a multi-byte character: word bytes >= 0x80 cover whole characters.
            out.push(Token {
                kind: Kind::Word,
                start,
                end: i,
            });
        } else {
            let ch = src[i..].chars().next().unwrap_or('\0');
            out.push(Token {
                kind: Kind::Punct(ch),
                start: i,
                end: i + ch.len_utf8(),
            });
            i += ch.len_utf8();
        }
    }
    out
}

/// Reads a possibly keyspace-qualified name starting at token `i`:
/// `(keyspace, table, index after the name)`.
pub fn qualified_name(
    src: &str,
    toks: &[Token],
    i: usize,
) -> Option<(Option<String>, String, usize)> {
    let first = toks.get(i)?.ident(src)?;
    if toks.get(i + 1).is_some_and(|t| t.is_punct('.')) {
        if let Some(second) = toks.get(i + 2).and_then(|t| t.ident(src)) {
            return Some((Some(first), second, i + 3));
        }
    }
    Some((None, first, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, &str)> {
        tokenize(src)
            .into_iter()
            .map(|t| (t.kind, t.text(src)))
            .collect()
    }

    #[test]
    fn literals_comments_and_quoted_identifiers_are_opaque() {
        let src =
            "INSERT /* now() */ INTO \"My\"\"T\" (a) VALUES ('it''s now()', $$x$$) -- now()\n;";
        let k = kinds(src);
        assert_eq!(k[0], (Kind::Word, "INSERT"));
        assert_eq!(k[1], (Kind::Word, "INTO"));
        assert_eq!(k[2], (Kind::QuotedIdent, "\"My\"\"T\""));
        assert!(k.contains(&(Kind::Str, "'it''s now()'")));
        assert!(k.contains(&(Kind::Str, "$$x$$")));
        assert_eq!(k.last().unwrap(), &(Kind::Punct(';'), ";"));
        assert!(!k.iter().any(|(_, t)| t.eq_ignore_ascii_case("now")));
        assert_eq!(
            tokenize(src)[2].ident(src).as_deref(),
            Some("My\"T"),
            "quoted identifiers keep case, \"\" unescaped"
        );
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for src in ["'abc", "\"abc", "/* x", "$$ x", "a -- x", "é?ü", ""] {
            let _ = tokenize(src);
        }
    }

    #[test]
    fn qualified_names() {
        let src = "ks.\"T\" x";
        let t = tokenize(src);
        assert_eq!(
            qualified_name(src, &t, 0),
            Some((Some("ks".into()), "T".into(), 3))
        );
        let src = "Tab";
        assert_eq!(
            qualified_name(src, &tokenize(src), 0),
            Some((None, "tab".into(), 1))
        );
    }
}
