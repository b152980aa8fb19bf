//! Every daemon of the front path scraped by a real Prometheus (Debian's)
//! with the shipped alert rules: the balancer, three proxies and two
//! fulmar-maild instances are `up`; the balancer reports every real up; a
//! login through the VIP is counted by a proxy and by the instance; and
//! draining proxy3 makes `FulmarRealDown` pending for exactly its reals
//! (the alert's `for` keeps it from firing in a test's time), and undrain
//! clears it.
mod support;

use std::time::Duration;

use fulmar_lab::topology;
use support::front;

const WITHIN: Duration = Duration::from_secs(30);

#[test]
fn prometheus_scrapes_every_daemon_and_evaluates_the_rules() {
    let (_work, front) = front("metrics");
    let (p, lab) = (front.prometheus(), &front.lab);
    let all = |expr: &str, n: usize| {
        p.wait_for(lab, expr, n, |_| true, WITHIN)
            .unwrap_or_else(|e| panic!("{e}"))
    };

    let up = p
        .wait_for(lab, "up{job=~\"fulmar-.*\"}", 6, |(_, v)| *v == 1.0, WITHIN)
        .unwrap_or_else(|e| panic!("{e}"));
    let jobs: Vec<&str> = up.iter().map(|(l, _)| l["job"].as_str()).collect();
    for job in ["fulmar-lbd", "fulmar-proxyd", "fulmar-maild"] {
        assert!(jobs.contains(&job), "{job} not scraped: {up:?}");
    }
    // 7 mail ports on 2 VIPs, 3 reals each.
    all("fulmar_lb_real_up == 1", 42);

    let out = lab.python(
        "client",
        &format!(
            "import imaplib\nm = imaplib.IMAP4('{}', 143)\nprint(m.login('ann', 'ann-secret')[0])\n\
             print(m.noop()[0])\nm.logout()\n",
            topology::VIP4
        ),
        String::new,
    );
    assert_eq!(out, "OK\nOK\n");
    p.wait_for(
        lab,
        "sum(fulmar_proxy_logins_total{protocol=\"imap\",result=\"ok\"})",
        1,
        |(_, v)| *v >= 1.0,
        WITHIN,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    p.wait_for(
        lab,
        // imaps: the shipped proxy.toml reaches the instances in TLS.
        "fulmar_maild_sessions_total{protocol=\"imaps\",instance=\"198.18.2.21:9423\"}",
        1,
        |(_, v)| *v >= 1.0,
        WITHIN,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    front
        .fulmar(&["proxy", "drain", "proxy3", "within", "1s"])
        .expect("drain proxy3");
    let pending = all(
        "ALERTS{alertname=\"FulmarRealDown\",alertstate=\"pending\"}",
        14,
    );
    for (labels, _) in &pending {
        assert!(
            ["198.18.1.13", "2001:db8:1::d"].contains(&labels["real"].as_str()),
            "{labels:?}"
        );
    }
    front
        .fulmar(&["proxy", "undrain", "proxy3"])
        .expect("undrain proxy3");
    all("ALERTS{alertname=\"FulmarRealDown\"}", 0);
    all("fulmar_lb_real_up == 1", 42);
}
