//! Errors of the sweep spec: every problem carries its file, line, column and field path.

use std::fmt;

use crate::location::Location;

/// One problem found in a sweep spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// Where the offending node starts.
    pub location: Location,
    /// Field path, e.g. `axes.data_fraction[2]`; empty for the whole document.
    pub path: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

/// A sweep spec that could not be read or is invalid. Nothing may be started
/// from a spec that produced this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("{source_name}: cannot read the sweep spec: {message}")]
    Io {
        /// The file name as given by the user.
        source_name: String,
        /// The operating system's message.
        message: String,
    },
    /// The YAML is malformed or violates the spec's rules.
    #[error("{}", render(source_name, problems))]
    Invalid {
        /// The file name as given by the user.
        source_name: String,
        /// Every problem found, in document order.
        problems: Vec<SpecProblem>,
    },
}

impl SpecError {
    /// The problems, empty for an I/O error.
    pub fn problems(&self) -> &[SpecProblem] {
        match self {
            SpecError::Io { .. } => &[],
            SpecError::Invalid { problems, .. } => problems,
        }
    }
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Location { line, column } = self.location;
        if self.path.is_empty() {
            write!(f, "{line}:{column}: {}", self.message)
        } else {
            write!(f, "{line}:{column}: {}: {}", self.path, self.message)
        }
    }
}

fn render(source_name: &str, problems: &[SpecProblem]) -> String {
    let mut lines = Vec::with_capacity(problems.len());
    for problem in problems {
        lines.push(format!("{source_name}:{problem}"));
    }
    lines.join("\n")
}

/// Result alias for spec parsing.
pub type Result<T, E = SpecError> = std::result::Result<T, E>;
