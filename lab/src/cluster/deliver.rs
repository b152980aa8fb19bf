//! The cluster lab's client: numbered LMTP deliveries to the instance VIP,
//! each 250 recorded with its time.
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{JoinHandle, sleep},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::VIP;
use crate::Lab;

pub(super) const USER: &str = "ann@example.test";

/// Delivers numbered messages over LMTP to the VIP from the client, one at
/// a time, and records each one that got its 250.
pub struct Deliverer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
    thread: Option<JoinHandle<Result<(), crate::LabError>>>,
}

impl Deliverer {
    pub fn start(lab: &Lab, interval: Duration) -> Deliverer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = lab.thread_in("client", move || {
            let mut seq = 0u64;
            while !s.load(Ordering::Relaxed) {
                // Refused, reset, timed out: the instance is moving; retry.
                let _ = session(&s, &a, &mut seq, interval);
                sleep(Duration::from_millis(20));
            }
        });
        Deliverer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// (sequence, when its 250 came) so far.
    pub fn acked(&self) -> Vec<(u64, Instant)> {
        self.acked.lock().expect("acked").clone()
    }

    /// The first 250 after `t`, if any.
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.acked
            .lock()
            .expect("acked")
            .iter()
            .map(|(_, at)| *at)
            .find(|at| *at > t)
    }

    /// The outage a fault at `t` caused: from `t` to the end of the longest
    /// gap between 250s after it (replies in flight at `t` do not count as
    /// serving again). None while nothing was acknowledged since.
    pub fn outage_after(&self, t: Instant) -> Option<Duration> {
        self.longest_gap(t).map(|(_, end)| end - t)
    }

    /// The longest pause between 250s after `t`.
    pub fn longest_gap_after(&self, t: Instant) -> Duration {
        self.longest_gap(t).map(|(gap, _)| gap).unwrap_or_default()
    }

    /// (length, end) of the longest gap between 250s after `t`, counting
    /// from `t`; the later one wins a tie.
    fn longest_gap(&self, t: Instant) -> Option<(Duration, Instant)> {
        let acked = self.acked.lock().expect("acked");
        let mut prev = t;
        let mut longest = None;
        for at in acked.iter().map(|(_, at)| *at).filter(|at| *at > t) {
            if longest.is_none_or(|(gap, _)| at - prev >= gap) {
                longest = Some((at - prev, at));
            }
            prev = at;
        }
        longest
    }

    /// Waits for a 250 after `t`.
    pub fn wait_ack_after(&self, t: Instant, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(at) = self.first_ack_after(t) {
                return Some(at);
            }
            sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stop(mut self) -> Vec<(u64, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && let Ok(Err(e)) = t.join()
        {
            panic!("the client thread could not enter the client's namespace: {e}");
        }
        self.acked()
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One LMTP connection, as many messages as it lasts.
fn session(
    stop: &AtomicBool,
    acked: &Mutex<Vec<(u64, Instant)>>,
    seq: &mut u64,
    interval: Duration,
) -> std::io::Result<()> {
    let target: SocketAddr = format!("{VIP}:24").parse().expect("vip");
    let stream = TcpStream::connect_timeout(&target, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let reply = |r: &mut BufReader<TcpStream>| -> std::io::Result<String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line);
            }
        }
    };
    let expect = |line: String, code: &str| {
        if line.starts_with(code) {
            Ok(())
        } else {
            Err(std::io::Error::other(line))
        }
    };
    expect(reply(&mut r)?, "220")?;
    w.write_all(b"LHLO client.test\r\n")?;
    expect(reply(&mut r)?, "250")?;
    while !stop.load(Ordering::Relaxed) {
        *seq += 1;
        let n = *seq;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        w.write_all(
            format!("MAIL FROM:<probe@client.test>\r\nRCPT TO:<{USER}>\r\nDATA\r\n").as_bytes(),
        )?;
        expect(reply(&mut r)?, "250")?;
        expect(reply(&mut r)?, "250")?;
        expect(reply(&mut r)?, "354")?;
        w.write_all(
            format!(
                "From: probe@client.test\r\nTo: {USER}\r\nSubject: delivery {n}\r\n\
                 X-Seq: {n}\r\nX-Sent-Ms: {stamp}\r\n\r\nmessage {n}\r\n.\r\n"
            )
            .as_bytes(),
        )?;
        expect(reply(&mut r)?, "250")?;
        acked.lock().expect("acked").push((n, Instant::now()));
        sleep(interval);
    }
    let _ = w.write_all(b"QUIT\r\n");
    Ok(())
}
