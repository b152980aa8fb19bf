# A mail client workload through the balancer's VIP: per account, one thread
# delivering numbered messages over SMTP and one logging in over IMAP, every
# outcome printed with its wall-clock time. Runs until the file argv[1]
# exists; argv[2] names the run (its messages say `X-Seq: RUN.N`); argv[3:]
# are user:password pairs.
import imaplib, os, smtplib, sys, threading, time

VIP = "198.18.1.100"
STOP = sys.argv[1]
RUN = sys.argv[2]
USERS = [a.split(":", 1) for a in sys.argv[3:]]
lock = threading.Lock()


def out(*fields):
    with lock:
        print(*fields, flush=True)


def deliver(user):
    seq = 0
    while not os.path.exists(STOP):
        seq += 1
        body = f"Subject: workload {seq}\r\nX-Seq: {RUN}.{seq}\r\n\r\nmessage {seq}\r\n"
        try:
            s = smtplib.SMTP(VIP, 25, timeout=5)
            s.sendmail("load@remote.test", [f"{user}@mail.test"], body.encode())
            s.quit()
            out("ack", user, seq, time.time())
        except Exception as e:
            out("nack", user, seq, time.time(), type(e).__name__)
            time.sleep(0.05)
        time.sleep(0.05)


def login(user, password):
    while not os.path.exists(STOP):
        start = time.time()
        try:
            m = imaplib.IMAP4(VIP, 143, timeout=5)
            m.login(user, password)
            m.select("INBOX")
            m.logout()
            out("login", user, "ok", start, time.time() - start)
        except Exception as e:
            # The server's words too (NO [UNAVAILABLE] ...), one field.
            why = "_".join(str(e).split())[:120]
            out("login", user, "fail", start, time.time() - start, type(e).__name__, why)
            time.sleep(0.05)
        time.sleep(0.05)


threads = []
for user, password in USERS:
    threads.append(threading.Thread(target=deliver, args=(user,)))
    threads.append(threading.Thread(target=login, args=(user, password)))
for t in threads:
    t.start()
for t in threads:
    t.join()
out("done")
