//! Session operations through the product's own path: clients on the far
//! side of the XDP balancer, three fulmar-proxyd, fulmar-maild homes, and
//! `fulmar` finding the proxies through the balancer's reals.
//!
//! 1. An account with sessions on all three proxies is kicked: every one
//!    of its sessions ends (BYE, then the close) within a second; another
//!    account's sessions answer NOOP after.
//! 2. `fulmar account move` of an account with an open session: the
//!    session is told BYE right after the mailHost switch; the client
//!    reconnects through the VIP, lands on the new instance and sets a
//!    flag there, which the new instance's own store holds, and the old
//!    instance keeps none of the account's messages.
//! 3. 200 IMAP sessions idle in IDLE across the three proxies; `fulmar
//!    proxy drain proxy1 within 20s` ends with proxy1 holding no session;
//!    each client that was there got BYE, reconnected through the VIP to
//!    another proxy and completed a NOOP; no session on proxy2/proxy3
//!    broke; the balancer sent proxy1 no new flow during the drain.
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fulmar_lab::{front::Front, topology};
use serde_json::Value;
use support::front;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::{Semaphore, watch},
};

fn json(front: &Front, args: &[&str]) -> Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let out = front
        .fulmar(&all)
        .unwrap_or_else(|e| panic!("fulmar {args:?}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Client address → proxy name, from `fulmar session list`.
fn where_sessions_are(front: &Front) -> BTreeMap<SocketAddr, (String, Option<String>)> {
    json(front, &["session", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["client"].as_str().unwrap().parse().unwrap(),
                (
                    s["proxy"].as_str().unwrap().to_string(),
                    s["account"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// An IMAP session from the client host through the IPv4 VIP.
struct Imap {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
    local: SocketAddr,
}

/// Deadline for any one answer.
const ANSWER: Duration = Duration::from_secs(20);

impl Imap {
    async fn login(user: &str, password: &str) -> std::io::Result<Imap> {
        let vip: SocketAddr = format!("{}:143", topology::VIP4).parse().unwrap();
        let tcp = TcpStream::connect(vip).await?;
        let local = tcp.local_addr()?;
        let (read, write) = tcp.into_split();
        let mut imap = Imap {
            read: BufReader::new(read),
            write,
            local,
        };
        imap.line().await?;
        imap.command(&format!("a LOGIN {user} {password}")).await?;
        Ok(imap)
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        match tokio::time::timeout(ANSWER, self.read.read_line(&mut line)).await {
            Ok(r) => r.map(|_| line),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Sends `tag ...` and reads to its tagged answer, which must be OK.
    async fn command(&mut self, command: &str) -> std::io::Result<()> {
        let tag = command.split(' ').next().unwrap().to_string();
        self.write
            .write_all(format!("{command}\r\n").as_bytes())
            .await?;
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return Err(std::io::Error::other(format!("closed during {command}")));
            }
            if line.starts_with(&format!("{tag} ")) {
                return if line.starts_with(&format!("{tag} OK")) {
                    Ok(())
                } else {
                    Err(std::io::Error::other(line))
                };
            }
        }
    }

    /// SELECT INBOX, then IDLE until the server's `+`.
    async fn idle(&mut self) -> std::io::Result<()> {
        self.command("s SELECT INBOX").await?;
        self.write.write_all(b"i IDLE\r\n").await?;
        loop {
            let line = self.line().await?;
            if line.starts_with("+ ") {
                return Ok(());
            }
            if line.is_empty() || line.starts_with("i ") {
                return Err(std::io::Error::other(format!("IDLE refused: {line:?}")));
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn kick_an_account_everywhere_move_one_then_drain_a_proxy_under_200_idle_sessions() {
    let started = Instant::now();
    let (_work, front) = front("front");
    eprintln!("front up after {:?}", started.elapsed());
    kick_an_account_on_three_proxies(&front);
    eprintln!("kick done after {:?}", started.elapsed());
    a_move_kicks_and_the_reconnected_client_writes_to_the_new_home(&front);
    eprintln!("move done after {:?}", started.elapsed());
    drain_proxy1_under_200_idle_sessions(&front);
    eprintln!("drain done after {:?}", started.elapsed());
}

/// The account's messages in one instance's store: file names in INBOX's
/// new/ and cur/ (maildir: flags after `:2,`).
fn stored(front: &Front, instance: &str, account: &str) -> Vec<String> {
    let inbox = front
        .work
        .join("volumes")
        .join(instance)
        .join("mail")
        .join(account)
        .join("INBOX");
    let mut names = Vec::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(inbox.join(sub)).unwrap() {
            names.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    names
}

fn a_move_kicks_and_the_reconnected_client_writes_to_the_new_home(front: &Front) {
    let (user, password) = fulmar_lab::front::MOVABLE;
    let out = front.lab.python(
        "client",
        &format!(
            "import smtplib\ns = smtplib.SMTP('{}', 25, local_hostname='client.test')\n\
             for i in range(3):\n    s.sendmail('x@elsewhere.test', ['{user}'], 'Subject: m%d\\r\\n\\r\\nbody\\r\\n' % i)\n\
             s.quit()\nprint('sent')\n",
            topology::VIP4
        ),
        String::new,
    );
    assert_eq!(out, "sent\n");
    assert_eq!(stored(front, "mail1", user).len(), 3);
    let mut before = Blocking::login(front, user, password);
    // The destination's (empty) mailbox, as an operator makes it first; a
    // second after the source's, so their UIDVALIDITYs differ.
    let root = front.work.join("volumes/mail2");
    front
        .lab
        .check(
            "node2",
            front.bins.maild.to_str().unwrap(),
            &["--root", root.to_str().unwrap(), "account-create", user],
        )
        .unwrap();
    let report = json(front, &["account", "move", user, "to", "mail2"]);
    assert_eq!(report["report"]["copied"], 3, "{report}");
    assert!(report["report"]["kicked"].as_u64() >= Some(1), "{report}");
    let bye = before.line();
    assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye:?}");
    assert_eq!(before.line(), "", "closed after the BYE");

    // The client comes back through the VIP and flags the first message.
    let mut after = Blocking::login(front, user, password);
    let stored_flag = after.command("f STORE 1 +FLAGS (\\Flagged)");
    assert!(stored_flag.starts_with("f OK"), "{stored_flag:?}");
    let sessions = json(front, &["session", "list", "account", user]);
    let client = after.local.to_string();
    let mine = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["client"] == client.as_str())
        .unwrap_or_else(|| panic!("{client} not in {sessions}"));
    assert_eq!(mine["backend"], fulmar_lab::front::INSTANCES[1].2, "{mine}");
    after.command("l LOGOUT");
    let on_mail2 = stored(front, "mail2", user);
    assert_eq!(on_mail2.len(), 3, "{on_mail2:?}");
    let flagged = on_mail2
        .iter()
        .filter(|n| n.rsplit_once(":2,").is_some_and(|(_, f)| f.contains('F')))
        .count();
    assert_eq!(flagged, 1, "mail2 holds {on_mail2:?}");
    assert_eq!(stored(front, "mail1", user), Vec::<String>::new());
}

/// A blocking IMAP session from the client host (its socket stays in
/// that namespace whichever thread reads it).
struct Blocking {
    read: std::io::BufReader<std::net::TcpStream>,
    write: std::net::TcpStream,
    local: SocketAddr,
}

impl Blocking {
    fn login(front: &Front, user: &'static str, password: &'static str) -> Blocking {
        let vip: SocketAddr = format!("{}:143", topology::VIP4).parse().unwrap();
        let tcp = front
            .lab
            .in_host("client", move || std::net::TcpStream::connect(vip))
            .unwrap()
            .unwrap();
        tcp.set_read_timeout(Some(ANSWER)).unwrap();
        let mut s = Blocking {
            local: tcp.local_addr().unwrap(),
            read: std::io::BufReader::new(tcp.try_clone().unwrap()),
            write: tcp,
        };
        s.line();
        s.command(&format!("a LOGIN {user} {password}"));
        s.command("s SELECT INBOX");
        s
    }

    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.read.read_line(&mut line).unwrap();
        line
    }

    fn command(&mut self, command: &str) -> String {
        use std::io::Write;
        let tag = command.split(' ').next().unwrap();
        self.write
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "closed during {command}");
            if line.starts_with(&format!("{tag} ")) {
                return line;
            }
        }
    }
}

fn kick_an_account_on_three_proxies(front: &Front) {
    // lc spreads new flows: six of ann's sessions land on all three.
    let mut anns: Vec<Blocking> = (0..6)
        .map(|_| Blocking::login(front, "ann", "ann-secret"))
        .collect();
    let mut bob = Blocking::login(front, "bob", "bob-secret");
    let placed = where_sessions_are(front);
    let proxies: BTreeSet<&str> = anns
        .iter()
        .map(|s| placed.get(&s.local).map_or("?", |(p, _)| p.as_str()))
        .collect();
    assert_eq!(proxies.len(), 3, "ann's sessions: {proxies:?} {placed:?}");
    let kicked = Instant::now();
    let reply = json(front, &["session", "kick", "account", "ann@mail.test"]);
    assert_eq!(reply["kicked"], 6, "{reply}");
    for s in &mut anns {
        let bye = s.line();
        assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye:?}");
        assert_eq!(s.line(), "", "closed after the BYE");
    }
    let elapsed = kicked.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "ann's sessions ended {elapsed:?} after the kick"
    );
    let noop = bob.command("n NOOP");
    assert!(
        noop.starts_with("n OK"),
        "bob's session after ann's kick: {noop:?}"
    );
}

/// What one idle client saw during the drain.
#[derive(Debug, Default, Clone)]
struct Fate {
    first: Option<SocketAddr>,
    /// Told BYE, then reconnected and did a NOOP from here.
    moved_to: Option<SocketAddr>,
    /// The session ended without a BYE, or a reconnect failed.
    broken: Option<String>,
}

/// The proxy's auth penalty spaces parallel logins from one address as it
/// would a run of failures (one client host here stands for many), so the
/// clients log in two at a time.
async fn login(logins: &Semaphore) -> std::io::Result<Imap> {
    let _permit = logins.acquire().await.expect("open");
    Imap::login("bob", "bob-secret").await
}

async fn idle_client(stop: watch::Receiver<bool>, fate: Arc<Mutex<Fate>>, logins: Arc<Semaphore>) {
    let result: std::io::Result<()> = async {
        let mut s = login(&logins).await?;
        fate.lock().unwrap().first = Some(s.local);
        s.idle().await?;
        let mut stop_wait = stop.clone();
        let line = tokio::select! {
            line = async { loop {
                let line = s.read_line_raw().await?;
                if line.is_empty() || line.starts_with("* BYE") { return Ok::<_, std::io::Error>(line) }
            } } => line?,
            _ = async { let _ = stop_wait.wait_for(|s| *s).await; } => {
                // Still on its first proxy at the end: a clean finish.
                s.write.write_all(b"DONE\r\n").await?;
                return Ok(());
            }
        };
        if !line.starts_with("* BYE") {
            return Err(std::io::Error::other("closed without BYE"));
        }
        let mut again = login(&logins).await?;
        again.command("n NOOP").await?;
        fate.lock().unwrap().moved_to = Some(again.local);
        again.idle().await?;
        let mut stop_wait = stop;
        let _ = stop_wait.wait_for(|s| *s).await;
        again.write.write_all(b"DONE\r\n").await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        fate.lock().unwrap().broken = Some(e.to_string());
    }
}

impl Imap {
    /// The next line, waiting as long as it takes (an idle session).
    async fn read_line_raw(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        self.read.read_line(&mut line).await?;
        Ok(line)
    }
}

/// proxy1's new flows at the balancer, over all its services.
fn proxy1_new_flows(front: &Front) -> u64 {
    json(front, &["-s", "real", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| matches!(r["real"].as_str(), Some(a) if a.starts_with("198.18.1.11") || a.starts_with("2001:db8:1::b")))
        .map(|r| r["stats"]["new_flows"].as_u64().unwrap_or(0))
        .sum()
}

fn drain_proxy1_under_200_idle_sessions(front: &Front) {
    const CLIENTS: usize = 200;
    let (stop_tx, stop) = watch::channel(false);
    let fates: Vec<Arc<Mutex<Fate>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let for_clients = fates.clone();
    // The clients run on their own thread in the client's namespace until
    // told to stop.
    let clients = {
        let path = front.lab.netns_path("client");
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns(2) on an open namespace file; this thread only.
            let r =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(r, 0);
            runtime().block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                let logins = Arc::new(Semaphore::new(2));
                for fate in for_clients {
                    tasks.spawn(idle_client(stop.clone(), fate, logins.clone()));
                }
                while tasks.join_next().await.is_some() {}
            })
        })
    };
    // Every client idling on some proxy.
    let deadline = Instant::now() + Duration::from_secs(120);
    let placed = loop {
        let placed = where_sessions_are(front);
        let bobs = placed
            .values()
            .filter(|(_, a)| a.as_deref() == Some("bob@mail.test"))
            .count();
        if bobs == CLIENTS || Instant::now() > deadline {
            break placed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Only the clients: the balancer's health checks come and go too.
    let on_proxy1: BTreeSet<SocketAddr> = placed
        .iter()
        .filter(|(_, (p, a))| p == "proxy1" && a.as_deref() == Some("bob@mail.test"))
        .map(|(c, _)| *c)
        .collect();
    let bobs = placed
        .values()
        .filter(|(_, a)| a.as_deref() == Some("bob@mail.test"))
        .count();
    if bobs != CLIENTS {
        let broken: Vec<Fate> = fates
            .iter()
            .map(|f| f.lock().unwrap().clone())
            .filter(|f| f.broken.is_some())
            .take(5)
            .collect();
        panic!("{bobs} of {CLIENTS} clients idle after 120 s; some that broke: {broken:?}");
    }
    assert!(
        on_proxy1.len() >= CLIENTS / 5,
        "lc placed {} on proxy1",
        on_proxy1.len()
    );
    let flows_before = proxy1_new_flows(front);
    eprintln!(
        "{CLIENTS} clients idle after {:?}",
        Duration::from_secs(120) - deadline.saturating_duration_since(Instant::now())
    );

    let out = front
        .fulmar(&["proxy", "drain", "proxy1", "within", "20s"])
        .expect("drain");
    assert!(out.contains("drained in"), "{out}");
    eprintln!("{} idle sessions on proxy1; fulmar: {out}", on_proxy1.len());
    let flows_after = proxy1_new_flows(front);
    let listed = json(front, &["proxy", "list"]);
    let proxy1 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "proxy1")
        .unwrap();
    assert_eq!(proxy1["sessions"], 0, "{listed}");

    // Every moved client's NOOP is done once all of them have reported.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let moved = fates
            .iter()
            .filter(|f| f.lock().unwrap().moved_to.is_some())
            .count();
        let broken = fates
            .iter()
            .filter(|f| f.lock().unwrap().broken.is_some())
            .count();
        if moved + broken >= on_proxy1.len() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = where_sessions_are(front);
    stop_tx.send_replace(true);
    clients.join().unwrap();
    let fates: Vec<Fate> = fates.iter().map(|f| f.lock().unwrap().clone()).collect();
    let broken: Vec<&Fate> = fates.iter().filter(|f| f.broken.is_some()).collect();
    assert!(
        broken.is_empty(),
        "{} clients broke: {broken:?}",
        broken.len()
    );
    for fate in &fates {
        let first = fate.first.expect("logged in");
        if on_proxy1.contains(&first) {
            let to = fate
                .moved_to
                .unwrap_or_else(|| panic!("{first} was on proxy1 and never moved: {fate:?}"));
            let proxy = now.get(&to).map(|(p, _)| p.as_str());
            assert!(
                matches!(proxy, Some("proxy2" | "proxy3")),
                "{first} moved to {proxy:?}"
            );
        } else {
            assert!(
                fate.moved_to.is_none(),
                "{first} was not on proxy1 but was moved: {fate:?}"
            );
        }
    }
    assert_eq!(
        flows_after, flows_before,
        "the balancer sent proxy1 new flows during the drain"
    );
    front
        .fulmar(&["proxy", "undrain", "proxy1"])
        .expect("undrain");
}
