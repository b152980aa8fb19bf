# Concurrent IMAP sessions on one mailbox, each keeping its own model of
# the mailbox from what the server told it (EXISTS, EXPUNGE, FETCH), in
# order, and checking every answer against that model. Afterwards every
# session's model must equal what a fresh session sees.
#
# Set by the caller: MAIL (address), SESSIONS, COMMANDS (in all), SEED.
import random
import re
import socket
import threading
import time

USER, PASSWORD = "ann@fulmar.test", "ann-pw"
UNTAGGED = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE|RECENT|FETCH)(.*)$")
UID = re.compile(rb"UID (\d+)")
FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
LITERAL = re.compile(rb"\{(\d+)\}$")


class Broken(Exception):
    pass


class Session:
    def __init__(self, name, rng):
        self.name, self.rng = name, rng
        self.sock = socket.create_connection((MAIL, 143), timeout=60)
        self.f = self.sock.makefile("rb")
        self.n = 0
        self.uids = []  # seq-1 -> UID, None until a FETCH names it
        self.flags = {}  # UID -> set of flags last told
        self.told = {}  # UID -> flags told during the current command
        self.suspect = []  # (UID, what): wrong unless the UID went since
        self.tally = {}
        self.failures = []
        self.expunge_issued = 0
        self.f.readline()
        self.command(b"LOGIN " + USER.encode() + b" " + PASSWORD.encode())

    def line(self):
        l = self.f.readline()
        if not l:
            raise Broken(f"{self.name}: connection closed")
        l = l.rstrip(b"\r\n")
        m = LITERAL.search(l)
        while m:  # a literal inside a response: read it and the rest
            data = self.f.read(int(m.group(1)))
            rest = self.f.readline().rstrip(b"\r\n")
            l = l[: m.start()] + b'"' + data[:0] + b'"' + rest
            m = LITERAL.search(l)
        return l

    def untagged(self, l, during):
        m = UNTAGGED.match(l)
        if not m:
            return
        n, kind, rest = int(m.group(1)), m.group(2), m.group(3)
        if kind == b"EXISTS":
            if n < len(self.uids):
                raise Broken(f"{self.name}: EXISTS {n} below {len(self.uids)} ({during})")
            self.uids += [None] * (n - len(self.uids))
        elif kind == b"EXPUNGE":
            if not 1 <= n <= len(self.uids):
                raise Broken(f"{self.name}: EXPUNGE {n} of {len(self.uids)} ({during})")
            if during in ("FETCH", "STORE", "SEARCH"):
                raise Broken(f"{self.name}: EXPUNGE during {during}")
            gone = self.uids.pop(n - 1)
            self.flags.pop(gone, None)
        elif kind == b"FETCH":
            if not 1 <= n <= len(self.uids):
                raise Broken(f"{self.name}: FETCH {n} of {len(self.uids)} ({during})")
            u = UID.search(rest)
            if u:
                uid = int(u.group(1))
                known = self.uids[n - 1]
                if known is not None and known != uid:
                    raise Broken(f"{self.name}: seq {n} is UID {known}, told {uid} ({during})")
                self.uids[n - 1] = uid
            fl = FLAGS.search(rest)
            if fl and self.uids[n - 1] is not None:
                self.flags[self.uids[n - 1]] = set(fl.group(1).split())
                self.told[self.uids[n - 1]] = self.flags[self.uids[n - 1]]
        self.check_order(during)

    def check_order(self, during):
        known = [u for u in self.uids if u is not None]
        if known != sorted(known) or len(set(known)) != len(known):
            raise Broken(f"{self.name}: UIDs out of order after {during}: {known[:20]}")

    def command(self, text, literal=None, allow_expunge_issued=False):
        self.n += 1
        self.told = {}
        tag = b"t%d" % self.n
        verb = text.split(b" ")[0].upper()
        if verb == b"UID":
            verb = text.split(b" ")[1].upper()
        during = {b"FETCH": "FETCH", b"STORE": "STORE", b"SEARCH": "SEARCH"}.get(verb, "")
        if text.upper().startswith(b"UID "):
            during = ""  # UID commands may be told EXPUNGE
        if literal is None:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        while True:
            l = self.line()
            if l.startswith(tag + b" "):
                status = l[len(tag) + 1 :].split(b" ")[0]
                self.tally[verb] = self.tally.get(verb, 0) + 1
                if status != b"OK":
                    if allow_expunge_issued and b"EXPUNGEISSUED" in l:
                        self.expunge_issued += 1
                    else:
                        self.failures.append((text[:60], l[:120]))
                return l
            self.untagged(l, during)

    def idle(self):
        self.n += 1
        tag = b"t%d" % self.n
        self.sock.sendall(tag + b" IDLE\r\n")
        while True:
            l = self.line()
            if l.startswith(b"+"):
                break
            self.untagged(l, "IDLE")
        self.sock.sendall(b"DONE\r\n")
        while True:
            l = self.line()
            if l.startswith(tag + b" "):
                self.tally[b"IDLE"] = self.tally.get(b"IDLE", 0) + 1
                if not l[len(tag) + 1 :].startswith(b"OK"):
                    self.failures.append((b"IDLE", l[:120]))
                return
            self.untagged(l, "IDLE")

    def some(self):
        """A random non-empty sequence set within what this session knows."""
        n = len(self.uids)
        a = self.rng.randint(1, n)
        b = min(n, a + self.rng.randint(0, 3))
        self.picked = (a, b)
        return b"%d:%d" % (a, b) if b > a else b"%d" % a

    def step(self):
        r = self.rng.random()
        n = len(self.uids)
        if r < 0.22 or n < 5:
            when = time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(time.time() - self.rng.randint(0, 3 * 365) * 86400))
            flags = self.rng.choice([b"()", b"(\\Seen)", b"($Label1)", b"(\\Flagged Work)"])
            body = b"Subject: stress %s %d\r\n\r\n%s\r\n" % (self.name.encode(), self.n, b"x" * self.rng.randint(10, 2000))
            self.command(b'APPEND INBOX %s "%s"' % (flags, when.encode()), literal=body)
        elif r < 0.40:
            self.command(b"FETCH %s (UID FLAGS)" % self.some())
        elif r < 0.50:
            self.command(b"UID FETCH %d:* (FLAGS RFC822.SIZE)" % self.rng.randint(1, 50))
        elif r < 0.64:
            flag = self.rng.choice([b"\\Seen", b"\\Flagged", b"$Label2", b"Work", b"\\Answered"])
            op = self.rng.choice([b"+FLAGS", b"-FLAGS"])
            self.command(b"STORE %s %s (%s)" % (self.some(), op, flag))
            # The last word on each message changed is this STORE's own
            # (a STORE by number cannot be told EXPUNGE: the numbers hold),
            # unless the message went meanwhile (EXPUNGE, MOVE): checked
            # at the end for the messages that are still there.
            a, b = self.picked
            for uid, flags in self.told.items():
                if uid in self.uids[a - 1 : b] and (flag in flags) != (op == b"+FLAGS"):
                    self.suspect.append((uid, f"STORE {op} {flag} answered {flags} for UID {uid}"))
        elif r < 0.70:
            self.command(b"STORE %s +FLAGS.SILENT (\\Deleted)" % self.some())
            self.command(self.rng.choice([b"EXPUNGE", b"NOOP"]))
        elif r < 0.76:
            self.command(b"COPY %s Archive" % self.some(), allow_expunge_issued=True)
        elif r < 0.81:
            self.command(b"MOVE %s Archive" % self.some(), allow_expunge_issued=True)
        elif r < 0.87:
            self.idle()
        elif r < 0.94:
            self.command(b"SEARCH UNSEEN")
        else:
            self.command(b"NOOP")


def run_session(s, count, errors):
    try:
        s.command(b"SELECT INBOX")
        for _ in range(count):
            s.step()
    except Exception as e:  # reported, and the run fails
        errors.append(f"{s.name}: {e!r}")


def final_view(s):
    """NOOP, then the whole mailbox as this session sees it."""
    s.command(b"NOOP")
    s.command(b"FETCH 1:* (UID FLAGS)" if s.uids else b"NOOP")
    if None in s.uids:
        raise Broken(f"{s.name}: UIDs never told: {s.uids.count(None)}")
    # \Recent is one session's own: compared apart from the rest.
    return [(u, frozenset(s.flags.get(u, set()) - {b"\\Recent"})) for u in s.uids]


rng = random.Random(SEED)
setup = Session("setup", rng)
setup.command(b"CREATE Archive")
sessions = [Session(f"s{i}", random.Random(SEED * 100 + i)) for i in range(SESSIONS)]
errors = []
started = time.time()
threads = [threading.Thread(target=run_session, args=(s, COMMANDS // SESSIONS, errors)) for s in sessions]
for t in threads:
    t.start()
for t in threads:
    t.join()
took = time.time() - started
truth_session = Session("truth", rng)
truth_session.command(b"SELECT INBOX")
truth = final_view(truth_session)
mismatched = 0
for s in sessions:
    try:
        view = final_view(s)
        if view != truth:
            mismatched += 1
            diff = [(a, b) for a, b in zip(view, truth) if a != b][:3]
            errors.append(f"{s.name}: view differs from the store: {len(view)} vs {len(truth)} {diff}")
    except Exception as e:
        errors.append(f"{s.name}: {e!r}")
left = {u for u, _ in truth}
for s in sessions:
    errors += [f"{s.name}: {what}" for uid, what in s.suspect if uid in left]
tally = {}
for s in sessions:
    for k, v in s.tally.items():
        tally[k.decode()] = tally.get(k.decode(), 0) + v
failures = [f for s in sessions for f in s.failures]
print("commands", sum(tally.values()), "in", round(took, 1), "s")
print("tally", sorted(tally.items()))
print("failed", len(failures), failures[:5])
print("expunge issued", sum(s.expunge_issued for s in sessions))
print("errors", len(errors), errors[:5])
print("messages", len(truth))
