//! The I/O barrier on a real loop-attached ext4 volume: once node1 is cut
//! off, its writes fail and never reach the disk; what it had fsynced is
//! there when node2 mounts the volume; and the barrier answers off only
//! once node1's device is gone (a file node1 still holds keeps it), also
//! when node1's mount was detached already and the barrier cannot shut
//! its file system down: two live ext4 instances on one image are what
//! damages it (bad bitmap checksums, blocks claimed twice: issue 20).
mod support;

use std::{
    fs,
    io::{Read, Write},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use fulmar_fencing::{
    Action, Answer, Device, PowerState,
    agents::io_barrier::{access_path, attachments, disk, grant},
    config::{DeviceConfig, IoBarrierConfig},
};
use fulmar_lab::mounted;

const T: Duration = Duration::from_secs(10);

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Mounts and loop devices made by the test, undone on drop (also when
/// the barrier already undid them).
struct Volume {
    dir: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Volume {
    fn new(test: &str) -> Volume {
        support::require_root();
        let dir =
            std::env::temp_dir().join(format!("fulmar-io-barrier-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let image = disk(&dir);
        fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        Volume {
            dir,
            mounts: Vec::new(),
        }
    }

    /// Attaches the volume through `node`'s access path and mounts it.
    fn attach(&mut self, node: &str) -> PathBuf {
        let device = run(
            "losetup",
            &[
                "-f",
                "--show",
                access_path(&self.dir, node).to_str().unwrap(),
            ],
        );
        let mount = self.dir.join(format!("mnt-{node}"));
        fs::create_dir_all(&mount).unwrap();
        run("mount", &[&device, mount.to_str().unwrap()]);
        self.mounts.push(mount.clone());
        mount
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        // Only devices still attached to this volume: one the barrier freed
        // may be another test's by now.
        for a in attachments(&self.dir) {
            let _ = Command::new("losetup")
                .arg("-d")
                .arg(format!("/dev/{}", a.device))
                .status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_cut_off_node_writes_nothing_more() {
    let mut volume = Volume::new("cut-off");
    grant(&volume.dir, "node1").unwrap();
    let mnt1 = volume.attach("node1");
    let mut acked = fs::File::create(mnt1.join("acked")).unwrap();
    acked.write_all(b"acknowledged before the fence").unwrap();
    acked.sync_all().unwrap();
    drop(acked);
    let mut late = fs::File::create(mnt1.join("late")).unwrap();
    late.sync_all().unwrap();

    let barrier = Device::new(&DeviceConfig::IoBarrier(IoBarrierConfig {
        volume: volume.dir.clone(),
        node: "node1".into(),
        timeout: T,
    }))
    .unwrap();
    let rt = support::runtime();
    assert_eq!(rt.block_on(barrier.status(T)), Ok(PowerState::On));

    // node1 still holds an open file (a process of it is dying): the
    // barrier cuts it off at once, but answers off only when node1's loop
    // device is gone, which needs that file closed.
    let barrier = std::sync::Arc::new(barrier);
    let off = {
        let barrier = barrier.clone();
        std::thread::spawn(move || support::runtime().block_on(barrier.run(Action::Off, T)))
    };
    let deadline = Instant::now() + T;
    while mounted(&mnt1) || access_path(&volume.dir, "node1").exists() {
        assert!(
            Instant::now() < deadline,
            "the barrier did not cut node1 off"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let wrote = late
        .write_all(b"written after the fence")
        .and_then(|_| late.sync_all());
    assert!(wrote.is_err(), "a write after the fence succeeded");
    assert!(
        !off.is_finished(),
        "off answered while node1's device is still attached"
    );
    drop(late);
    assert_eq!(off.join().unwrap(), Ok(Answer::Done));
    assert_eq!(rt.block_on(barrier.status(T)), Ok(PowerState::Off));
    // node1 cannot attach again: its access path is gone.
    let again = Command::new("losetup")
        .args([
            "-f",
            "--show",
            access_path(&volume.dir, "node1").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());

    // node2 takes over: the acknowledged data is there, the late write not.
    grant(&volume.dir, "node2").unwrap();
    let mnt2 = volume.attach("node2");
    let mut text = String::new();
    fs::File::open(mnt2.join("acked"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "acknowledged before the fence");
    assert_eq!(fs::read(mnt2.join("late")).unwrap(), b"");

    // on re-grants node1 (unfencing); node2's access is untouched.
    assert_eq!(rt.block_on(barrier.run(Action::On, T)), Ok(Answer::Done));
    assert!(access_path(&volume.dir, "node1").exists());
    assert!(mounted(&mnt2));
}

#[test]
fn a_writer_the_barrier_cannot_see_keeps_it_on_until_it_is_gone() {
    let mut volume = Volume::new("detached");
    grant(&volume.dir, "node1").unwrap();
    let mnt1 = volume.attach("node1");
    // A dying process of node1 writes on a mount already detached (a stop
    // that unmounted lazily): no mount table shows it, so the barrier
    // cannot shut its file system down; only the device shows it is live.
    let mut writer = fs::File::create(mnt1.join("writer")).unwrap();
    run("umount", &["-l", mnt1.to_str().unwrap()]);
    let barrier = std::sync::Arc::new(
        Device::new(&DeviceConfig::IoBarrier(IoBarrierConfig {
            volume: volume.dir.clone(),
            node: "node1".into(),
            timeout: T,
        }))
        .unwrap(),
    );
    let off = {
        let barrier = barrier.clone();
        std::thread::spawn(move || support::runtime().block_on(barrier.run(Action::Off, T)))
    };
    let deadline = Instant::now() + T;
    while access_path(&volume.dir, "node1").exists() {
        assert!(
            Instant::now() < deadline,
            "the barrier did not revoke node1"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The writer still reaches the disk: node1 can write, so it is not off.
    writer
        .write_all(b"node1 is still writing")
        .and_then(|_| writer.sync_all())
        .expect("a write on the detached file system");
    assert!(
        !off.is_finished(),
        "off answered while node1 could still write the volume"
    );
    drop(writer);
    assert_eq!(off.join().unwrap(), Ok(Answer::Done));
    let rt = support::runtime();
    assert_eq!(rt.block_on(barrier.status(T)), Ok(PowerState::Off));

    // node2 mounts a volume only one instance ever wrote at a time.
    grant(&volume.dir, "node2").unwrap();
    let mnt2 = volume.attach("node2");
    fs::write(mnt2.join("node2"), b"taken over").unwrap();
    assert_eq!(
        fs::read(mnt2.join("writer")).unwrap(),
        b"node1 is still writing"
    );
    run("umount", &[mnt2.to_str().unwrap()]);
    let check = Command::new("e2fsck")
        .args(["-fn", disk(&volume.dir).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "e2fsck -fn: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}
