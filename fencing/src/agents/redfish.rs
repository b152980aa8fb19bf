//! Built-in Redfish power control: find the system, POST
//! `ComputerSystem.Reset`, then poll `PowerState` until the board
//! confirms the new state.
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::{
    config::RedfishConfig,
    device::{Action, Answer, DeviceConfigError, DeviceError, DeviceResult, PowerState, failed},
    secret::{self, Secret},
};

const POLL: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Redfish {
    base: String,
    username: String,
    password: Secret,
    configured_system: Option<String>,
    client: Client,
    /// The system URI, found once.
    system: OnceCell<String>,
}

impl Redfish {
    pub fn new(config: &RedfishConfig) -> Result<Self, DeviceConfigError> {
        let base = config.address.trim_end_matches('/').to_string();
        if !base.starts_with("https://") && !base.starts_with("http://") {
            return Err(DeviceConfigError::Address(base));
        }
        let tls = |what: String, e: &dyn std::fmt::Display| DeviceConfigError::Tls {
            what,
            reason: e.to_string(),
        };
        let mut builder = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .danger_accept_invalid_certs(config.insecure);
        if let Some(ca) = &config.ca {
            let pem = std::fs::read(ca).map_err(|e| tls(ca.display().to_string(), &e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| tls(ca.display().to_string(), &e))?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Redfish {
            base,
            username: config.username.clone(),
            password: secret::resolve(&config.password, &config.password_file)?,
            configured_system: config.system.clone(),
            client: builder
                .build()
                .map_err(|e| tls("redfish client".into(), &e))?,
            system: OnceCell::new(),
        })
    }

    pub async fn run(&self, action: Action) -> DeviceResult {
        match action {
            Action::Status => self.power_state().await.map(Answer::Power),
            Action::Off => self.reset("ForceOff", PowerState::Off).await,
            Action::On => self.reset("On", PowerState::On).await,
            Action::Reboot => self.reset("ForceRestart", PowerState::On).await,
            Action::Monitor => self.get("/redfish/v1/Systems").await.map(|_| Answer::Done),
            Action::List => self.systems().await.map(Answer::Plugs),
            Action::Metadata => Err(DeviceError::Unsupported(action)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> Result<Value, DeviceError> {
        let response = self
            .client
            .get(self.url(path))
            .basic_auth(&self.username, Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| failed(format!("GET {path}: {}", chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("GET {path}: {}", http_problem(status))));
        }
        response
            .json()
            .await
            .map_err(|e| failed(format!("GET {path}: not JSON: {e}")))
    }

    async fn systems(&self) -> Result<Vec<String>, DeviceError> {
        let collection = self.get("/redfish/v1/Systems").await?;
        Ok(collection["Members"]
            .as_array()
            .map(|members| {
                members
                    .iter()
                    .filter_map(|m| m["@odata.id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn system(&self) -> Result<&str, DeviceError> {
        self.system
            .get_or_try_init(|| async {
                if let Some(s) = &self.configured_system {
                    return Ok(s.clone());
                }
                match self.systems().await?.as_slice() {
                    [one] => Ok(one.clone()),
                    [] => Err(failed("the board lists no systems")),
                    many => Err(failed(format!(
                        "the board has {} systems ({}); set `system`",
                        many.len(),
                        many.join(", ")
                    ))),
                }
            })
            .await
            .map(String::as_str)
    }

    async fn power_state(&self) -> Result<PowerState, DeviceError> {
        let system = self.system().await?;
        let body = self.get(system).await?;
        match body["PowerState"].as_str() {
            Some("On") => Ok(PowerState::On),
            Some("Off") => Ok(PowerState::Off),
            // PoweringOn / PoweringOff: not confirmed either way yet.
            other => Err(failed(format!(
                "PowerState is {}",
                other.unwrap_or("missing")
            ))),
        }
    }

    /// POSTs the reset, then polls until `want` is confirmed (the caller's
    /// timeout bounds the wait).
    async fn reset(&self, reset_type: &str, want: PowerState) -> DeviceResult {
        let system = self.system().await?.to_string();
        let body = self.get(&system).await?;
        if reset_type != "ForceRestart" && power_of(&body) == Ok(want) {
            return Ok(Answer::Done);
        }
        let target = body["Actions"]["#ComputerSystem.Reset"]["target"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{system}/Actions/ComputerSystem.Reset"));
        let response = self
            .client
            .post(self.url(&target))
            .basic_auth(&self.username, Some(self.password.expose()))
            .json(&json!({ "ResetType": reset_type }))
            .send()
            .await
            .map_err(|e| failed(format!("POST {target}: {}", chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            let detail = response.text().await.unwrap_or_default();
            return Err(failed(format!(
                "POST {target} ResetType={reset_type}: {} {}",
                http_problem(status),
                redfish_message(&detail)
            )));
        }
        loop {
            match self.power_state().await {
                Ok(state) if state == want => return Ok(Answer::Done),
                Ok(_) | Err(DeviceError::Failed(_)) => tokio::time::sleep(POLL).await,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A system resource's `PowerState`.
fn power_of(system: &Value) -> Result<PowerState, DeviceError> {
    match system["PowerState"].as_str() {
        Some("On") => Ok(PowerState::On),
        Some("Off") => Ok(PowerState::Off),
        // PoweringOn / PoweringOff: not confirmed either way yet.
        other => Err(failed(format!(
            "PowerState is {}",
            other.unwrap_or("missing")
        ))),
    }
}

fn http_problem(status: StatusCode) -> String {
    match status {
        StatusCode::UNAUTHORIZED => "401 Unauthorized (wrong username or password)".into(),
        StatusCode::FORBIDDEN => "403 Forbidden (the account may not reset the system)".into(),
        s => s.to_string(),
    }
}

/// The first `@Message.ExtendedInfo` message of a Redfish error body.
fn redfish_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v["error"]["@Message.ExtendedInfo"][0]["Message"]
                .as_str()
                .or(v["error"]["message"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// reqwest hides the cause (refused, certificate) in its source chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
