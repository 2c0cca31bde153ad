//! The exit-code convention shared by every subcommand: 0 ok, 1 failed work, 2 bad usage or config,
//! and `128 + signal number` when a signal stopped the work early (130 for SIGINT, 143 for SIGTERM,
//! the codes a shell reports for a process the signal killed).

use std::fmt;
use std::process::ExitCode;

/// A signal that asked a subcommand to stop before its work was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, a service manager stopping the process).
    Terminate,
}

impl StopSignal {
    /// The signal's conventional name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }

    /// `128 + signal number`, as a shell reports a process the signal killed.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a subcommand failed, which decides its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or configuration (exit 2): a malformed argument, env value, config or state file.
    Usage(anyhow::Error),
    /// The work itself failed (exit 1): an upload that did not succeed, a provider that refused.
    Work(anyhow::Error),
    /// A signal stopped the work before it was done (exit `128 + signal number`).
    Interrupted(StopSignal, anyhow::Error),
}

impl CliError {
    /// Bad usage or configuration: exit 2.
    pub fn usage(err: impl Into<anyhow::Error>) -> Self {
        Self::Usage(err.into())
    }

    /// Failed work: exit 1.
    pub fn work(err: impl Into<anyhow::Error>) -> Self {
        Self::Work(err.into())
    }

    fn code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Work(_) => 1,
            Self::Interrupted(signal, _) => signal.exit_code(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Self::Usage(err) | Self::Work(err) | Self::Interrupted(_, err)) = self;
        f.write_str(&one_line(err))
    }
}

/// The error and its causes joined by ": " on one line, each cause only once: many errors already
/// quote their source in their own message (`cannot read flags file F: No such file or directory
/// (os error 2)`), and repeating it (`... (os error 2): No such file or directory (os error 2)`)
/// only makes the line harder to read.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace(['\n', '\r'], " ")
}

/// Result of a subcommand.
pub type CliResult = Result<(), CliError>;

/// Print a failure as one line on stderr and turn the result into the process exit code.
pub fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("upramp: error: {err}");
            ExitCode::from(err.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that quotes its source in its own message, as many library errors do.
    #[derive(Debug)]
    struct Quoting(std::io::Error);

    impl fmt::Display for Quoting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cannot read flags file /x: {}", self.0)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such thing");
        let err = anyhow::Error::new(Quoting(io)).context("loading flags");
        assert_eq!(
            CliError::usage(err).to_string(),
            "loading flags: cannot read flags file /x: no such thing"
        );
    }

    #[test]
    fn causes_not_quoted_are_joined() {
        let err = anyhow::anyhow!("inner\nproblem").context("outer");
        assert_eq!(CliError::work(err).to_string(), "outer: inner problem");
    }
}
