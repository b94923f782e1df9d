//! Target names (`run --name`, `soak --name`, app names in `plimsoll.toml`, `snapshot TARGET`):
//! they become parts of socket paths, series keys and metric labels, so they are held to a
//! conservative charset, checked before anything starts.

use crate::bounded::excerpt;

/// The longest name, in characters (an instance under `up` adds `-N`).
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// Letters, digits, `-`, `_` and `.` (not first), 1 to 64 characters; the error names the value
/// and what is allowed.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let problem = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_NAME_CHARS {
        Some(format!("it is longer than {MAX_NAME_CHARS} characters"))
    } else if name.starts_with('.') {
        Some("it starts with '.'".to_owned())
    } else {
        name.chars()
            .find(|&c| !allowed(c))
            .map(|c| format!("'{}' is not allowed", c.escape_default()))
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!(
            "invalid name '{}': {problem} (use letters, digits, '-', '_' and '.' not first, \
             at most {MAX_NAME_CHARS})",
            excerpt(name)
        )),
    }
}

/// [`check_name`] as a clap value parser.
pub(crate) fn parse_name(text: &str) -> Result<String, String> {
    check_name(text).map(|()| text.to_owned())
}

/// The default name of a command: its program's file name (`node` for `/usr/bin/node
/// server.js`), with what a name may not hold replaced by `-`; `fallback` when nothing is left.
pub(crate) fn name_of_command(command: &[String], fallback: &str) -> String {
    let program = command
        .first()
        .and_then(|c| std::path::Path::new(c).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    sanitize(&program, fallback)
}

/// `text` made a valid name: what a name may not hold replaced by `-`, no leading `.`, cut to
/// the length a name may have; `fallback` when nothing is left.
pub(crate) fn sanitize(text: &str, fallback: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_held_to_a_safe_charset() {
        for good in [
            "api",
            "leaky-api",
            "worker_2",
            "node.js",
            "A1",
            &"x".repeat(64),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let cases = [
            ("a/b", "'/' is not allowed"),
            ("../../x", "starts with '.'"),
            ("a b", "' ' is not allowed"),
            ("", "it is empty"),
            ("a\nb", "'\\n' is not allowed"),
            ("é", "'\\u{e9}' is not allowed"),
        ];
        for (bad, problem) in cases {
            let error = check_name(bad).expect_err(bad);
            assert!(error.contains(problem), "{bad:?}: {error}");
        }
        let error = check_name(&"y".repeat(300)).expect_err("long");
        assert!(error.contains("longer than 64"), "{error}");
        assert!(error.len() < 250, "{error}");
    }

    #[test]
    fn process_names_are_made_valid_names() {
        assert_eq!(sanitize("kworker/0:1", "process"), "kworker-0-1");
        assert_eq!(sanitize("../../x", "process"), "-..-x");
        assert_eq!(sanitize("..", "process"), "process");
        assert_eq!(sanitize("web server\n", "process"), "web-server-");
        for text in [
            "kworker/0:1",
            "../../x",
            "a\u{1b}[31m",
            "",
            "...",
            &"q".repeat(99),
        ] {
            assert_eq!(check_name(&sanitize(text, "process")), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn a_command_gives_a_valid_default_name() {
        let name = |command: &[&str]| {
            let command: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
            name_of_command(&command, "target")
        };
        assert_eq!(name(&["/usr/bin/node", "server.js"]), "node");
        assert_eq!(name(&["./my server"]), "my-server");
        assert_eq!(name(&[".hidden"]), "hidden");
        assert_eq!(name(&["/"]), "target");
        assert_eq!(name(&[]), "target");
        assert_eq!(name(&[&"z".repeat(100)]).len(), 64);
        for command in [&["./my server"][..], &[".hidden"], &["/"], &["ünï"]] {
            assert_eq!(check_name(&name(command)), Ok(()), "{command:?}");
        }
    }
}
