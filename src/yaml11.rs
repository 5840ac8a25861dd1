//! YAML 1.1 booleans, as Ansible reads YAML: an unquoted `yes`/`no`/`on`/`off` (any of
//! their capitalisations PyYAML knows) is a boolean in playbooks, inventories and vars
//! files, while `"yes"` in quotes stays a string.
//!
//! WHY rewrite the text: serde_yaml_ng reads YAML 1.2, where `yes` is a string, and by the
//! time a value reaches a visitor it no longer tells whether it was quoted. libyaml's event
//! stream does tell (the scalar's style and tag), so the plain-style boolean values are
//! found there and rewritten to `true`/`false` before the real parse. Mapping keys are left
//! alone (JSON keys are strings anyway). Columns after a rewritten word on the same line
//! move by a character or three; lines are unchanged.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_sys;

/// The YAML 1.1 spellings (PyYAML's resolver) that YAML 1.2 reads as strings.
fn yaml11_bool(word: &[u8]) -> Option<bool> {
    match word {
        b"yes" | b"Yes" | b"YES" | b"on" | b"On" | b"ON" => Some(true),
        b"no" | b"No" | b"NO" | b"off" | b"Off" | b"OFF" => Some(false),
        _ => None,
    }
}

/// `text` with every plain-style YAML 1.1 boolean value spelt `true`/`false`. Text that
/// does not parse is returned unchanged (the real parse reports the error).
pub fn normalize(text: &str) -> Cow<'_, str> {
    // Cheap test first: most files have no such word at all.
    let lower = text.to_ascii_lowercase();
    if !["yes", "no", "on", "off"].iter().any(|w| lower.contains(w)) {
        return Cow::Borrowed(text);
    }
    let spans = match bool_spans(text) {
        Some(s) if !s.is_empty() => s,
        _ => return Cow::Borrowed(text),
    };
    let mut out = String::with_capacity(text.len() + spans.len() * 3);
    let mut at = 0;
    for (start, end, b) in spans {
        out.push_str(&text[at..start]);
        out.push_str(if b { "true" } else { "false" });
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Where a mapping's next node is: a key or a value.
enum Ctx {
    Map { key_next: bool },
    Seq,
}

/// Byte ranges of plain, untagged boolean values, in order; `None` on a parse error.
fn bool_spans(text: &str) -> Option<Vec<(usize, usize, bool)>> {
    let mut spans = Vec::new();
    let mut stack: Vec<Ctx> = Vec::new();
    // SAFETY: the parser lives in a Box (libyaml keeps pointers into its own buffers, not
    // to itself, but a stable address costs nothing), is initialised before use and deleted
    // on every path; every event is deleted after it is read; `text` outlives the parser.
    unsafe {
        let mut parser: Box<MaybeUninit<unsafe_sys::yaml_parser_t>> =
            Box::new(MaybeUninit::uninit());
        let p = parser.as_mut_ptr();
        if unsafe_sys::yaml_parser_initialize(p).fail {
            return None;
        }
        unsafe_sys::yaml_parser_set_encoding(p, unsafe_sys::YAML_UTF8_ENCODING);
        unsafe_sys::yaml_parser_set_input_string(p, text.as_ptr(), text.len() as u64);
        let ok = loop {
            let mut event = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
            let e = event.as_mut_ptr();
            if unsafe_sys::yaml_parser_parse(p, e).fail {
                break false;
            }
            let kind = (*e).type_;
            let is_node = matches!(
                kind,
                unsafe_sys::YAML_SCALAR_EVENT
                    | unsafe_sys::YAML_ALIAS_EVENT
                    | unsafe_sys::YAML_MAPPING_START_EVENT
                    | unsafe_sys::YAML_SEQUENCE_START_EVENT
            );
            let mut is_key = false;
            if is_node {
                if let Some(Ctx::Map { key_next }) = stack.last_mut() {
                    is_key = *key_next;
                    *key_next = !*key_next;
                }
            }
            match kind {
                unsafe_sys::YAML_SCALAR_EVENT => {
                    let s = (*e).data.scalar;
                    if !is_key && s.style == unsafe_sys::YAML_PLAIN_SCALAR_STYLE && s.tag.is_null()
                    {
                        let word = std::slice::from_raw_parts(s.value, s.length as usize);
                        if let Some(b) = yaml11_bool(word) {
                            let start = (*e).start_mark.index as usize;
                            let end = (*e).end_mark.index as usize;
                            spans.push((start, end, b));
                        }
                    }
                }
                unsafe_sys::YAML_MAPPING_START_EVENT => stack.push(Ctx::Map { key_next: true }),
                unsafe_sys::YAML_SEQUENCE_START_EVENT => stack.push(Ctx::Seq),
                unsafe_sys::YAML_MAPPING_END_EVENT | unsafe_sys::YAML_SEQUENCE_END_EVENT => {
                    stack.pop();
                }
                _ => {}
            }
            let end = kind == unsafe_sys::YAML_STREAM_END_EVENT;
            unsafe_sys::yaml_event_delete(e);
            if end {
                break true;
            }
        };
        unsafe_sys::yaml_parser_delete(p);
        // Only spans that hold exactly the word (a sanity check on the byte offsets).
        let sound = spans.iter().all(|&(s, e, _)| {
            text.get(s..e)
                .is_some_and(|w| yaml11_bool(w.as_bytes()).is_some())
        });
        (ok && sound).then_some(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_yaml11_booleans_become_booleans_quoted_ones_and_keys_stay() {
        let text = "a: yes\nb: \"yes\"\nc: 'no'\nd: Off\ne: [on, NO, nope]\nyes: 1\nf: !!str no\ng: |\n  x: yes\nh: yesterday\n";
        let out = normalize(text);
        let v: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(v["a"], true);
        assert_eq!(v["b"], "yes");
        assert_eq!(v["c"], "no");
        assert_eq!(v["d"], false);
        assert_eq!(v["e"], serde_json::json!([true, false, "nope"]));
        assert_eq!(v["yes"], 1);
        assert_eq!(v["f"], "no");
        assert_eq!(v["g"], "x: yes\n");
        assert_eq!(v["h"], "yesterday");
        assert!(matches!(normalize("a: 1\n"), Cow::Borrowed(_)));
        assert!(matches!(normalize("a: [yes\n"), Cow::Borrowed(_)));
    }
}
