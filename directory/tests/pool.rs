//! The pool against a real slapd: connections it keeps across a restart
//! of the directory are dead, and a login must not fail on them while the
//! directory is up again.
use std::{sync::Arc, time::Duration};

use fulmar_daemon::secret::Secret;
use fulmar_directory::{Connection, Pool};
use fulmar_lab::{Lab, LabSpec, mail};

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
    }
}

#[test]
fn binds_survive_a_directory_restart() {
    let mut lab = Lab::build(&LabSpec::lan(&[("dir", &format!("{ADDR}/24"))])).unwrap();
    let work = lab.log_dir().join("slapd");
    let pid = mail::start_slapd(&mut lab, "dir", ADDR, &work, &directory()).unwrap();
    // The runtime's workers live in the directory's namespace, so the
    // pool's sockets do too.
    let rt = lab
        .in_host("dir", || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
        })
        .unwrap();
    let pool = Arc::new(Pool::new(Connection {
        urls: vec![format!("ldap://{ADDR}:389")],
        bind_dn: format!("cn=proxy,{BASE}"),
        bind_password: Secret::new("svc-secret"),
        timeout: Duration::from_secs(2),
        pool_size: 4,
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
