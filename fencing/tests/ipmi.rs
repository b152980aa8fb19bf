//! IPMI over LAN (ipmitool, lanplus) against pyghmi's fakebmc: the
//! built-in agent, and Debian's fence_ipmilan through the convention.
mod support;

use std::{collections::HashMap, time::Duration};

use fulmar_fencing::{
    Action, Answer, Device, PowerState,
    config::{AgentConfig, DeviceConfig, IpmiConfig},
    secret::Secret,
};
use support::*;

const T: Duration = Duration::from_secs(20);

fn ipmi(password: &str) -> Device {
    Device::new(&DeviceConfig::Ipmi(IpmiConfig {
        address: BMC.into(),
        port: IPMI_PORT,
        username: IPMI_USER.into(),
        password: Some(Secret::new(password)),
        password_file: None,
        cipher_suite: None,
        timeout: T,
    }))
    .unwrap()
}

#[test]
fn builtin_ipmi_and_fence_ipmilan_against_fakebmc() {
    let mut site = Site::new();
    site.start_ipmi();
    let ipmilan = Device::new(&DeviceConfig::Agent(AgentConfig {
        agent: "fence_ipmilan".into(),
        options: HashMap::from([
            ("ip".to_string(), BMC.to_string()),
            ("username".to_string(), IPMI_USER.to_string()),
            ("lanplus".to_string(), "1".to_string()),
        ]),
        password: Some(Secret::new(IPMI_PASSWORD)),
        password_file: None,
        timeout: T,
    }))
    .unwrap();
    let denied = site.on_control(move || async move {
        let bmc = ipmi(IPMI_PASSWORD);
        assert_eq!(
            bmc.status(T).await,
            Ok(PowerState::Off),
            "fakebmc starts off"
        );
        assert_eq!(bmc.run(Action::On, T).await, Ok(Answer::Done));
        assert_eq!(bmc.status(T).await, Ok(PowerState::On));
        // Debian's agent sees the same board, by its exit codes.
        assert_eq!(
            ipmilan.status(T).await,
            Ok(PowerState::On),
            "fence_ipmilan status"
        );
        assert_eq!(
            ipmilan.run(Action::Off, T).await,
            Ok(Answer::Done),
            "fence_ipmilan off"
        );
        assert_eq!(bmc.status(T).await, Ok(PowerState::Off));
        assert_eq!(bmc.run(Action::On, T).await, Ok(Answer::Done));
        assert_eq!(bmc.run(Action::Off, T).await, Ok(Answer::Done));
        assert_eq!(ipmilan.status(T).await, Ok(PowerState::Off));
        ipmi("wrong")
            .run(Action::Off, T)
            .await
            .unwrap_err()
            .to_string()
    });
    assert!(denied.contains("RMCP+ session"), "{denied}");
    assert!(
        !denied.contains("wrong") && !denied.contains(IPMI_PASSWORD),
        "{denied}"
    );
}
