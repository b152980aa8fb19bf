#!/usr/bin/env python3
"""What damages a volume on a takeover (issue 20's EUCLEAN), shown on a
scratch image: ROUNDS takeovers in a row, each node mounting the image
through its own hard link and loop device while the previous node's
writer (write + fsync + rename in a loop) is still alive.

  two_live_mounts.py 20           the old barrier: FS_IOC_SHUTDOWN
                                  (NOLOGFLUSH), lazy umount, LOOP_CLR_FD,
                                  answer at once. e2fsck -fn: clean (20 of
                                  20 on 2026-12-07): a shut-down ext4 with
                                  I/O in flight writes nothing harmful.
  two_live_mounts.py 10 --noshut  the same without the shutdown: the
                                  case of a mount the barrier cannot see
                                  (detached lazily before the fence) or
                                  one it missed. e2fsck -fn: rc 4,
                                  "Multiply-claimed block(s)", and the
                                  kernel's "bad block bitmap checksum"
                                  (EUCLEAN to every caller) within 10.
  --wait                          waits for the old device to be gone
                                  before the next mount (today's barrier).

Run as root; it uses /tmp/eu/vol and leaves the image there."""
import fcntl, os, struct, subprocess, sys, time, signal, random

FS_IOC_SHUTDOWN = 0x8004587d
NOLOGFLUSH = 2
LOOP_CLR_FD = 0x4c01
WAIT = "--wait" in sys.argv
NOSHUT = "--noshut" in sys.argv
rounds = int(sys.argv[1])
work = "/tmp/eu/vol"
os.makedirs(work + "/a", exist_ok=True); os.makedirs(work + "/b", exist_ok=True)
img = work + "/disk.img"
def sh(*a, check=True):
    return subprocess.run(a, check=check, capture_output=True, text=True)
if os.path.exists(img): os.unlink(img)
sh("truncate", "-s", "256M", img)
sh("mkfs.ext4", "-q", "-F", img)
for link in ("a.img", "b.img"):
    p = f"{work}/{link}"
    if os.path.exists(p): os.unlink(p)
    os.link(img, p)

def holder(mnt, tag):
    # Writes and fsyncs files as fast as it can: journal commits in flight.
    pid = os.fork()
    if pid == 0:
        os.chdir(mnt)
        i = 0
        try:
            while True:
                name = f"{tag}-{i % 200}"
                with open(name, "wb") as f:
                    f.write(os.urandom(random.randint(1, 64) * 1024))
                    f.flush(); os.fsync(f.fileno())
                os.rename(name, name + ".m")
                i += 1
        except OSError:
            # After the shutdown: hold the file system (cwd) until killed.
            while True: time.sleep(1)
    return pid

bad = 0
side = ["a", "b"]
for r in range(rounds):
    old, new = side[r % 2], side[(r + 1) % 2]
    if r == 0:
        dev = sh("losetup", "--show", "-f", f"{work}/{old}.img").stdout.strip()
        sh("mount", dev, f"{work}/{old}")
        cur = (dev, holder(f"{work}/{old}", f"r{r}"))
    dev, hp = cur
    time.sleep(0.3)
    # The old barrier.
    fd = os.open(f"{work}/{old}", os.O_RDONLY)
    if not NOSHUT: fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", NOLOGFLUSH))
    os.close(fd)
    sh("umount", "-l", f"{work}/{old}")
    fd = os.open(dev, os.O_RDONLY); fcntl.ioctl(fd, LOOP_CLR_FD, 0); os.close(fd)
    if WAIT:
        os.kill(hp, signal.SIGKILL); os.waitpid(hp, 0)
        while sh("losetup", dev, check=False).returncode == 0: time.sleep(0.005)
    # The next node takes over at once.
    ndev = sh("losetup", "--show", "-f", f"{work}/{new}.img").stdout.strip()
    m = sh("mount", ndev, f"{work}/{new}", check=False)
    if m.returncode != 0:
        print(f"round {r}: mount failed: {m.stderr.strip()}"); bad += 1; break
    nh = holder(f"{work}/{new}", f"r{r+1}")
    if not WAIT:
        time.sleep(0.2)
        os.kill(hp, signal.SIGKILL); os.waitpid(hp, 0)
    cur = (ndev, nh)
# Stop the last holder, unmount, check.
dev, hp = cur
time.sleep(0.3)
os.kill(hp, signal.SIGKILL); os.waitpid(hp, 0)
sh("umount", f"{work}/{side[rounds % 2]}", check=False)
time.sleep(0.2)
sh("losetup", "-d", dev, check=False)
fsck = sh("e2fsck", "-fn", img, check=False)
print("e2fsck rc", fsck.returncode)
print("\n".join(fsck.stdout.splitlines()[:15]))
k = sh("dmesg", check=False).stdout.splitlines()
print("\n".join([l for l in k if "EXT4-fs" in l and ("error" in l.lower() or "clean" in l.lower())][-8:]))
