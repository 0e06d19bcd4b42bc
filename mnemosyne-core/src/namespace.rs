use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Longest project or session name, in bytes.
pub const NAMESPACE_PART_BYTES_MAX: usize = 64;

/// Where a memory lives: shared by everyone, one project, or one session of a project.
///
/// Written `global`, `project:NAME` or `session:PROJECT/ID`. Names are 1 to 64
/// characters of ASCII letters, digits, `_`, `-` and `.`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Namespace {
    /// Visible to every project.
    #[default]
    Global,
    /// One project.
    Project(String),
    /// One session (an agent's run) under a project.
    Session {
        /// The project the session belongs to.
        project: String,
        /// The session id.
        session: String,
    },
}

impl Namespace {
    /// This namespace and the ones it sees, nearest first: a session sees its
    /// project and `global`, a project sees `global`.
    pub fn with_ancestors(&self) -> Vec<Namespace> {
        match self {
            Self::Global => vec![Self::Global],
            Self::Project(_) => vec![self.clone(), Self::Global],
            Self::Session { project, .. } => {
                vec![self.clone(), Self::Project(project.clone()), Self::Global]
            }
        }
    }
}

fn check_part(kind: &str, part: &str, whole: &str) -> Result<String, Error> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if part.is_empty() || part.len() > NAMESPACE_PART_BYTES_MAX || !part.chars().all(valid_char) {
        return Err(Error::invalid(format!(
            "malformed namespace {whole:?}: {kind} must be 1 to {NAMESPACE_PART_BYTES_MAX} characters of letters, digits, '_', '-' or '.' (expected global, project:NAME or session:PROJECT/ID)"
        )));
    }
    Ok(part.to_owned())
}

impl FromStr for Namespace {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "global" {
            return Ok(Self::Global);
        }
        if let Some(name) = text.strip_prefix("project:") {
            return Ok(Self::Project(check_part("the project name", name, text)?));
        }
        if let Some(rest) = text.strip_prefix("session:") {
            let Some((project, session)) = rest.split_once('/') else {
                return Err(Error::invalid(format!(
                    "malformed namespace {text:?}: a session is written session:PROJECT/ID"
                )));
            };
            return Ok(Self::Session {
                project: check_part("the project name", project, text)?,
                session: check_part("the session id", session, text)?,
            });
        }
        Err(Error::invalid(format!(
            "malformed namespace {text:?}: expected global, project:NAME or session:PROJECT/ID"
        )))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            Self::Project(name) => write!(f, "project:{name}"),
            Self::Session { project, session } => write!(f, "session:{project}/{session}"),
        }
    }
}

impl Serialize for Namespace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for text in ["global", "project:atlas", "session:atlas/run-1.2_x"] {
            let ns: Namespace = text.parse().unwrap();
            assert_eq!(ns.to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_namespaces() {
        for text in [
            "",
            "Global",
            "project:",
            "project:a b",
            "project:a/b",
            "session:atlas",
            "session:/x",
            "session:atlas/",
            "session:atlas/x/y",
            "team:x",
        ] {
            let err = text.parse::<Namespace>().unwrap_err();
            assert!(
                err.to_string().contains("malformed namespace"),
                "{text}: {err}"
            );
        }
        let long = format!("project:{}", "a".repeat(NAMESPACE_PART_BYTES_MAX + 1));
        assert!(long.parse::<Namespace>().is_err());
        let longest = format!("project:{}", "a".repeat(NAMESPACE_PART_BYTES_MAX));
        assert!(longest.parse::<Namespace>().is_ok());
    }

    #[test]
    fn session_sees_project_then_global() {
        let ns: Namespace = "session:atlas/s1".parse().unwrap();
        let names: Vec<String> = ns.with_ancestors().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["session:atlas/s1", "project:atlas", "global"]);
    }
}
