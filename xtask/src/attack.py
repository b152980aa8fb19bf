# The hostile-client suite's client side (`cargo xtask attack`), run on the
# lab's client host against the balancer VIP: every attack goes through
# the balancer, a proxy and fulmar-maild. `python3 attack.py NAME` runs one
# attack while a probe (another address, an honest account) logs in and
# sends NOOP every 50 ms; it prints one JSON line: what the server did and
# the probe's latencies.
import base64, imaplib, json, smtplib, socket, ssl, sys, threading, time

VIP, PROBE_FROM = sys.argv[2], sys.argv[3]
ANN, BOB = ("ann", "ann-secret"), ("bob", "bob-secret")


def conn(port, src=None, timeout=30):
    s = socket.create_connection((VIP, port), timeout=timeout,
                                 source_address=(src, 0) if src else None)
    return s, s.makefile("rb")


def probe(stop, latencies):
    while not stop.is_set():
        t0 = time.time()
        try:
            s, f = conn(143, PROBE_FROM, timeout=10)
            f.readline()
            s.sendall(b"p1 LOGIN bob bob-secret\r\n")
            while not f.readline().startswith(b"p1 "):
                pass
            s.sendall(b"p2 NOOP\r\np3 LOGOUT\r\n")
            while not f.readline().startswith(b"p3 "):
                pass
            s.close()
            latencies.append(time.time() - t0)
        except OSError:
            latencies.append(float("inf"))
        stop.wait(0.05)


def idle():
    time.sleep(3)
    return "nothing (the probe's baseline)"


def nested_multiparts():
    depth = 2000
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(depth))
    tail = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    msg = "Subject: nested\r\n" + head + "Content-Type: text/plain\r\n\r\ndeep\r\n" + tail
    s = smtplib.SMTP(VIP, 25, local_hostname="attacker.test")
    s.sendmail("x@attacker.test", ["ann@mail.test"], msg)
    s.quit()
    m = imaplib.IMAP4(VIP, 143)
    m.login(*ANN)
    n = m.select("INBOX")[1][0].decode()
    typ, data = m.fetch(n, "(BODYSTRUCTURE)")
    again = m.noop()[0]
    m.logout()
    return f"{len(msg)} B message delivered; FETCH BODYSTRUCTURE {typ}, {len(data[0])} B; session goes on ({again})"


def smuggling():
    s, f = conn(25)
    f.readline()
    def reply():
        while True:
            line = f.readline().decode()
            if line[3:4] != "-":
                return line.strip()
    s.sendall(b"EHLO attacker.test\r\n"); reply()
    s.sendall(b"MAIL FROM:<x@attacker.test>\r\n"); reply()
    s.sendall(b"RCPT TO:<ann@mail.test>\r\n"); reply()
    s.sendall(b"DATA\r\n"); reply()
    s.sendall(b"Subject: a\r\n\r\nhi\r\n.\nXCLIENT ADDR=6.6.6.6\r\nLHLO x\r\nMAIL FROM:<boss@mail.test>\r\n"
              b"RCPT TO:<ann@mail.test>\r\nDATA\r\nSubject: forged\r\n\r\nwire money\r\n.\r\n")
    return f"bare-LF '.' in DATA: {reply()[:40]}"


def prelogin_authenticate():
    s, f = conn(143)
    f.readline()
    s.sendall(b"a AUTHENTICATE PLAIN\r\n")
    f.readline()
    sent = 0
    try:
        while sent < 1 << 20:
            s.sendall(b"A" * 65536)
            sent += 65536
    except OSError:
        pass
    answer = f.readline().decode().strip()
    return f"1 MiB AUTHENTICATE answer without CRLF: {answer!r} after {sent >> 10} KiB sent"


def list_wildcards():
    m = imaplib.IMAP4(VIP, 143)
    m.login(*ANN)
    t0 = time.time()
    typ, _ = m._simple_command("LIST", '""', '"' + "*a" * 50 + 'x"')
    took = time.time() - t0
    m.logout()
    return f'LIST "" "*a" x50: {typ} in {took * 1000:.0f} ms'


def literals():
    s, f = conn(143)
    f.readline()
    s.sendall(b"a LOGIN {10485760+}\r\n" + b"x" * 65536)
    pre = f.readline().decode().strip()
    m = imaplib.IMAP4(VIP, 143)
    m.login(*ANN)
    body = b"Subject: big\r\n\r\n" + b"y" * (10 << 20) + b"\r\n"
    t0 = time.time()
    typ, _ = m.append("INBOX", None, None, body)
    took = time.time() - t0
    m.logout()
    return f"pre-login 10 MiB literal: {pre[:40]!r}; 10 MiB APPEND after login: {typ} in {took:.1f} s"


def forged_sender():
    s = smtplib.SMTP(VIP, 587, local_hostname="laptop.test")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    s.starttls(context=ctx)
    s.login(*ANN)
    code, text = s.mail("ceo@mail.test")
    s.quit()
    return f"MAIL FROM another account after AUTH: {code} {text.decode()[:40]}"


def helo_control():
    s, f = conn(25)
    f.readline()
    s.sendall(b"EHLO bad\x01name\r\n")
    return f"EHLO with a control character: {f.readline().decode().strip()[:40]}"


def slow_clients():
    held, refused = [], 0
    for _ in range(700):
        try:
            s, f = conn(143, timeout=5)
            if f.readline().startswith(b"* BYE"):
                refused += 1
                s.close()
            else:
                held.append(s)
        except OSError:
            refused += 1
    for s in held:
        s.close()
    return f"700 idle connections from one address: {len(held)} held, {refused} refused"


def mailbox_flood():
    m = imaplib.IMAP4(VIP, 143)
    m.login(*BOB)
    results = [m.create(f"flood{i}")[0] for i in range(1100)]
    refused = [r for r in results if r != "OK"]
    for i in range(1100):
        m.delete(f"flood{i}")
    m.logout()
    return f"CREATE x1100: {len(results) - len(refused)} OK, then NO [LIMIT] x{len(refused)}"


def proxy_header():
    # A PROXY v2 header claiming another client address, sent by a client
    # the proxy does not take headers from, then a login behind it.
    src, dst = socket.inet_aton("198.18.9.9"), socket.inet_aton(VIP)
    header = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12]) + src + dst
              + (40000).to_bytes(2, "big") + (143).to_bytes(2, "big"))
    s, f = conn(143)
    greeting = f.readline()
    s.sendall(header + b"\r\n")
    s.settimeout(1)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except OSError:
        pass
    junk = [l.split(b" ")[1].decode(errors="replace") for l in data.split(b"\r\n") if l]
    s.settimeout(10)
    s.sendall(b"a LOGIN ann ann-secret\r\n")
    login = f.readline().decode(errors="replace").strip()
    s.close()
    return (f"PROXY v2 header claiming 198.18.9.9, from a client: read as {len(junk)} lines of junk "
            f"({'/'.join(sorted(set(junk)))}); a LOGIN after it: {login[:40]}")


def brute_force_spread():
    # Fifty source addresses against one account: the per-account
    # schedule, shared by the tier, is what stops it.
    sources = [f"198.18.0.{n}" for n in range(150, 200)]
    results = []
    until = time.time() + 20
    def worker(k):
        i = k
        while time.time() < until:
            try:
                s, f = conn(143, sources[i % len(sources)])
                f.readline()
                s.sendall(b"a LOGIN carol@mail.test wrong\r\n")
                results.append(f.readline().decode())
                s.close()
            except OSError:
                results.append("error")
            i += 8
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in ts: t.start()
    for t in ts: t.join()
    checked = sum("AUTHENTICATIONFAILED" in r for r in results)
    return f"8 guessers, 20 s, 50 addresses, one account: {checked} passwords checked, {len(results) - checked} refused unchecked"


def brute_force():
    results = []
    until = time.time() + 20
    def worker():
        while time.time() < until:
            try:
                s, f = conn(143)
                f.readline()
                s.sendall(b"a LOGIN ann wrong\r\n")
                results.append(f.readline().decode())
                s.close()
            except OSError:
                results.append("error")
    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts: t.start()
    for t in ts: t.join()
    checked = sum("AUTHENTICATIONFAILED" in r for r in results)
    return f"8 guessers, 20 s, one address: {checked} passwords checked, {len(results) - checked} refused unchecked"


if __name__ == "__main__":
    attack = globals()[sys.argv[1]]
    stop, latencies = threading.Event(), []
    t = threading.Thread(target=probe, args=(stop, latencies))
    t.start()
    time.sleep(0.5)
    t0 = time.time()
    try:
        did = attack()
    except Exception as e:  # what the server did is the finding
        did = f"client error: {type(e).__name__}: {e}"[:160]
    took = time.time() - t0
    time.sleep(0.3)
    stop.set()
    t.join()
    lat = sorted(latencies)
    print(json.dumps({"did": did, "seconds": took, "probes": len(lat),
                      "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
                      "max_ms": lat[-1] * 1000 if lat else None}))
