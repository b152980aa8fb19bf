//! Runs any ClusterLabs `fence_*` agent: options on stdin (never on the
//! command line, where `ps` would show the password), the answer in its
//! exit code.
use std::{path::PathBuf, process::Stdio};

use tokio::{io::AsyncWriteExt, process::Command};

use crate::{
    config::AgentConfig,
    convention::{self, EXIT_OK},
    device::{Action, Answer, DeviceConfigError, DeviceResult, failed},
    secret::{self, Secret},
};

#[derive(Debug)]
pub struct ExternalAgent {
    program: PathBuf,
    options: Vec<(String, String)>,
    password: Secret,
}

/// Where Debian installs the agents; stonithd looks there too.
const AGENT_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

fn locate(agent: &str) -> Result<PathBuf, DeviceConfigError> {
    if agent.contains('/') {
        return Ok(agent.into());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    AGENT_DIRS
        .iter()
        .copied()
        .chain(path.split(':'))
        .map(|dir| PathBuf::from(dir).join(agent))
        .find(|p| p.is_file())
        .ok_or_else(|| DeviceConfigError::AgentNotFound(agent.into()))
}

impl ExternalAgent {
    pub fn new(config: &AgentConfig) -> Result<Self, DeviceConfigError> {
        let mut options: Vec<(String, String)> = config
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        options.sort();
        if options
            .iter()
            .any(|(k, _)| k == "action" || k == "password")
        {
            return Err(DeviceConfigError::ReservedOption);
        }
        Ok(ExternalAgent {
            program: locate(&config.agent)?,
            options,
            password: secret::resolve(&config.password, &config.password_file)?,
        })
    }

    pub async fn run(&self, action: Action) -> DeviceResult {
        let mut stdin: Vec<(&str, &str)> = vec![("action", action.name())];
        stdin.extend(self.options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if !self.password.is_empty() {
            stdin.push(("password", self.password.expose()));
        }
        let input = convention::render_stdin(&stdin).map_err(failed)?;
        let mut child = Command::new(&self.program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out agent is killed with the future that waits on it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("{}: {e}", self.program.display())))?;
        let mut pipe = child.stdin.take().expect("piped stdin");
        // An agent that exits without reading says why in its exit code.
        match pipe.write_all(input.as_bytes()).await {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(failed(format!("writing options: {e}")));
            }
            _ => {}
        }
        drop(pipe);
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| failed(format!("{}: {e}", self.program.display())))?;
        let code = output.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let problem = || {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = |text: &str| {
                text.lines()
                    .rfind(|l| !l.trim().is_empty())
                    .map(str::to_string)
            };
            let said = last(&stderr)
                .or_else(|| last(&stdout))
                .unwrap_or("no message".into())
                .trim()
                .to_string();
            failed(format!(
                "{} {action}: exit {code}: {said}",
                self.program
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ))
        };
        match action {
            Action::Status => convention::status_from_exit(code)
                .map(Answer::Power)
                .ok_or_else(problem),
            _ if code != EXIT_OK => Err(problem()),
            Action::List => Ok(Answer::Plugs(
                stdout
                    .lines()
                    .filter_map(|l| l.split(',').next())
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| p.trim().to_string())
                    .collect(),
            )),
            Action::Metadata => Ok(Answer::Text(stdout)),
            _ => Ok(Answer::Done),
        }
    }
}
