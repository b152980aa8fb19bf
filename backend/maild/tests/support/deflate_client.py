# An IMAP client with COMPRESS=DEFLATE (RFC 4978), for the tests of
# fulmar-maild and of the proxy: raw sockets, zlib's raw DEFLATE (wbits
# -15) both ways, a sync flush after every command. No client library
# here speaks COMPRESS, so this is the client.
import socket, zlib


class Lines:
    """Lines and tagged answers over whatever `fill` adds to `buf`."""

    def line(self):
        while b"\n" not in self.buf:
            self.fill()
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out.decode(errors="replace").rstrip("\r\n")

    def until(self, tag):
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].startswith(tag + " "):
                return lines

    def cmd(self, tag, text):
        self.send(f"{tag} {text}\r\n".encode())
        return self.until(tag)


class Plain(Lines):
    """The connection before COMPRESS: lines read off the socket, and the
    bytes read behind the last line kept (after COMPRESS's OK they are the
    server's compressed stream)."""

    def __init__(self, host, port, timeout=10):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.greeting = self.line()

    def fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buf += chunk

    def send(self, data):
        self.s.sendall(data)


class Deflate(Lines):
    """The same connection with COMPRESS on. `wire` and `plain` count the
    bytes received as sent and as inflated."""

    def __init__(self, plain):
        self.s = plain.s
        self.c = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.d = zlib.decompressobj(-15)
        self.wire = len(plain.buf)
        self.buf = self.d.decompress(plain.buf)
        self.plain = len(self.buf)

    def deflate(self, data):
        return self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH)

    def send(self, data):
        self.s.sendall(self.deflate(data))

    def fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.wire += len(chunk)
        out = self.d.decompress(chunk)
        self.plain += len(out)
        self.buf += out

    def read(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def fetch_body(self, tag, n):
        """FETCH n BODY.PEEK[]: the body (a literal) and the tagged line."""
        self.send(f"{tag} FETCH {n} BODY.PEEK[]\r\n".encode())
        head = self.line()
        size = int(head[head.rindex("{") + 1 : -1])
        body = self.read(size)
        self.line()  # the closing parenthesis
        return body, self.until(tag)[-1]


def compress(plain, tag, behind=b""):
    """COMPRESS DEFLATE on a logged-in connection, with `behind` (plain
    text) sent compressed in the same packet, as a pipelining client may.
    Returns (the tagged answer, the compressed connection)."""
    z = None
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    early = c.compress(behind) + c.flush(zlib.Z_SYNC_FLUSH) if behind else b""
    plain.s.sendall(f"{tag} COMPRESS DEFLATE\r\n".encode() + early)
    answer = plain.until(tag)[-1]
    if answer.startswith(f"{tag} OK"):
        z = Deflate(plain)
        z.c = c
    return answer, z
