//! fence_fulmar: fulmar's built-in agents (Redfish, IPMI, lab host, volume
//! I/O barrier) behind the ClusterLabs fence-agents convention, so that
//! Pacemaker's fencer or any other caller of `fence_*` agents can use them.
//!
//! Options come as key=value lines on stdin or as --key=value arguments;
//! the exit code is 0 for success (and "on"), 2 for "off", 1 for failure.
use std::{io::Read, process::ExitCode, time::Duration};

use fulmar_fencing::{
    Action, Answer, Device, PowerState,
    config::DeviceConfig,
    convention::{self, EXIT_ERROR, EXIT_OFF, EXIT_OK, Options, Parameter},
};
use serde_json::{Map, Value, json};

const DESCRIPTION: &str = "fulmar's built-in fencing agents: agent=redfish (ComputerSystem.Reset, PowerState confirmed), agent=ipmi (IPMI over LAN through ipmitool), agent=lab-host (a netns lab host), agent=io-barrier (revokes a node's access to a volume)";

const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "action",
        required: true,
        kind: "string",
        default: Some("reboot"),
        description: "Fencing action",
    },
    Parameter {
        name: "agent",
        required: true,
        kind: "select",
        default: None,
        description: "redfish, ipmi, lab-host or io-barrier",
    },
    Parameter {
        name: "ip",
        required: false,
        kind: "string",
        default: None,
        description: "Management board address (redfish, ipmi)",
    },
    Parameter {
        name: "ipport",
        required: false,
        kind: "integer",
        default: None,
        description: "Port (redfish 443, ipmi 623)",
    },
    Parameter {
        name: "username",
        required: false,
        kind: "string",
        default: None,
        description: "Login name",
    },
    Parameter {
        name: "password",
        required: false,
        kind: "string",
        default: None,
        description: "Login password",
    },
    Parameter {
        name: "ssl_insecure",
        required: false,
        kind: "boolean",
        default: Some("0"),
        description: "Accept any certificate (self-signed boards)",
    },
    Parameter {
        name: "ssl_ca",
        required: false,
        kind: "string",
        default: None,
        description: "CA file (PEM) for the board's certificate",
    },
    Parameter {
        name: "systems_uri",
        required: false,
        kind: "string",
        default: None,
        description: "Redfish system URI when the board has several",
    },
    Parameter {
        name: "netns",
        required: false,
        kind: "string",
        default: None,
        description: "lab-host: the host's network namespace",
    },
    Parameter {
        name: "volume",
        required: false,
        kind: "string",
        default: None,
        description: "io-barrier: the volume directory",
    },
    Parameter {
        name: "plug",
        required: false,
        kind: "string",
        default: None,
        description: "io-barrier: the node to cut off; lab-host: the netns",
    },
    Parameter {
        name: "power_timeout",
        required: false,
        kind: "second",
        default: Some("20"),
        description: "Seconds to wait for the action and its confirmation",
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = if args.is_empty() {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("fence_fulmar: reading stdin: {e}");
            return ExitCode::from(EXIT_ERROR as u8);
        }
        convention::parse_stdin(&text)
    } else {
        convention::parse_args(&args)
    };
    let code = match options.map_err(String::from).and_then(|o| run(&o)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fence_fulmar: {e}");
            EXIT_ERROR
        }
    };
    ExitCode::from(code as u8)
}

fn run(options: &Options) -> Result<i32, String> {
    let action = Action::parse(options.get("action").map_or("reboot", String::as_str))?;
    if action == Action::Metadata {
        print!(
            "{}",
            convention::metadata_xml("fence_fulmar", DESCRIPTION, PARAMETERS)
        );
        return Ok(EXIT_OK);
    }
    let config = device_config(options)?;
    let timeout = match options.get("power_timeout") {
        Some(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| format!("power_timeout {s:?} is not seconds"))?,
        ),
        None => config.timeout(),
    };
    let device = Device::new(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let answer = runtime
        .block_on(device.run(action, timeout))
        .map_err(|e| e.to_string())?;
    Ok(match answer {
        Answer::Power(PowerState::On) => {
            println!("Status: ON");
            EXIT_OK
        }
        Answer::Power(PowerState::Off) => {
            println!("Status: OFF");
            EXIT_OFF
        }
        Answer::Plugs(plugs) => {
            for p in plugs {
                println!("{p},");
            }
            EXIT_OK
        }
        Answer::Text(t) => {
            print!("{t}");
            EXIT_OK
        }
        Answer::Done => {
            println!("Success: {action}");
            EXIT_OK
        }
    })
}

/// Maps the convention's option names onto a device config.
fn device_config(o: &Options) -> Result<DeviceConfig, String> {
    let get = |k: &str| o.get(k).cloned();
    let need =
        |k: &str| get(k).ok_or_else(|| format!("option {k} is required for agent {}", o["agent"]));
    let agent =
        get("agent").ok_or("option agent is required (redfish, ipmi, lab-host, io-barrier)")?;
    let username = get("username").or_else(|| get("login"));
    let ip = get("ip").or_else(|| get("ipaddr"));
    let plug = get("plug").or_else(|| get("port"));
    let mut c = Map::new();
    c.insert("type".into(), json!(agent));
    match agent.as_str() {
        "redfish" => {
            let ip = ip.ok_or("option ip is required for agent redfish")?;
            let port = get("ipport").unwrap_or_else(|| "443".into());
            let address = if ip.contains("://") {
                ip
            } else {
                format!("https://{ip}:{port}")
            };
            c.insert("address".into(), json!(address));
            c.insert(
                "username".into(),
                json!(username.ok_or("option username is required")?),
            );
            c.insert(
                "insecure".into(),
                json!(get("ssl_insecure").is_some_and(|v| v == "1" || v == "on" || v == "true")),
            );
            if let Some(ca) = get("ssl_ca") {
                c.insert("ca".into(), json!(ca));
            }
            if let Some(s) = get("systems_uri") {
                c.insert("system".into(), json!(s));
            }
        }
        "ipmi" => {
            c.insert(
                "address".into(),
                json!(ip.ok_or("option ip is required for agent ipmi")?),
            );
            if let Some(p) = get("ipport") {
                c.insert(
                    "port".into(),
                    json!(p.parse::<u16>().map_err(|_| format!("ipport {p:?}"))?),
                );
            }
            c.insert(
                "username".into(),
                json!(username.ok_or("option username is required")?),
            );
        }
        "lab-host" => {
            c.insert(
                "netns".into(),
                json!(get("netns").or(plug).ok_or("option netns is required")?),
            );
        }
        "io-barrier" => {
            c.insert("volume".into(), json!(need("volume")?));
            c.insert(
                "node".into(),
                json!(plug.ok_or("option plug (the node) is required")?),
            );
        }
        other => {
            return Err(format!(
                "unknown agent {other:?} (redfish, ipmi, lab-host, io-barrier)"
            ));
        }
    }
    if let Some(p) = get("password").filter(|_| matches!(agent.as_str(), "redfish" | "ipmi")) {
        c.insert("password".into(), json!(p));
    }
    serde_json::from_value(Value::Object(c)).map_err(|e| e.to_string())
}
