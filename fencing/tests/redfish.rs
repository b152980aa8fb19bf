//! The built-in Redfish agent and Debian's fence_redfish (through the
//! fence-agents convention), both against the sushy-tools emulator over
//! self-signed HTTPS with basic auth.
mod support;

use std::{collections::HashMap, time::Duration};

use fulmar_fencing::{
    Action, Answer, Device, PowerState,
    config::{AgentConfig, DeviceConfig, RedfishConfig},
    secret::Secret,
};
use support::*;

const T: Duration = Duration::from_secs(30);

fn redfish(insecure: bool, ca: Option<std::path::PathBuf>, password: &str) -> Device {
    Device::new(&DeviceConfig::Redfish(RedfishConfig {
        address: format!("https://{BMC}:{REDFISH_PORT}"),
        username: BMC_USER.into(),
        password: Some(Secret::new(password)),
        password_file: None,
        system: None,
        ca,
        insecure,
        timeout: T,
    }))
    .unwrap()
}

#[test]
fn builtin_agent_powers_off_and_on_with_confirmation() {
    let mut site = Site::new();
    site.start_redfish();
    let ca = site.path("bmc.pem");
    let out = site.on_control(move || async move {
        let mut log = Vec::new();
        // Trusting the board's own certificate, no "insecure" needed.
        let board = redfish(false, Some(ca), BMC_PASSWORD);
        let systems = board.run(Action::List, T).await.unwrap();
        log.push(format!("{systems:?}"));
        for (action, want) in [(Action::On, PowerState::On), (Action::Off, PowerState::Off)] {
            // The fake driver applies a reset 1-11 s later: Done means the
            // agent polled until PowerState confirmed it.
            assert_eq!(board.run(action, T).await, Ok(Answer::Done));
            assert_eq!(board.status(T).await, Ok(want), "after {action}");
        }
        // Off when already off: nothing to do, still success.
        assert_eq!(board.run(Action::Off, T).await, Ok(Answer::Done));
        // Insecure mode against the same board.
        assert_eq!(
            redfish(true, None, BMC_PASSWORD).status(T).await,
            Ok(PowerState::Off)
        );
        // The public roots do not know a self-signed board.
        let untrusted = redfish(false, None, BMC_PASSWORD)
            .status(T)
            .await
            .unwrap_err();
        log.push(format!("untrusted: {untrusted}"));
        let denied = redfish(true, None, "wrong")
            .run(Action::Off, T)
            .await
            .unwrap_err();
        log.push(format!("denied: {denied}"));
        log
    });
    assert!(out[0].contains("/redfish/v1/Systems/"), "{out:?}");
    assert!(
        out[1].contains("certificate") || out[1].contains("UnknownIssuer"),
        "{out:?}"
    );
    assert!(
        out[2].contains("401 Unauthorized (wrong username or password)"),
        "{out:?}"
    );
    // Passwords never reach an error message.
    assert!(!out.join(" ").contains(BMC_PASSWORD), "{out:?}");
}

#[test]
fn debian_fence_redfish_through_the_convention() {
    let mut site = Site::new();
    site.start_redfish();
    let agent = |password: &str| {
        let options: HashMap<String, String> = [
            ("ip", BMC.to_string()),
            ("ipport", REDFISH_PORT.to_string()),
            ("username", BMC_USER.to_string()),
            ("ssl_insecure", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Device::new(&DeviceConfig::Agent(AgentConfig {
            agent: "fence_redfish".into(),
            options,
            password: Some(Secret::new(password)),
            password_file: None,
            timeout: T,
        }))
        .unwrap()
    };
    let good = agent(BMC_PASSWORD);
    let bad = agent("wrong");
    let out = site.on_control(move || async move {
        // Exit 2 from status means off, 0 on; the fake board starts off.
        assert_eq!(good.status(T).await, Ok(PowerState::Off), "at start");
        assert_eq!(good.run(Action::On, T).await, Ok(Answer::Done), "on");
        assert_eq!(good.status(T).await, Ok(PowerState::On), "status after on");
        assert_eq!(good.run(Action::Off, T).await, Ok(Answer::Done), "off");
        assert_eq!(
            good.status(T).await,
            Ok(PowerState::Off),
            "status after off"
        );
        let Ok(Answer::Text(xml)) = good.run(Action::Metadata, T).await else {
            panic!("no metadata")
        };
        assert!(xml.contains("<resource-agent name=\"fence_redfish\""));
        bad.run(Action::Off, T).await.unwrap_err().to_string()
    });
    assert!(out.contains("fence_redfish off: exit 1"), "{out}");
    assert!(!out.contains("wrong"), "{out}");
}
