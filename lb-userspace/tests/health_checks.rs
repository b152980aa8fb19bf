//! The health probes and the agent check against real servers on real
//! sockets, inside a lab host: greetings right and wrong, implicit TLS
//! with a self-signed certificate, silence, refusal, and agent words.
use std::{sync::Arc, time::Duration};

use fulmar_lab::{Lab, LabSpec};
use fulmar_lb::{
    command::{CheckDefaults, RealOpts},
    effective::AgentVerdict,
    health::{self, ask_agent},
    model::{CheckConf, CheckKind},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// Serves `greeting`, then answers EHLO with `ehlo` and QUIT with 221.
async fn mail_server(port: u16, greeting: &'static str, ehlo: &'static str) {
    let listener = TcpListener::bind(("198.18.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                write.write_all(greeting.as_bytes()).await.ok();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = if line.starts_with("EHLO") {
                        ehlo
                    } else {
                        "221 bye\r\n"
                    };
                    write.write_all(reply.as_bytes()).await.ok();
                }
            });
        }
    });
}

async fn tls_imap_server(port: u16) {
    let cert = rcgen::generate_simple_self_signed(vec!["mail.example.test".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(("198.18.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(conn).await {
                    tls.write_all(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
                        .await
                        .ok();
                    let mut buf = [0u8; 64];
                    let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
                }
            });
        }
    });
}

async fn agent(port: u16, says: &'static str) {
    let listener = TcpListener::bind(("198.18.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.write_all(says.as_bytes()).await.ok();
        }
    });
}

fn check(kind: CheckKind, tls: bool) -> CheckConf {
    let mut c = RealOpts::default().new_check(1, &CheckDefaults::default());
    c.kind = kind;
    c.tls = tls;
    c
}

/// The probe's verdict as the operator reads it.
async fn probe(endpoint: std::net::SocketAddr, check: &CheckConf) -> Result<(), String> {
    health::probe(endpoint, check)
        .await
        .map_err(|e| e.to_string())
}

#[test]
fn probes_judge_real_servers() {
    let lab = Lab::build(&LabSpec::lan(&[("checks", "198.18.0.1/24")])).expect("lab");
    lab.in_host("checks", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            mail_server(
                25,
                "220-mx.example.test ESMTP\r\n220 ready\r\n",
                "250-mx\r\n250 SIZE 1000\r\n",
            )
            .await;
            mail_server(26, "554 go away\r\n", "250 mx\r\n").await;
            mail_server(27, "220 mx\r\n", "502 no\r\n").await;
            mail_server(143, "* OK IMAP ready\r\n", "").await;
            mail_server(144, "* BYE overloaded\r\n", "").await;
            mail_server(110, "+OK POP3 ready\r\n", "").await;
            tls_imap_server(993).await;
            // Accepts and never speaks.
            let silent = TcpListener::bind(("198.18.0.1", 2000)).await.unwrap();
            agent(5001, "ready 75%\n").await;
            agent(5002, "drain\n").await;
            agent(5003, "maint\n").await;
            agent(5004, "nonsense\n").await;

            let at = |port: u16| std::net::SocketAddr::from(([198, 18, 0, 1], port));
            assert_eq!(probe(at(25), &check(CheckKind::Smtp, false)).await, Ok(()));
            let e = probe(at(26), &check(CheckKind::Smtp, false))
                .await
                .unwrap_err();
            assert!(e.contains("554"), "{e}");
            let e = probe(at(27), &check(CheckKind::Smtp, false))
                .await
                .unwrap_err();
            assert!(e.contains("502"), "{e}");
            assert_eq!(probe(at(143), &check(CheckKind::Imap, false)).await, Ok(()));
            let e = probe(at(144), &check(CheckKind::Imap, false))
                .await
                .unwrap_err();
            assert!(e.contains("BYE"), "{e}");
            assert_eq!(probe(at(110), &check(CheckKind::Pop3, false)).await, Ok(()));
            let e = probe(at(143), &check(CheckKind::Pop3, false))
                .await
                .unwrap_err();
            assert!(e.contains("+OK"), "{e}");
            assert_eq!(probe(at(993), &check(CheckKind::Imap, true)).await, Ok(()));
            // Plain text against the TLS port: no greeting within the timeout.
            assert!(
                probe(at(993), &check(CheckKind::Imap, false))
                    .await
                    .is_err()
            );
            // TLS against a plain port: the handshake fails.
            let e = probe(at(143), &check(CheckKind::Imap, true))
                .await
                .unwrap_err();
            assert!(e.contains("TLS"), "{e}");
            let e = probe(at(2000), &check(CheckKind::Imap, false))
                .await
                .unwrap_err();
            assert!(e.contains("no answer within 250ms"), "{e}");
            // A TCP check passes on a listener that never speaks.
            assert_eq!(probe(at(2000), &check(CheckKind::Tcp, false)).await, Ok(()));
            let e = probe(at(2001), &check(CheckKind::Tcp, false))
                .await
                .unwrap_err();
            assert!(e.contains("refused"), "{e}");
            drop(silent);

            let t = Duration::from_millis(250);
            assert_eq!(
                ask_agent(at(5001), t).await,
                Some(AgentVerdict::Ready { percent: 75 })
            );
            assert_eq!(ask_agent(at(5002), t).await, Some(AgentVerdict::Drain));
            assert_eq!(ask_agent(at(5003), t).await, Some(AgentVerdict::Down));
            assert_eq!(ask_agent(at(5004), t).await, None);
            // No agent listening: it says nothing, the health check decides.
            assert_eq!(ask_agent(at(5005), t).await, None);
        });
    })
    .unwrap();
}
