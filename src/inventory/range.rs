//! Host ranges: `proxy[1:3]`, `proxy[01:10:2]`, `db-[a:c]`.

use super::InventoryError;

/// Expands one host name with an optional `[start:end(:step)]` range into the host names.
pub fn expand_host_range(name: &str) -> Result<Vec<String>, InventoryError> {
    let (Some(open), Some(close)) = (name.find('['), name.find(']')) else {
        return Ok(vec![name.to_string()]);
    };
    if close < open {
        return Err(InventoryError(format!("bad host range in '{name}'")));
    }
    let (head, body, tail) = (&name[..open], &name[open + 1..close], &name[close + 1..]);
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(InventoryError(format!(
            "bad host range '[{body}]' in '{name}': expected [start:end] or [start:end:step]"
        )));
    }
    let step: usize = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| InventoryError(format!("bad step in host range '{name}'")))?,
        None => 1,
    };
    let mut out = Vec::new();
    let (a, b) = (parts[0], parts[1]);
    if let (Ok(s), Ok(e)) = (a.parse::<u64>(), b.parse::<u64>()) {
        if s > e {
            return Err(InventoryError(format!(
                "host range '{name}' ends before it starts"
            )));
        }
        let width = if a.starts_with('0') && a.len() > 1 {
            a.len()
        } else {
            0
        };
        for i in (s..=e).step_by(step) {
            for rest in expand_host_range(tail)? {
                out.push(format!("{head}{i:0width$}{rest}"));
            }
        }
    } else if a.len() == 1 && b.len() == 1 && a <= b {
        let (s, e) = (a.as_bytes()[0], b.as_bytes()[0]);
        for c in (s..=e).step_by(step) {
            for rest in expand_host_range(tail)? {
                out.push(format!("{head}{}{rest}", c as char));
            }
        }
    } else {
        return Err(InventoryError(format!(
            "bad host range '[{body}]' in '{name}'"
        )));
    }
    Ok(out)
}
