//! The fence history: one JSON line per fencing attempt or manual
//! confirmation, appended and fsynced before anyone acts on it.
use std::{
    fs::{self, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// One device's part in a level.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceAttempt {
    pub device: String,
    pub ok: bool,
    /// Why it failed (never a password: devices do not print them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// off, then status confirming off.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LevelAttempt {
    /// 1-based, as operators count them.
    pub level: usize,
    pub ok: bool,
    pub devices: Vec<DeviceAttempt>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// Every device of `level` switched the node off and confirmed it.
    Fenced { level: usize },
    /// No level succeeded: the node may still be writing. Nobody may take
    /// over its instances until an operator confirms a manual fence.
    Unfenceable { reasons: Vec<String> },
    /// An operator checked the node is off and said so.
    ManuallyConfirmed { by: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub node: String,
    /// Unix time in milliseconds when fencing started.
    pub started_ms: u64,
    pub delay_ms: u64,
    pub duration_ms: u64,
    #[serde(default)]
    pub levels: Vec<LevelAttempt>,
    pub outcome: Outcome,
}

impl Record {
    /// Whether another node may now take over this node's instances.
    pub fn safe_to_take_over(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Fenced { .. } | Outcome::ManuallyConfirmed { .. }
        )
    }

    pub fn summary(&self) -> String {
        match &self.outcome {
            Outcome::Fenced { level } => format!("fenced by level {level}"),
            Outcome::Unfenceable { reasons } => {
                format!("unfenceable: manual action needed ({})", reasons.join("; "))
            }
            Outcome::ManuallyConfirmed { by } => format!("manual fence confirmed by {by}"),
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The fence history could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct HistoryError {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

impl From<HistoryError> for String {
    fn from(e: HistoryError) -> String {
        e.to_string()
    }
}

#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
}

impl History {
    pub fn new(state_dir: &Path) -> Self {
        History {
            path: state_dir.join("fence-history.jsonl"),
        }
    }

    /// Appends `record` durably: the line is synced, and so is the
    /// directory when this created the file.
    pub fn append(&self, record: &Record) -> Result<(), HistoryError> {
        let dir = self.path.parent().expect("state dir");
        let at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HistoryError { path, source }
        };
        fs::create_dir_all(dir).map_err(at(dir))?;
        let mut line = serde_json::to_string(record).expect("record serializes");
        line.push('\n');
        let created = !self.path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(at(&self.path))?;
        file.write_all(line.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(at(&self.path))?;
        if created {
            fulmar_daemon::durable::sync_dir(dir).map_err(at(dir))?;
        }
        Ok(())
    }

    /// Every record, oldest first; a torn last line (crash while writing)
    /// is skipped.
    pub fn records(&self) -> Result<Vec<Record>, String> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    pub fn last(&self, node: &str) -> Result<Option<Record>, String> {
        Ok(self.records()?.into_iter().rfind(|r| r.node == node))
    }
}
