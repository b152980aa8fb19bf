//! What an idle IMAP session costs a server in memory: the proportional
//! set size (PSS: shared pages divided among their users, so one process
//! per session is not counted as many copies of its libraries) of the
//! server's whole process tree, with `n` sessions logged in and idle on
//! their INBOX, less without them, per session.
use std::{fs, net::SocketAddr, time::Duration};

use anyhow::{Result, bail};
use tokio::{io::BufReader, net::TcpStream};

use super::{ADDRESS, PASSWORD, answer};

/// KiB of PSS per idle session of the server whose first process is `root`.
pub fn per_idle_session(to: SocketAddr, root: u32, n: usize) -> Result<f64> {
    let runtime = crate::lab::client_runtime()?;
    runtime.block_on(async move {
        let before = tree_pss_kib(root)?;
        let mut open = Vec::with_capacity(n);
        for _ in 0..n {
            let tcp = TcpStream::connect(to).await?;
            let mut conn = BufReader::new(tcp);
            answer(&mut conn, "", "").await?;
            answer(&mut conn, "a", &format!("LOGIN {ADDRESS} {PASSWORD}")).await?;
            answer(&mut conn, "b", "SELECT INBOX").await?;
            open.push(conn);
        }
        // Let servers that hand a session to a new process settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = tree_pss_kib(root)?;
        for mut conn in open {
            answer(&mut conn, "z", "LOGOUT").await?;
        }
        Ok((during - before) as f64 / n as f64)
    })
}

/// PSS (KiB) of `root` and every process below it.
fn tree_pss_kib(root: u32) -> Result<u64> {
    let mut parent_of = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`: the comm may hold spaces and parens.
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    let mut total = 0;
    for pid in tree {
        let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        let pss = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        match pss {
            Some(kib) => total += kib,
            None => bail!("no Pss in /proc/{pid}/smaps_rollup"),
        }
    }
    Ok(total)
}
