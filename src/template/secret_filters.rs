//! The filters that change a string's text, wrapped so a secret keeps being masked after them.
//!
//! WHY: masking finds secrets by their text. `{{ password | b64encode }}` in a config, or a
//! password spliced into a URL by `regex_replace`, would print a text the redactor has never
//! seen. Each wrapper hands its input and output to [`Redactor::taint`]: when the input held a
//! known secret and the output no longer shows it, the output becomes a secret too. (Whole-
//! string re-encodings are also masked by the forms `Redactor::add` registers up front, for
//! text rendered before the secret was known.)

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error};

use super::filters;
use crate::secrets::Redactor;

pub(super) fn register(env: &mut Environment<'static>, redactor: &Redactor) {
    let r = redactor.clone();
    env.add_filter("b64encode", move |s: String| {
        let out = filters::b64encode(s.clone());
        r.taint(&s, &out);
        out
    });
    let r = redactor.clone();
    env.add_filter(
        "regex_replace",
        move |s: String, pattern: String, replacement: Option<String>, kwargs: Kwargs| {
            let out = filters::regex_replace(s.clone(), pattern, replacement, kwargs)?;
            r.taint(&s, &out);
            Ok::<_, Error>(out)
        },
    );
    let r = redactor.clone();
    env.add_filter("to_json", move |v: &Value, kwargs: Kwargs| {
        let out = filters::to_json(v, kwargs)?;
        r.taint(&v.to_string(), &out);
        Ok::<_, Error>(out)
    });
    let r = redactor.clone();
    env.add_filter("to_nice_json", move |v: &Value, kwargs: Kwargs| {
        let out = filters::to_nice_json(v, kwargs)?;
        r.taint(&v.to_string(), &out);
        Ok::<_, Error>(out)
    });
    let r = redactor.clone();
    env.add_filter("quote", move |s: String| {
        let out = filters::quote(s.clone());
        r.taint(&s, &out);
        out
    });
    let r = redactor.clone();
    env.add_filter("upper", move |s: String| {
        let out = s.to_uppercase();
        r.taint(&s, &out);
        out
    });
    let r = redactor.clone();
    env.add_filter("lower", move |s: String| {
        let out = s.to_lowercase();
        r.taint(&s, &out);
        out
    });
    let r = redactor.clone();
    env.add_filter("urlencode", move |v: &Value| {
        let out = minijinja::filters::urlencode(v)?;
        r.taint(&v.to_string(), &out);
        Ok::<_, Error>(out)
    });
}
