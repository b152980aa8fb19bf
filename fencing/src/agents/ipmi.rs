//! IPMI over LAN through ipmitool.
//!
//! Why ipmitool and not a Rust implementation: IPMI 2.0 LAN power control
//! needs an RMCP+ session (RAKP key exchange, HMAC integrity, AES-CBC
//! confidentiality, per-vendor cipher-suite quirks). ipmitool is the
//! implementation BMC vendors test against, is packaged by Debian and is
//! what fence_ipmilan itself drives; re-implementing that security
//! protocol would add risk, not value. The password travels in the
//! environment (`-E`, IPMI_PASSWORD), never on the command line.
use std::process::Stdio;

use tokio::process::Command;

use crate::{
    config::IpmiConfig,
    device::{Action, Answer, DeviceConfigError, DeviceError, DeviceResult, PowerState, failed},
    secret::{self, Secret},
};

#[derive(Debug)]
pub struct Ipmi {
    address: String,
    port: u16,
    username: String,
    password: Secret,
    cipher_suite: Option<u8>,
}

impl Ipmi {
    pub fn new(config: &IpmiConfig) -> Result<Self, DeviceConfigError> {
        Ok(Ipmi {
            address: config.address.clone(),
            port: config.port,
            username: config.username.clone(),
            password: secret::resolve(&config.password, &config.password_file)?,
            cipher_suite: config.cipher_suite,
        })
    }

    pub async fn run(&self, action: Action) -> DeviceResult {
        let verb = match action {
            Action::On => "on",
            Action::Off => "off",
            Action::Reboot => "cycle",
            Action::Status | Action::Monitor => "status",
            Action::List => return Ok(Answer::Plugs(vec![self.address.clone()])),
            Action::Metadata => return Err(DeviceError::Unsupported(action)),
        };
        let said = self.chassis_power(verb).await?;
        match action {
            Action::Status => parse_status(&said).map(Answer::Power),
            Action::Off | Action::On => {
                // ipmitool returns once the BMC took the command; confirm.
                let want = if action == Action::Off {
                    PowerState::Off
                } else {
                    PowerState::On
                };
                loop {
                    if parse_status(&self.chassis_power("status").await?)? == want {
                        return Ok(Answer::Done);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            }
            _ => Ok(Answer::Done),
        }
    }

    async fn chassis_power(&self, verb: &str) -> Result<String, DeviceError> {
        let mut command = Command::new("ipmitool");
        command
            .args([
                "-I",
                "lanplus",
                "-H",
                &self.address,
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", &self.username, "-E", "-N", "2", "-R", "2"]);
        if let Some(c) = self.cipher_suite {
            command.args(["-C", &c.to_string()]);
        }
        let output = command
            .args(["chassis", "power", verb])
            .env("IPMI_PASSWORD", self.password.expose())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| failed(format!("ipmitool: {e} (package ipmitool?)")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said = stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            return Err(failed(format!(
                "ipmitool chassis power {verb} at {}:{}: {}",
                self.address,
                self.port,
                said.trim()
            )));
        }
        Ok(stdout)
    }
}

/// "Chassis Power is on" / "Chassis Power is off".
fn parse_status(text: &str) -> Result<PowerState, DeviceError> {
    match text.trim().rsplit(' ').next() {
        Some("on") => Ok(PowerState::On),
        Some("off") => Ok(PowerState::Off),
        _ => Err(failed(format!("unexpected ipmitool answer {text:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ipmitool_status() {
        assert_eq!(
            parse_status("Chassis Power is on\n").unwrap(),
            PowerState::On
        );
        assert_eq!(
            parse_status("Chassis Power is off").unwrap(),
            PowerState::Off
        );
        assert!(parse_status("Error").is_err());
    }
}
