//! `upramp upload` (owned by the uploader work; placeholder until it lands).

use crate::exit::{CliError, CliResult};

/// Arguments of `upramp upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to upload.
    pub files: Vec<std::path::PathBuf>,
}

/// Run `upramp upload`.
pub fn run(_args: UploadArgs) -> CliResult {
    Err(CliError::usage(anyhow::anyhow!("upload is not available in this build yet")))
}
