//! Running iproute2 and friends, with errors that show the command.
use std::{
    path::Path,
    process::{Command, Output},
};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run {program} ({source}); run scripts/bootstrap.sh")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad lab spec: {0}")]
    Spec(String),
    #[error("{0}")]
    NotReady(String),
    #[error("cannot read {what} from: {text}")]
    Parse { what: String, text: String },
}

impl LabError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

pub(crate) fn output(mut cmd: Command) -> Result<Output, LabError> {
    cmd.output().map_err(|source| LabError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })
}

pub(crate) fn checked(cmd: Command) -> Result<String, LabError> {
    let command = describe(&cmd);
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    checked(cmd)
}
