//! The pool against a real slapd: connections it keeps across a restart
//! of the directory are dead, and a login must not fail on them while the
//! directory is up again; over ldaps, the server's certificate is checked
//! against the configured CA; a directory that stops answering costs one
//! timeout, not one per operation, and is used again once it answers.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use fulmar_daemon::secret::Secret;
use fulmar_directory::{Connection, Pool};
use fulmar_lab::{Lab, LabSpec, certs::Ca, freeze, mail};

const ADDR: &str = "198.18.7.20";
const BASE: &str = "dc=pool,dc=test";
const DN: &str = "uid=ann,ou=people,dc=pool,dc=test";

fn directory() -> mail::Directory<'static> {
    mail::Directory {
        base: BASE,
        service_password: "svc-secret",
        accounts: vec![mail::Account {
            uid: "ann",
            password: "ann-pw",
            addresses: vec!["ann@pool.test".into()],
            mail_host: Some("198.18.7.11"),
        }],
        domains: vec![],
        admin_password: None,
        tls: None,
    }
}

/// A runtime whose worker was made in the directory host's namespace, so
/// the pool's sockets are opened there (futures run on the worker: spawn
/// them; block_on alone would run them on this thread, in the root
/// namespace).
fn runtime_in(lab: &Lab) -> tokio::runtime::Runtime {
    lab.in_host("dir", || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
    .unwrap()
}

#[test]
fn binds_survive_a_directory_restart() {
    let mut lab = Lab::build(&LabSpec::lan(&[("dir", &format!("{ADDR}/24"))])).unwrap();
    let work = lab.log_dir().join("slapd");
    let pid = mail::start_slapd(&mut lab, "dir", ADDR, &work, &directory()).unwrap();
    let rt = runtime_in(&lab);
    let pool = Arc::new(Pool::new(Connection {
        urls: vec![format!("ldap://{ADDR}:389")],
        bind_dn: format!("cn=proxy,{BASE}"),
        bind_password: Secret::new("svc-secret"),
        timeout: Duration::from_secs(2),
        pool_size: 4,
        tls: None,
    }));
    let binds = |pool: &Arc<Pool>, n: usize| {
        let pool = pool.clone();
        rt.block_on(rt.spawn(async move {
            let password = Secret::new("ann-pw");
            let checks = (0..n).map(|_| pool.check_password(DN, &password));
            // join_all polls every check before any finishes.
            futures::future::join_all(checks).await
        }))
        .unwrap()
    };
    // Four at once: four connections, all kept for later binds.
    assert!(binds(&pool, 4).iter().all(|r| matches!(r, Ok(true))));

    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    mail::start_slapd(&mut lab, "dir", ADDR, &work, &directory()).unwrap();
    let after = binds(&pool, 1);
    assert!(
        matches!(after[..], [Ok(true)]),
        "a login after the restart: {after:?}"
    );
}

#[test]
fn a_hung_directory_costs_one_timeout_then_fails_fast_until_it_answers() {
    let mut lab = Lab::build(&LabSpec::lan(&[("dir", &format!("{ADDR}/24"))])).unwrap();
    let work = lab.log_dir().join("slapd");
    let pid = mail::start_slapd(&mut lab, "dir", ADDR, &work, &directory()).unwrap() as i32;
    let rt = runtime_in(&lab);
    const TIMEOUT: Duration = Duration::from_secs(2);
    let pool = Arc::new(Pool::new(Connection {
        urls: vec![format!("ldap://{ADDR}:389")],
        bind_dn: format!("cn=proxy,{BASE}"),
        bind_password: Secret::new("svc-secret"),
        timeout: TIMEOUT,
        pool_size: 2,
        tls: None,
    }));
    // A login as the proxy does it: the account's search, then the bind.
    let login = |pool: &Arc<Pool>| {
        let pool = pool.clone();
        rt.block_on(rt.spawn(async move {
            let started = Instant::now();
            let found = pool.search(BASE, "(uid=ann)", &["mailHost"]).await;
            let bound = pool.check_password(DN, &Secret::new("ann-pw")).await;
            (
                found.is_ok() && matches!(bound, Ok(true)),
                started.elapsed(),
            )
        }))
        .unwrap()
    };
    assert!(login(&pool).0, "a login while the directory answers");

    // Hung, as a dead node's address is: connections stay open, nothing
    // answers.
    freeze::freeze(pid).unwrap();
    let first = login(&pool);
    assert!(!first.0, "a login with the directory hung succeeded");
    let rest: Vec<_> = (0..10).map(|_| login(&pool)).collect();
    let waited: Duration = rest.iter().map(|(_, d)| *d).sum();
    assert!(rest.iter().all(|(ok, _)| !ok));
    // Without the breaker each of these waits at least one timeout.
    assert!(
        waited < TIMEOUT,
        "ten logins after the first ({first:?}) waited {waited:?} on a hung directory"
    );

    freeze::thaw(pid);
    let resumed = Instant::now();
    let deadline = resumed + TIMEOUT * 5;
    while !login(&pool).0 {
        assert!(
            Instant::now() < deadline,
            "no login within {:?} of the directory answering again",
            TIMEOUT * 5
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "first login on the hung directory: {:?}; ten more: {waited:?}; served again {:?} after it resumed",
        first.1,
        resumed.elapsed()
    );
}

#[test]
fn ldaps_is_checked_against_the_configured_ca() {
    let mut lab = Lab::build(&LabSpec::lan(&[("dir", &format!("{ADDR}/24"))])).unwrap();
    let certs = lab.log_dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    // The directory's CA, and another CA that issued a certificate for
    // the same address.
    let (ca, other) = (Ca::new().unwrap(), Ca::new().unwrap());
    ca.write(&certs.join("dir-ca.crt")).unwrap();
    other.write(&certs.join("other-ca.crt")).unwrap();
    ca.issue(&[ADDR], &certs.join("dir.crt"), &certs.join("dir.key"))
        .unwrap();
    let mut dir = directory();
    let (crt, key) = (certs.join("dir.crt"), certs.join("dir.key"));
    dir.tls = Some(mail::Tls {
        certificate: &crt,
        key: &key,
    });
    let work = lab.log_dir().join("slapd");
    mail::start_slapd(&mut lab, "dir", ADDR, &work, &dir).unwrap();
    let rt = runtime_in(&lab);
    let attempt = |ca: Option<&str>| {
        let tls = ca.map(|name| {
            fulmar_daemon::tls_client_config(&certs.join(format!("{name}-ca.crt"))).unwrap()
        });
        let pool = Pool::new(Connection {
            urls: vec![format!("ldaps://{ADDR}")],
            bind_dn: format!("cn=proxy,{BASE}"),
            bind_password: Secret::new("svc-secret"),
            timeout: Duration::from_secs(2),
            pool_size: 1,
            tls,
        });
        rt.block_on(rt.spawn(async move {
            let found = pool.search(BASE, "(uid=ann)", &["mailHost"]).await;
            let checked = pool.check_password(DN, &Secret::new("ann-pw")).await;
            (found.map(|e| e.len()), checked)
        }))
        .unwrap()
    };
    let (found, checked) = attempt(Some("dir"));
    assert!(
        matches!((&found, &checked), (Ok(1), Ok(true))),
        "with the directory's CA: {found:?} {checked:?}"
    );
    // A certificate from another CA, or none configured (the system's
    // roots), is refused: no search, no password sent.
    for ca in [Some("other"), None] {
        let (found, checked) = attempt(ca);
        let e = format!("{found:?} {checked:?}");
        assert!(found.is_err() && checked.is_err(), "CA {ca:?}: {e}");
        assert!(e.to_lowercase().contains("certificate"), "CA {ca:?}: {e}");
    }
}
