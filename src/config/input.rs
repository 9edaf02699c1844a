//! Checks of the raw configuration before it meets the typed tree: nesting depth (the YAML
//! parser is quadratic on deep nesting), duplicate keys, and `streams` entry by entry.

use super::{redact_values, NamedStreamLoose, Problem, StreamConfig};

/// serde_yaml's message has the line and column, never a value (a duplicate key names the key).
pub(super) fn yaml_error(e: &serde_yaml::Error, text: &str) -> String {
    let msg = e.to_string();
    const DUP: &str = "duplicate entry with key ";
    if let Some(pos) = msg.find(DUP) {
        // serde_yaml names the key (and where its mapping starts), not where the second one is.
        let rest = &msg[pos + DUP.len()..];
        let key = rest.strip_prefix('"').and_then(|r| r.split('"').next()).unwrap_or(rest);
        let section = msg[..pos].trim_end_matches([':', ' ']);
        let place = match duplicate_line(text, key) {
            Some(line) => format!("line {line}: "),
            None => String::new(),
        };
        let inside = if section.is_empty() { String::new() } else { format!(" in `{section}`") };
        return format!("{place}duplicate key `{key}`{inside} (each key may appear once in its section)");
    }
    format!("not valid YAML: {msg}")
}

/// The line of the first repeated `key:` within one block mapping (same indentation, same parent),
/// or else the first line that holds `key:` twice (a flow mapping).
fn duplicate_line(text: &str, key: &str) -> Option<usize> {
    let mut levels: Vec<(usize, Vec<&str>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        while levels.last().is_some_and(|(i, _)| *i > indent) {
            levels.pop();
        }
        if body.starts_with("- ") {
            // A new list item starts a new mapping.
            levels.retain(|(i, _)| *i < indent);
            continue;
        }
        let Some((k, _)) = body.split_once(':') else { continue };
        let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
        match levels.last_mut() {
            Some((i, keys)) if *i == indent => {
                if k == key && keys.contains(&k) {
                    return Some(n + 1);
                }
                keys.push(k);
            }
            _ => levels.push((indent, vec![k])),
        }
    }
    let pat = format!("{key}:");
    text.lines().position(|l| l.matches(&pat).count() > 1).map(|n| n + 1)
}

/// The first line where maps and lists nest deeper than `max`, counting flow brackets and block
/// indentation. Runs in one pass: the YAML parser takes quadratic time on deep flow nesting.
pub(super) fn too_deep(text: &str, max: usize) -> Option<usize> {
    let mut flow: usize = 0;
    let mut indents: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if flow == 0 && !body.is_empty() && !body.starts_with('#') {
            let indent = line.len() - body.len();
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let mut dashes = 0;
        let mut rest = body;
        while let Some(r) = rest.strip_prefix("- ") {
            dashes += 1;
            rest = r.trim_start_matches(' ');
        }
        let mut quote: Option<char> = None;
        let mut deepest_flow = flow;
        for c in rest.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    deepest_flow = deepest_flow.max(flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        if indents.len() + dashes + deepest_flow > max {
            return Some(n + 1);
        }
    }
    None
}

/// Checks `streams` entry by entry, so each problem names the stream and field (the list and map
/// forms are otherwise told apart by trying both, which loses the reason). Bad entries are removed.
pub(super) fn check_streams(root: &mut serde_json::Value, problems: &mut Vec<Problem>) {
    fn why(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
        let p = e.path().to_string();
        (if p == "." { String::new() } else { format!(".{p}") }, redact_values(&e.inner().to_string()))
    }
    let Some(streams) = root.get_mut("streams") else { return };
    match streams {
        serde_json::Value::Object(map) => {
            let mut bad = Vec::new();
            for (name, entry) in map.iter() {
                if let Err(e) = serde_path_to_error::deserialize::<_, StreamConfig>(entry) {
                    let (sub, why) = why(&e);
                    let why = if entry.is_object() { why } else { "expected {path, on_demand, linger_secs}".into() };
                    problems.push(Problem { path: format!("streams.{name}{sub}"), why });
                    bad.push(name.clone());
                }
            }
            for name in bad {
                map.remove(&name);
            }
        }
        serde_json::Value::Array(list) => {
            let mut keep = Vec::new();
            for (i, entry) in list.drain(..).enumerate() {
                let label = match entry.get("name").and_then(|n| n.as_str()) {
                    Some(n) => format!("streams[{i}] ({n})"),
                    None => format!("streams[{i}]"),
                };
                match serde_path_to_error::deserialize::<_, NamedStreamLoose>(&entry) {
                    Ok(_) => keep.push(entry),
                    Err(e) => {
                        let (sub, why) = why(&e);
                        let why = if entry.is_object() {
                            why
                        } else {
                            "expected {name, path, on_demand, linger_secs}".into()
                        };
                        problems.push(Problem { path: format!("{label}{sub}"), why });
                    }
                }
            }
            *list = keep;
        }
        serde_json::Value::Null => {}
        _ => {
            problems.push(Problem {
                path: "streams".into(),
                why: "expected a map of name -> {path, on_demand, linger_secs} or a list of {name, path, on_demand, \
                      linger_secs}"
                    .into(),
            });
            if let Some(m) = root.as_object_mut() {
                m.remove("streams");
            }
        }
    }
}
