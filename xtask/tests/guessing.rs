//! Password guessing through the balancer's VIP meets one schedule for
//! the whole proxy tier: the balancer spreads a guesser's connections over
//! three proxies, which share every reservation and failure (the penalty
//! sync), so the guesser gets about one proxy's checks, not three
//! proxies'. First nine guessers from one address against one account,
//! then nine spread over twenty addresses against another; meanwhile an
//! owner from elsewhere logs in at once.
mod support;

use fulmar_lab::{front::MOVABLE, topology};
use support::front;

/// How long each attack runs, and the most password checks it may get in
/// that time from the shipped schedule (3 free, then 1 s, 2 s, 4 s, 8 s,
/// 15 s apart): 3 free + 1, 3, 7, 15 s = 7 in 16 s by one proxy's
/// schedule, plus the free checks two other proxies may admit in the
/// sync's race window (a burst that opens on every proxy within one
/// datagram's flight), as the README says. Three unshared schedules give
/// 3 × 7 = 21.
const SECONDS: u32 = 16;
const MOST_CHECKS: usize = 7 + 6;

#[test]
fn a_guesser_spread_over_the_tier_gets_one_schedule() {
    let (_work, front) = front("guessing");
    let lab = &front.lab;
    for n in 99..120 {
        lab.check(
            "client",
            "ip",
            &["addr", "add", &format!("198.18.0.{n}/24"), "dev", "eth0"],
        )
        .unwrap();
    }
    let out = lab.python(
        "client",
        &format!(
            r#"
import socket, threading, time
VIP = "{vip}"
def attempt(src, user, pw, until):
    s = socket.create_connection((VIP, 143), timeout=max(0.1, until - time.time()), source_address=(src, 0))
    try:
        f = s.makefile("rb"); f.readline()
        s.settimeout(max(0.1, until - time.time()))
        s.sendall(f"a LOGIN {{user}} {{pw}}\r\n".encode())
        return f.readline().decode()
    except OSError:
        return "unanswered"
    finally:
        s.close()
def attack(sources, user, bystander):
    results, until = [], time.time() + {seconds}
    def worker(k):
        i = k
        while time.time() < until:
            results.append(attempt(sources[i % len(sources)], user, "wrong", until)); i += 9
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(9)]
    for t in ts: t.start()
    time.sleep(3)
    t0 = time.time()
    ok = attempt("198.18.0.99", bystander[0], bystander[1], time.time() + 10)
    print(user, "bystander", ok.split(" ")[1], round(time.time() - t0, 2))
    for t in ts: t.join()
    checked = sum("AUTHENTICATIONFAILED" in r for r in results)
    throttled = sum("Too many failed" in r for r in results)
    print(user, "checked", checked, "throttled", throttled, "unanswered", results.count("unanswered"), "other", len(results) - checked - throttled - results.count("unanswered"))
attack(["198.18.0.10"], "ann", ("bob", "bob-secret"))
attack([f"198.18.0.{{n}}" for n in range(100, 120)], "bob", ("{carol}", "{carol_pw}"))
"#,
            vip = topology::VIP4,
            seconds = SECONDS,
            carol = MOVABLE.0,
            carol_pw = MOVABLE.1,
        ),
        String::new,
    );
    println!("{out}");
    for (user, bystander) in [("ann", "bob"), ("bob", MOVABLE.0)] {
        let line = |what: &str| -> Vec<String> {
            out.lines()
                .find(|l| l.starts_with(&format!("{user} {what}")))
                .unwrap_or_else(|| panic!("no {user} {what}: {out}"))
                .split(' ')
                .map(String::from)
                .collect()
        };
        let figures = line("checked");
        let checked: usize = figures[2].parse().unwrap();
        let other: usize = figures[8].parse().unwrap();
        assert!(
            checked <= MOST_CHECKS,
            "{user}: {checked} passwords checked in {SECONDS} s, more than one schedule allows: {out}"
        );
        assert_eq!(other, 0, "{out}");
        let by = line("bystander");
        assert_eq!(by[2], "OK", "{bystander} was not let in: {out}");
        let took: f64 = by[3].parse().unwrap();
        assert!(took < 2.0, "{bystander} waited {took} s: {out}");
    }
    // Every proxy took part: the sync's counters moved on all three.
    for addr in fulmar_lab::front::PROXY_ADDRS {
        let metrics = lab.python(
            "balancer",
            &format!(
                "import urllib.request\nprint(urllib.request.urlopen('http://{addr}:{}/metrics', timeout=5).read().decode())",
                fulmar_lab::front::PROXY_METRICS
            ),
            String::new,
        );
        let count = |event: &str| -> u64 {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "fulmar_proxy_penalty_sync_events_total{{event=\"{event}\"}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("{addr}: no {event} count:\n{metrics}"))
        };
        assert!(
            count("sent") > 0 && count("applied") > 0,
            "{addr}: {metrics}"
        );
        assert_eq!(count("rejected"), 0, "{addr}");
    }
}
