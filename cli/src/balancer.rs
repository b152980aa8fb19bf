//! The balancer's objects: requests to fulmar-lbd over its control socket,
//! answers printed as text or JSON.
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
};

use fulmar_lb::{
    command,
    rows::{Reply, Request, Response},
};

use crate::Options;

pub fn batch(opts: &Options, file: &str) -> Result<(), String> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading stdin: {e}"))?;
    } else {
        text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    }
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Check the grammar locally, for line numbers without a daemon.
    for (n, line) in lines.iter().enumerate() {
        let words = command::split_line(line);
        if !words.is_empty() {
            command::parse(&words).map_err(|e| format!("{file}: line {}: {e}", n + 1))?;
        }
    }
    exchange(opts, &Request::Batch { lines }, false).map_err(|e| format!("{file}: {e}"))
}

pub fn exchange(opts: &Options, request: &Request, stream: bool) -> Result<(), String> {
    let mut conn = UnixStream::connect(&opts.socket).map_err(|e| {
        format!(
            "cannot reach fulmar-lbd at {}: {e} (is it running? `systemctl status fulmar-lbd`)",
            opts.socket.display()
        )
    })?;
    let mut line = serde_json::to_string(request).expect("request serializes");
    line.push('\n');
    conn.write_all(line.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let reader = BufReader::new(conn);
    for line in reader.lines() {
        let line = line.map_err(|e| format!("reading the answer: {e}"))?;
        let response: Response = serde_json::from_str(&line)
            .map_err(|e| format!("garbled answer from fulmar-lbd: {e}"))?;
        match response {
            Response::Error(e) => return Err(e),
            Response::Ok(reply) => print(opts, &reply),
        }
        if !stream {
            return Ok(());
        }
    }
    if stream {
        Err("fulmar-lbd closed the monitor".into())
    } else {
        Err("fulmar-lbd did not answer".into())
    }
}

/// One request whose answer is used, not printed (`fulmar proxy` reads
/// the reals: the balancer's real list is the proxy inventory).
pub fn request(opts: &Options, argv: &[&str]) -> Result<Reply, String> {
    let mut conn = UnixStream::connect(&opts.socket).map_err(|e| {
        format!(
            "cannot reach fulmar-lbd at {}: {e} (the proxies are found through the balancer's reals)",
            opts.socket.display()
        )
    })?;
    let request = Request::Command {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        stats: 0,
    };
    let mut line = serde_json::to_string(&request).expect("request serializes");
    line.push('\n');
    conn.write_all(line.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let mut answer = String::new();
    BufReader::new(conn)
        .read_line(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    match serde_json::from_str(&answer) {
        Ok(Response::Ok(reply)) => Ok(reply),
        Ok(Response::Error(e)) => Err(e),
        Err(e) => Err(format!("garbled answer from fulmar-lbd: {e}")),
    }
}

fn print(opts: &Options, reply: &Reply) {
    let mut out = std::io::stdout().lock();
    let text = if opts.json {
        if matches!(reply, Reply::Done(t) if t.is_empty()) {
            return;
        }
        format!("{}\n", reply.json(opts.pretty))
    } else {
        reply.text()
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
