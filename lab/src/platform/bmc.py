# A Redfish BMC for the lab's nodes: one ComputerSystem per node, whose
# power is the node's real state. ForceOff kills every process in the
# node's namespace and takes its links down (as pulling power would);
# PowerState says Off only while that holds, so the board never answers
# "off" for a host that still runs. On brings the links up and runs the
# node's boot command. HTTPS with basic auth, as fulmar's Redfish agent
# and fence_redfish expect.
#
# bmc.py ADDRESS PORT CERT KEY USER PASSWORD_FILE NODE=NETNS=BOOT_SCRIPT...
import base64, json, os, signal, ssl, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADDRESS, PORT, CERT, KEY, USER, PASSWORD_FILE = sys.argv[1:7]
PASSWORD = open(PASSWORD_FILE).read().strip()
NODES = {}
for spec in sys.argv[7:]:
    node, netns, boot = spec.split("=", 2)
    NODES[node] = (netns, boot)
lock = threading.Lock()


def pids(netns):
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def links(netns):
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True, text=True)
    found = []
    for line in out.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name != "lo":
            found.append((name, "state UP" in line or ",UP" in line.split(">")[0]))
    return found


def power(netns):
    off = not pids(netns) and not any(up for _, up in links(netns))
    return "Off" if off else "On"


def force_off(netns):
    for _ in range(100):
        left = pids(netns)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for name, _ in links(netns):
        subprocess.run(["ip", "-n", netns, "link", "set", "dev", name, "down"])
        subprocess.run(["ip", "-n", netns, "address", "flush", "dev", name])


def power_on(netns, boot):
    if power(netns) == "On":
        return
    for name, _ in links(netns):
        subprocess.run(["ip", "-n", netns, "link", "set", "dev", name, "up"])
    subprocess.Popen(["sh", "-c", boot], start_new_session=True)


class Board(BaseHTTPRequestHandler):
    def authorized(self):
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="bmc"')
            self.end_headers()
            return False
        return True

    def answer(self, code, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if not self.authorized():
            return
        path = self.path.rstrip("/")
        if path == "/redfish/v1/Systems":
            members = [{"@odata.id": f"/redfish/v1/Systems/{n}"} for n in NODES]
            return self.answer(200, {"Members": members, "Members@odata.count": len(members)})
        node = path.removeprefix("/redfish/v1/Systems/")
        if node in NODES:
            target = f"/redfish/v1/Systems/{node}/Actions/ComputerSystem.Reset"
            return self.answer(200, {
                "@odata.id": path, "Id": node, "PowerState": power(NODES[node][0]),
                "Actions": {"#ComputerSystem.Reset": {"target": target}},
            })
        self.answer(404, {"error": "no such resource"})

    def do_POST(self):
        if not self.authorized():
            return
        parts = self.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if len(parts) != 6 or parts[3] not in NODES or parts[5] != "ComputerSystem.Reset":
            return self.answer(404, {"error": "no such action"})
        netns, boot = NODES[parts[3]]
        kind = body.get("ResetType")
        with lock:
            if kind in ("ForceOff", "GracefulShutdown"):
                force_off(netns)
            elif kind == "On":
                power_on(netns, boot)
            elif kind in ("ForceRestart", "GracefulRestart"):
                force_off(netns)
                power_on(netns, boot)
            else:
                return self.answer(400, {"error": f"ResetType {kind} not supported"})
        print(f"{time.time():.3f} {parts[3]} {kind}", flush=True)
        self.answer(204)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((ADDRESS, int(PORT)), Board)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
