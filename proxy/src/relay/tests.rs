//! The relay over loopback sockets: a test client on one side, a scripted
//! back-end on the other, the kick from the registry.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use super::*;
use crate::{config::Protocol, registry::Registry};

/// Deadline for anything a test waits for.
const WAIT: Duration = Duration::from_secs(10);

/// Two connected sockets: (ours, the relay's).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (theirs, _) = listener.accept().await.unwrap();
    (ours, theirs)
}

struct Setup {
    client: TcpStream,
    backend: TcpStream,
    registry: Arc<Registry>,
    relay: JoinHandle<io::Result<End>>,
}

async fn start<T: Tracker + 'static>(tracker: T, grace: Duration) -> Setup {
    let (client, client_side) = pair().await;
    let (backend, backend_side) = pair().await;
    let registry = Arc::new(Registry::default());
    let peer: SocketAddr = "198.18.0.1:1000".parse().unwrap();
    let handle = registry.register("t", Protocol::Imap, peer);
    let relay = tokio::spawn(async move {
        let relay = Relay {
            tracker,
            handle: &handle,
            grace,
        };
        relay
            .run(
                Stream::Plain(client_side),
                b"a OK logged in\r\n",
                b"",
                Stream::Plain(backend_side),
                b"",
            )
            .await
    });
    let mut setup = Setup {
        client,
        backend,
        registry,
        relay,
    };
    setup.expect_client(b"a OK logged in\r\n").await;
    setup
}

async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf))
        .await
        .expect("in time")
        .unwrap();
    buf
}

/// Everything until the peer closes.
async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("closed in time")
        .unwrap();
    buf
}

impl Setup {
    async fn expect_client(&mut self, want: &[u8]) {
        assert_eq!(read_exact(&mut self.client, want.len()).await, want);
    }

    async fn expect_backend(&mut self, want: &[u8]) {
        assert_eq!(read_exact(&mut self.backend, want.len()).await, want);
    }

    /// Client sends, the back-end receives it.
    async fn command(&mut self, text: &[u8]) {
        self.client.write_all(text).await.unwrap();
        self.expect_backend(text).await;
    }

    /// The back-end answers, the client receives it.
    async fn answer(&mut self, text: &[u8]) {
        self.backend.write_all(text).await.unwrap();
        self.expect_client(text).await;
    }

    async fn end(self) -> End {
        tokio::time::timeout(WAIT, self.relay)
            .await
            .expect("relay ended in time")
            .unwrap()
            .unwrap()
    }
}

const IMAP_BYE: &[u8] =
    b"* BYE [UNAVAILABLE] Session ended by the administrator, please reconnect.\r\n";

#[tokio::test]
async fn an_idle_imap_session_gets_bye_at_once() {
    let mut s = start(Imap::default(), WAIT).await;
    s.command(b"b NOOP\r\n").await;
    s.answer(b"* 3 EXISTS\r\nb OK done\r\n").await;
    s.registry.kick(&crate::registry::Selector::All);
    assert_eq!(read_to_end(&mut s.client).await, IMAP_BYE);
    assert!(
        read_to_end(&mut s.backend).await.is_empty(),
        "nothing more for the back-end"
    );
    assert_eq!(s.end().await, End::Kicked);
}

#[tokio::test]
async fn a_busy_imap_session_ends_after_its_answer_and_sends_nothing_new() {
    let mut s = start(Imap::default(), WAIT).await;
    // A FETCH whose answer is on its way, literal and all.
    s.command(b"c FETCH 1 BODY[]\r\n").await;
    s.answer(b"* 1 FETCH (BODY[] {10}\r\n").await;
    s.registry.kick(&crate::registry::Selector::All);
    // The client's next command is held back from the back-end.
    s.client.write_all(b"d NOOP\r\n").await.unwrap();
    s.answer(b"0123456789)\r\n").await;
    s.answer(b"c OK FETCH done\r\n").await;
    assert_eq!(read_to_end(&mut s.client).await, IMAP_BYE);
    assert!(
        read_to_end(&mut s.backend).await.is_empty(),
        "d NOOP was not passed on"
    );
    assert_eq!(s.end().await, End::Kicked);
}

#[tokio::test]
async fn a_command_half_sent_is_finished_before_the_bye() {
    let mut s = start(Imap::default(), WAIT).await;
    s.command(b"e APPEND INBOX {5+}\r\nhe").await;
    s.registry.kick(&crate::registry::Selector::All);
    s.client.write_all(b"llo\r\nf NOOP\r\n").await.unwrap();
    s.expect_backend(b"llo\r\n").await;
    s.answer(b"e OK [APPENDUID 1 7] done\r\n").await;
    assert_eq!(read_to_end(&mut s.client).await, IMAP_BYE);
    assert!(read_to_end(&mut s.backend).await.is_empty());
    assert_eq!(s.end().await, End::Kicked);
}

#[tokio::test]
async fn an_idling_imap_session_counts_as_idle() {
    let mut s = start(Imap::default(), WAIT).await;
    s.command(b"g IDLE\r\n").await;
    s.answer(b"+ idling\r\n").await;
    s.answer(b"* 4 EXISTS\r\n").await;
    s.registry.kick(&crate::registry::Selector::All);
    assert_eq!(read_to_end(&mut s.client).await, IMAP_BYE);
    assert_eq!(s.end().await, End::Kicked);
}

#[tokio::test]
async fn after_done_the_idle_is_answered_first() {
    let mut s = start(Imap::default(), WAIT).await;
    s.command(b"g IDLE\r\n").await;
    s.answer(b"+ idling\r\n").await;
    s.command(b"DONE\r\n").await;
    s.registry.kick(&crate::registry::Selector::All);
    s.answer(b"g OK IDLE done\r\n").await;
    assert_eq!(read_to_end(&mut s.client).await, IMAP_BYE);
    assert_eq!(s.end().await, End::Kicked);
}

#[tokio::test]
async fn a_session_that_reaches_no_boundary_is_cut_after_the_grace() {
    let mut s = start(Imap::default(), Duration::from_millis(200)).await;
    s.command(b"h APPEND INBOX {100+}\r\nabc").await;
    s.registry.kick(&crate::registry::Selector::All);
    assert_eq!(s.end().await, End::Cut);
}

#[tokio::test]
async fn without_a_kick_the_back_end_close_ends_it() {
    let mut s = start(Imap::default(), WAIT).await;
    s.command(b"z LOGOUT\r\n").await;
    s.backend
        .write_all(b"* BYE bye\r\nz OK done\r\n")
        .await
        .unwrap();
    s.backend.shutdown().await.unwrap();
    assert_eq!(
        read_to_end(&mut s.client).await,
        b"* BYE bye\r\nz OK done\r\n"
    );
    assert_eq!(s.end().await, End::Closed);
}

const POP3_BYE: &[u8] =
    b"-ERR [SYS/TEMP] Session ended by the administrator, please reconnect.\r\n";

#[tokio::test]
async fn a_pop3_retr_finishes_its_body_first() {
    let mut s = start(Pop3::default(), WAIT).await;
    s.command(b"RETR 1\r\n").await;
    s.answer(b"+OK 20 octets\r\nSubject: x\r\n\r\n").await;
    s.registry.kick(&crate::registry::Selector::All);
    s.client.write_all(b"DELE 1\r\n").await.unwrap();
    // A dot-stuffed line is body, the lone dot ends it.
    s.answer(b"..not the end\r\n.\r\n").await;
    assert_eq!(read_to_end(&mut s.client).await, POP3_BYE);
    assert!(
        read_to_end(&mut s.backend).await.is_empty(),
        "DELE was not passed on"
    );
    assert_eq!(s.end().await, End::Kicked);
}

#[tokio::test]
async fn pop3_one_line_answers_and_list_with_an_argument() {
    let mut s = start(Pop3::default(), WAIT).await;
    s.command(b"LIST 1\r\nSTAT\r\n").await;
    s.answer(b"+OK 1 20\r\n").await;
    s.registry.kick(&crate::registry::Selector::All);
    s.answer(b"+OK 1 20\r\n").await;
    assert_eq!(read_to_end(&mut s.client).await, POP3_BYE);
    assert_eq!(s.end().await, End::Kicked);
}

/// The client's side of a compressed session: a DEFLATE writer and reader
/// over its socket, as a client library would have them.
struct Deflated {
    out: fulmar_mailproto::deflate::Deflate<tokio::net::tcp::OwnedWriteHalf>,
    inp: fulmar_mailproto::deflate::Inflate<tokio::net::tcp::OwnedReadHalf>,
}

impl Deflated {
    fn new(client: TcpStream, pending: Vec<u8>) -> Self {
        let (r, w) = client.into_split();
        Self {
            out: fulmar_mailproto::deflate::writer(w),
            inp: fulmar_mailproto::deflate::reader(r, pending),
        }
    }

    async fn send(&mut self, text: &[u8]) {
        self.out.write_all(text).await.unwrap();
        self.out.flush().await.unwrap();
    }

    async fn expect(&mut self, want: &[u8]) {
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(WAIT, self.inp.read_exact(&mut got))
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(got, want);
    }
}

/// DEFLATE of `text` with a sync flush, as a client sends it right behind
/// its COMPRESS command.
async fn deflated(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = fulmar_mailproto::deflate::writer(&mut out);
    w.write_all(text).await.unwrap();
    w.flush().await.unwrap();
    drop(w);
    out
}

#[tokio::test]
async fn compress_is_answered_in_its_turn_and_never_reaches_the_back_end() {
    let mut s = start(Imap::default(), WAIT).await;
    // A command waiting for its answer, then COMPRESS in two pieces (its
    // first part must not reach the back-end), then a compressed NOOP
    // right behind it in the same packet.
    s.command(b"a1 SELECT INBOX\r\n").await;
    s.client.write_all(b"a2 COMPR").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut rest = b"ESS DEFLATE\r\n".to_vec();
    rest.extend(deflated(b"a3 NOOP\r\n").await);
    s.client.write_all(&rest).await.unwrap();
    // The SELECT's answer first, then the COMPRESS's, both plain.
    s.answer(b"* 2 EXISTS\r\na1 OK [READ-WRITE] done\r\n").await;
    s.expect_client(b"a2 OK DEFLATE active\r\n").await;
    // The NOOP is passed on, plain, with nothing of COMPRESS before it.
    s.expect_backend(b"a3 NOOP\r\n").await;
    // From here the client's side is compressed both ways.
    s.backend.write_all(b"a3 OK NOOP done\r\n").await.unwrap();
    let Setup {
        client,
        mut backend,
        registry,
        relay,
    } = s;
    let mut z = Deflated::new(client, Vec::new());
    z.expect(b"a3 OK NOOP done\r\n").await;
    z.send(b"a4 FETCH 1 BODY[]\r\n").await;
    assert_eq!(read_exact(&mut backend, 19).await, b"a4 FETCH 1 BODY[]\r\n");
    backend
        .write_all(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\na4 OK done\r\n")
        .await
        .unwrap();
    z.expect(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\na4 OK done\r\n")
        .await;
    // A second COMPRESS is refused by the relay, compressed.
    z.send(b"a5 COMPRESS DEFLATE\r\na6 NOOP\r\n").await;
    assert_eq!(read_exact(&mut backend, 9).await, b"a6 NOOP\r\n");
    z.expect(b"a5 NO [COMPRESSIONACTIVE] DEFLATE is on already\r\n")
        .await;
    // A kick still ends it at a boundary, the goodbye compressed.
    backend.write_all(b"a6 OK done\r\n").await.unwrap();
    z.expect(b"a6 OK done\r\n").await;
    registry.kick(&crate::registry::Selector::All);
    z.expect(IMAP_BYE).await;
    let end = tokio::time::timeout(WAIT, relay)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(end, End::Kicked);
}
