//! The ClusterLabs fence-agents calling convention, both ways: how a
//! `fence_*` agent takes its options (key=value lines on stdin, or long
//! options on the command line) and what its exit codes mean.
use std::collections::BTreeMap;

use crate::device::{Action, PowerState};

/// Exit codes: 0 success (and "on" for status), 1 failure, 2 "off" for status.
pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_OFF: i32 = 2;

/// Input that does not follow the fence-agents convention.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConventionError {
    #[error("stdin line {line}: {key:?} is not an option name")]
    OptionName { line: usize, key: String },
    #[error("-o needs an action")]
    NoAction,
    #[error("unexpected argument {0:?} (use --key=value or stdin)")]
    Argument(String),
    /// A value with a newline would smuggle in a second option.
    #[error("option {0} contains a line break")]
    LineBreak(String),
}

impl From<ConventionError> for String {
    fn from(e: ConventionError) -> String {
        e.to_string()
    }
}

/// Options as an agent receives them. Later values win, like fencing.py.
pub type Options = BTreeMap<String, String>;

/// Parses stdin: `key=value` per line; blank lines and `#` comments are
/// skipped; a bare `key` means `key=1` (a flag such as `ssl_insecure`).
pub fn parse_stdin(text: &str) -> Result<Options, ConventionError> {
    let mut options = Options::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, "1"));
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConventionError::OptionName {
                line: n + 1,
                key: key.into(),
            });
        }
        options.insert(key.replace('-', "_"), value.to_string());
    }
    Ok(options)
}

/// Parses `--key=value`, `--flag` and `-o ACTION` from the command line.
pub fn parse_args(args: &[String]) -> Result<Options, ConventionError> {
    let mut options = Options::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "-o" {
            let value = args.get(i + 1).ok_or(ConventionError::NoAction)?;
            options.insert("action".into(), value.clone());
            i += 2;
            continue;
        }
        let Some(long) = arg.strip_prefix("--") else {
            return Err(ConventionError::Argument(arg.clone()));
        };
        let (key, value) = long.split_once('=').unwrap_or((long, "1"));
        options.insert(key.replace('-', "_"), value.to_string());
        i += 1;
    }
    Ok(options)
}

/// Renders options for an agent's stdin. A value with a newline would
/// smuggle in a second option, so it is refused.
pub fn render_stdin(options: &[(&str, &str)]) -> Result<String, ConventionError> {
    let mut text = String::new();
    for (key, value) in options {
        if value.contains(['\n', '\r']) {
            return Err(ConventionError::LineBreak((*key).into()));
        }
        text.push_str(&format!("{key}={value}\n"));
    }
    Ok(text)
}

/// What an exit status means for `action`.
pub fn status_from_exit(code: i32) -> Option<PowerState> {
    match code {
        EXIT_OK => Some(PowerState::On),
        EXIT_OFF => Some(PowerState::Off),
        _ => None,
    }
}

/// One parameter in an agent's metadata.
pub struct Parameter {
    pub name: &'static str,
    pub required: bool,
    pub kind: &'static str,
    pub default: Option<&'static str>,
    pub description: &'static str,
}

/// The XML that `-o metadata` prints (what Pacemaker's fencer reads).
pub fn metadata_xml(name: &str, description: &str, parameters: &[Parameter]) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" ?>\n<resource-agent name=\"{name}\" shortdesc=\"{}\">\n\
         <longdesc>{}</longdesc>\n<parameters>\n",
        escape(description),
        escape(description)
    );
    for p in parameters {
        let default = p
            .default
            .map(|d| format!(" default=\"{}\"", escape(d)))
            .unwrap_or_default();
        xml.push_str(&format!(
            "\t<parameter name=\"{}\" unique=\"0\" required=\"{}\">\n\
             \t\t<getopt mixed=\"--{}=[value]\" />\n\
             \t\t<content type=\"{}\"{default} />\n\
             \t\t<shortdesc lang=\"en\">{}</shortdesc>\n\t</parameter>\n",
            p.name,
            u8::from(p.required),
            p.name.replace('_', "-"),
            p.kind,
            escape(p.description)
        ));
    }
    xml.push_str("</parameters>\n<actions>\n");
    for action in Action::ALL {
        xml.push_str(&format!("\t<action name=\"{action}\" />\n"));
    }
    xml.push_str("</actions>\n</resource-agent>\n");
    xml
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_options_flags_and_comments() {
        let o = parse_stdin(
            "# by stonithd\naction=off\nip=198.18.9.1\nssl_insecure\npassword=a=b c\n\n",
        )
        .unwrap();
        assert_eq!(o["action"], "off");
        assert_eq!(o["ssl_insecure"], "1");
        assert_eq!(o["password"], "a=b c");
        assert!(
            parse_stdin("bad key=1")
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }

    #[test]
    fn command_line_options() {
        let args: Vec<String> = ["-o", "status", "--ip=198.18.9.1", "--ssl-insecure"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse_args(&args).unwrap();
        assert_eq!(o["action"], "status");
        assert_eq!(o["ssl_insecure"], "1");
        assert!(parse_args(&["off".to_string()]).is_err());
    }

    #[test]
    fn no_option_smuggling() {
        assert!(render_stdin(&[("password", "x\naction=on")]).is_err());
        assert_eq!(render_stdin(&[("action", "off")]).unwrap(), "action=off\n");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(status_from_exit(0), Some(PowerState::On));
        assert_eq!(status_from_exit(2), Some(PowerState::Off));
        assert_eq!(status_from_exit(1), None);
    }
}
