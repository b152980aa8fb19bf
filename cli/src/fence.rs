//! `fulmar fence ...`: the fencing commands of the project's tool.
use std::path::Path;

use fulmar_daemon::grammar::keyword;
use serde_json::json;

use fulmar_fencing::{
    config::FencingConfig,
    device::{Action, Answer},
    history::Record,
    topology::Fencer,
};

pub const USAGE: &str = "\
Usage: fulmar fence device show
       fulmar fence status [ DEVICE ]
       fulmar fence node NODE
       fulmar fence on DEVICE
       fulmar fence confirm NODE
       fulmar fence history [ NODE ]
Devices and levels come from the fencing config (-F PATH, default
/etc/fulmar/fencing.toml). `node` fences NODE by hand: its delay, then its
levels in order, each off confirmed by a status query; it fails when NODE is
unfenceable. `confirm` records that an operator made sure NODE is off, which
lets the failover manager take over after an unfenceable result. `on` powers
a device's target back on (or re-grants volume access).";

pub fn run(args: &[String], config: &Path, json: bool) -> Result<(), String> {
    let Some(verb) = args.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    let verb = keyword(
        verb,
        &[
            "device", "status", "node", "on", "confirm", "history", "help",
        ],
        "fence command",
    )
    .map_err(|e| format!("{e}\n{USAGE}"))?;
    if verb == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    let arg = args.get(1).map(String::as_str);
    let fencer = Fencer::new(FencingConfig::load(config)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match (verb, arg) {
        ("device", None) => show(&fencer, json),
        ("device", Some(word)) if keyword(word, &["show"], "fence device command").is_ok() => {
            show(&fencer, json)
        }
        ("status", only) => runtime.block_on(status(&fencer, only, json)),
        ("node", Some(node)) => {
            let record = runtime.block_on(fencer.fence(node))?;
            print_record(&record, json);
            if record.safe_to_take_over() {
                Ok(())
            } else {
                Err(format!("{node} is {}", record.summary()))
            }
        }
        ("on", Some(device)) => {
            runtime.block_on(fencer.device_action(device, Action::On))?;
            println!("{device}: on");
            Ok(())
        }
        ("confirm", Some(node)) => {
            let by = std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "operator".into());
            let record = fencer.confirm_manual(node, &by)?;
            print_record(&record, json);
            Ok(())
        }
        ("history", node) => {
            for record in fencer.history().records()? {
                if node.is_none_or(|n| n == record.node) {
                    print_record(&record, json);
                }
            }
            Ok(())
        }
        (verb, _) => Err(format!("fence {verb} needs an argument\n{USAGE}")),
    }
}

fn show(fencer: &Fencer, json: bool) -> Result<(), String> {
    let config = fencer.config();
    if json {
        let devices: Vec<_> = config
            .device
            .iter()
            .map(|(name, d)| {
                json!({"name": name, "type": d.kind(), "target": d.target(),
                       "timeout_ms": d.timeout().as_millis() as u64})
            })
            .collect();
        let nodes: Vec<_> = config
            .node
            .iter()
            .map(|(name, n)| json!({"name": name, "delay_ms": n.delay.as_millis() as u64, "levels": n.levels}))
            .collect();
        println!("{}", json!({"devices": devices, "nodes": nodes}));
        return Ok(());
    }
    for (name, d) in &config.device {
        let problem = fencer
            .device(name)
            .err()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        println!(
            "device {name} type {} target {} timeout {}{problem}",
            d.kind(),
            d.target(),
            humantime::format_duration(d.timeout())
        );
    }
    for (name, n) in &config.node {
        let levels: Vec<String> = n
            .levels
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}: {}", i + 1, l.join(" + ")))
            .collect();
        println!(
            "node {name} delay {} levels {}",
            humantime::format_duration(n.delay),
            levels.join(", ")
        );
    }
    Ok(())
}

async fn status(fencer: &Fencer, only: Option<&str>, json: bool) -> Result<(), String> {
    let names: Vec<String> = match only {
        Some(d) => vec![d.to_string()],
        None => fencer.config().device.keys().cloned().collect(),
    };
    let mut failures = 0;
    for name in names {
        let answer = fencer.device_action(&name, Action::Status).await;
        let text = match &answer {
            Ok(Answer::Power(p)) => p.to_string(),
            Ok(other) => format!("{other:?}"),
            Err(e) => {
                failures += 1;
                format!("error: {e}")
            }
        };
        if json {
            println!("{}", json!({"device": name, "status": text}));
        } else {
            println!("{name}: {text}");
        }
    }
    match (only, failures) {
        (Some(d), 1) => Err(format!("{d}: status unknown")),
        _ => Ok(()),
    }
}

fn print_record(record: &Record, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(record).expect("record serializes")
        );
        return;
    }
    let when = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.started_ms),
    );
    println!(
        "{when} node {} {} in {} ms (delay {} ms)",
        record.node,
        record.summary(),
        record.duration_ms,
        record.delay_ms
    );
    for level in &record.levels {
        for d in &level.devices {
            let result = match &d.error {
                None => "off, confirmed".to_string(),
                Some(e) => format!("failed: {e}"),
            };
            println!(
                "    level {} {} {result} ({} ms)",
                level.level, d.device, d.duration_ms
            );
        }
    }
}
