//! `cargo xtask bench`: the data path's cost, every figure beside its
//! baseline from the same run.
//!
//! ns/packet: a loop of single BPF_PROG_TEST_RUN calls (repeat = 1, so every
//! run sees a fresh packet; a higher repeat would re-run the rewritten one),
//! wall time per call, for (a) XDP_PASS — the floor, (b) a bare MAC-swap
//! XDP_TX, (c) the balancer on an established-flow ACK, (d) the balancer on
//! SYNs of new flows with 8, 64 and 256 reals.
//!
//! Mpps: native XDP on a veth pair between two namespaces. No packet
//! generator runs on this kernel, so frames ping-pong: a MAC swap on the far
//! end bounces each frame back; the near end runs (b) the MAC swap or (c) the
//! balancer, which forwards the established flow's packet back out. The near
//! end's XDP packet counter over a fixed interval gives its rate. Frames are
//! injected from CPU 0, so both ends run there: one CPU's rate. Three
//! interleaved rounds per program; the median is printed.
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use fulmar_common::{IPPROTO_TCP, program_names};
use fulmar_lab::{HostSpec, Lab, LabSpec};
use fulmar_lb::{
    AttachMode, Balancer, Forwarding, LoadOptions, PinLayout, RealSpec, RealState, Scheduler,
    ServiceSpec,
    frames::{ACK, SYN, Segment, frame},
};

#[derive(clap::Args)]
pub struct Args {
    /// Test-run calls per ns/packet figure.
    #[arg(long, default_value_t = 200_000)]
    calls: u32,
    /// Seconds per Mpps round (three rounds per figure).
    #[arg(long, default_value_t = 2)]
    seconds: u64,
}

const VIP: &str = "198.18.100.1";

fn service(n_reals: usize) -> (ServiceSpec, Vec<RealSpec>) {
    let spec = ServiceSpec {
        vip: VIP.parse().unwrap(),
        port: 143,
        proto: IPPROTO_TCP,
        scheduler: Scheduler::Wlc,
        forwarding: Forwarding::DirectRouting,
        reset_on_down: false,
    };
    let reals = (0..n_reals)
        .map(|i| RealSpec {
            addr: format!("198.18.{}.{}", 101 + i / 250, 1 + i % 250)
                .parse()
                .unwrap(),
            port: 143,
            mac: [2, 0, 0, 0, (i >> 8) as u8, i as u8],
            weight: 1 + (i % 4) as u32,
            state: RealState::Up,
        })
        .collect();
    (spec, reals)
}

fn client(i: u32) -> (IpAddr, u16) {
    (
        IpAddr::from([198, 19, (i >> 16) as u8, (i >> 8) as u8]),
        1024 + (i & 0xff) as u16 * 200 + (i >> 24) as u16,
    )
}

/// Mean wall ns per call over `frames` (cycled), one test run each.
fn ns_per_packet(lb: &mut Balancer, program: &str, frames: &[Vec<u8>], calls: u32) -> Result<f64> {
    for f in frames.iter().take(1000) {
        lb.run(program, f, 1)?; // warm up
    }
    let start = Instant::now();
    for i in 0..calls as usize {
        lb.run(program, &frames[i % frames.len()], 1)?;
    }
    Ok(start.elapsed().as_nanos() as f64 / calls as f64)
}

struct Loaded {
    lb: Balancer,
    pins: PinLayout,
}

impl Loaded {
    fn new(tag: &str, flow_capacity: u32) -> Result<Self> {
        let pins = PinLayout::new(format!(
            "/sys/fs/bpf/fulmar-bench-{}-{tag}",
            std::process::id()
        ));
        let lb = Balancer::load(&pins, &LoadOptions { flow_capacity })?;
        Ok(Self { lb, pins })
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = fulmar_lb::balancer::unpin_all(&self.pins);
    }
}

fn row(
    name: &str,
    value: f64,
    unit: &str,
    base_name: &str,
    base: f64,
    target: Option<(f64, bool)>,
) {
    let ratio = value / base;
    let verdict = match target {
        Some((limit, lower_is_better)) => {
            let met = if lower_is_better {
                ratio <= limit
            } else {
                ratio >= limit
            };
            format!(
                "target {}{limit:.2}× {}",
                if lower_is_better { "≤ " } else { "≥ " },
                if met { "met" } else { "MISSED" }
            )
        }
        None => String::new(),
    };
    println!("{name:<44} {value:>9.1} {unit:<5} {ratio:>6.2}× {base_name:<6} {verdict}");
}

pub fn run(args: Args) -> Result<()> {
    println!(
        "fulmar bench: {} test-run calls per figure, median of 3 × {} s per Mpps figure\n",
        args.calls, args.seconds
    );
    println!(
        "{:<44} {:>9} {:<5} {:>7} {:<6}",
        "figure", "value", "unit", "ratio", "of"
    );

    let mut base = Loaded::new("base", 1024)?;
    let (spec, reals) = service(8);
    base.lb.apply_service(&spec, &reals)?;
    let vip: IpAddr = VIP.parse()?;
    let ack = client_frame(vip, ACK);
    let syn = client_frame(vip, SYN);
    base.lb.run_balancer(&syn, 1)?; // opens the flow the ACKs belong to
    let one = vec![ack.clone()];
    let floor = ns_per_packet(&mut base.lb, program_names::PASS, &one, args.calls)?;
    let swap = ns_per_packet(&mut base.lb, program_names::MAC_SWAP, &one, args.calls)?;
    let established = ns_per_packet(&mut base.lb, program_names::BALANCER, &one, args.calls)?;
    row(
        "(a) XDP_PASS, empty program",
        floor,
        "ns",
        "(a)",
        floor,
        None,
    );
    row("(b) MAC swap + XDP_TX", swap, "ns", "(a)", floor, None);
    row(
        "(c) balancer, established-flow ACK",
        established,
        "ns",
        "(a)",
        floor,
        Some((1.5, true)),
    );
    // The kernel's own per-run time with repeat: no syscall in it. Valid for
    // (c) because a rewritten ACK of an established flow stays one.
    let in_kernel = |lb: &mut Balancer, program: &str| -> Result<f64> {
        Ok(lb.run(program, &ack, 100_000)?.duration_ns as f64)
    };
    let k_floor = in_kernel(&mut base.lb, program_names::PASS)?;
    let k_swap = in_kernel(&mut base.lb, program_names::MAC_SWAP)?;
    let k_est = in_kernel(&mut base.lb, program_names::BALANCER)?;
    row(
        "    in-kernel per run (repeat): XDP_PASS",
        k_floor,
        "ns",
        "",
        k_floor,
        None,
    );
    row(
        "    in-kernel per run (repeat): MAC swap",
        k_swap,
        "ns",
        "",
        k_floor,
        None,
    );
    row(
        "    in-kernel per run (repeat): balancer ACK",
        k_est,
        "ns",
        "",
        k_floor,
        None,
    );

    let syn_calls = args.calls.min(200_000);
    let mut memory = None;
    for n in [8usize, 64, 256] {
        let mut loaded = Loaded::new(&format!("syn{n}"), syn_calls + 2048)?;
        let (spec, reals) = service(n);
        loaded.lb.apply_service(&spec, &reals)?;
        let frames: Vec<Vec<u8>> = (0..syn_calls + 1000)
            .map(|i| {
                let (src, port) = client(i);
                frame(&Segment::tcp(src, port, vip, 143, SYN))
            })
            .collect();
        let ns = ns_per_packet(&mut loaded.lb, program_names::BALANCER, &frames, syn_calls)?;
        let target = (n == 64).then_some((3.0, true));
        row(
            &format!("(d) balancer, SYN of a new flow, {n} reals"),
            ns,
            "ns",
            "(a)",
            floor,
            target,
        );
        if n == 64 {
            let flows = loaded.lb.flows()?.len();
            memory = Some((
                flows,
                memlock(&loaded.pins.map(fulmar_common::map_names::FLOWS))?,
            ));
        }
    }
    let (b_mpps, c_mpps) = veth_rates(Duration::from_secs(args.seconds))?;
    row(
        "(b) MAC swap over native XDP on veth",
        b_mpps,
        "Mpps",
        "(b)",
        b_mpps,
        None,
    );
    row(
        "(c) balancer over native XDP on veth",
        c_mpps,
        "Mpps",
        "(b)",
        b_mpps,
        Some((0.9, false)),
    );
    if let Some((flows, bytes)) = memory {
        println!(
            "\nflow table: {flows} flows use {:.1} MiB: {:.0} MiB per million flows (FLOWS, kernel memlock)",
            bytes as f64 / (1 << 20) as f64,
            bytes as f64 / flows as f64 * 1e6 / (1 << 20) as f64
        );
    }
    Ok(())
}

/// The kernel's memory figure for a pinned map.
fn memlock(path: &std::path::Path) -> Result<u64> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(path)
        .output()?;
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("bpftool map show")?;
    json["bytes_memlock"].as_u64().context("no bytes_memlock")
}

/// XDP packets the interface's receive queue ran, from its ethtool counters.
fn xdp_packets(lab: &Lab, host: &str, iface: &str) -> Result<u64> {
    let text = lab.check(host, "ethtool", &["-S", iface])?;
    Ok(text
        .lines()
        .filter(|l| l.trim_start().starts_with("rx_queue_") && l.contains("_xdp_packets:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
        .sum())
}

/// Injects `count` copies of `frame` into `iface` of `host` (AF_PACKET).
fn inject(lab: &Lab, host: &str, iface: &'static str, frame: Vec<u8>, count: usize) -> Result<()> {
    lab.in_host(host, move || -> Result<()> {
        // SAFETY: plain sched_setaffinity(2)/socket(2)/sendto(2) with
        // structures we fill in.
        unsafe {
            // Sent from CPU 0, both ends' NAPI run there and stay there:
            // the figure is one CPU's, not a varying split over two.
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            anyhow::ensure!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let name = std::ffi::CString::new(iface)?;
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            addr.sll_halen = 6;
            for _ in 0..count {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
            }
            libc::close(fd);
        }
        Ok(())
    })?
}

fn veth_rates(interval: Duration) -> Result<(f64, f64)> {
    let spec = LabSpec {
        hosts: vec![HostSpec::new("near"), HostSpec::new("far")],
        ..Default::default()
    };
    let mut lab = Lab::build(&spec)?;
    let far = lab.netns("far");
    lab.check(
        "near",
        "ip",
        &[
            "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", &far,
        ],
    )?;
    lab.check("near", "ip", &["link", "set", "v0", "up"])?;
    lab.check("far", "ip", &["link", "set", "v1", "up"])?;
    let pins = PinLayout::new(format!("/sys/fs/bpf/{}-bench", lab.prefix()));
    lab.register_pin_dir(&pins.root);
    let load_pins = pins.clone();
    let mut lb = lab.in_host("near", move || {
        Balancer::load(
            &load_pins,
            &LoadOptions {
                flow_capacity: 1024,
            },
        )
    })??;
    let (spec, reals) = service(8);
    lb.apply_service(&spec, &reals)?;
    let vip: IpAddr = VIP.parse()?;
    let syn = client_frame(vip, SYN);
    lb.run_balancer(&syn, 1)?;
    let ack = client_frame(vip, ACK);

    // Interleaved rounds, median per program: a neighbour's noise hits both.
    let mut rates = [Vec::new(), Vec::new()];
    for (which, near_program) in [program_names::MAC_SWAP, program_names::BALANCER]
        .into_iter()
        .enumerate()
        .cycle()
        .take(2 * VETH_ROUNDS)
    {
        // Far end bounces, near end runs the program under test.
        let attach = |lb: Balancer,
                      host: &str,
                      program: &'static str,
                      iface: &'static str,
                      link: &'static str| {
            let pins = pins.clone();
            lab.in_host(host, move || -> Result<Balancer> {
                let mut lb = lb;
                lb.attach_program(program, iface, AttachMode::Native, &pins.root.join(link))?;
                Ok(lb)
            })
        };
        lb = attach(lb, "far", program_names::MAC_SWAP, "v1", "link_far")??;
        lb = attach(lb, "near", near_program, "v0", "link_near")??;
        inject(&lab, "far", "v1", ack.clone(), 256)?;
        std::thread::sleep(Duration::from_millis(300));
        let before = xdp_packets(&lab, "near", "v0")?;
        let start = Instant::now();
        std::thread::sleep(interval);
        let packets = xdp_packets(&lab, "near", "v0")? - before;
        rates[which].push(packets as f64 / start.elapsed().as_secs_f64() / 1e6);
        // Detaching stops the ping-pong.
        std::fs::remove_file(pins.root.join("link_near"))?;
        std::fs::remove_file(pins.root.join("link_far"))?;
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(lb);
    Ok((median(&mut rates[0]), median(&mut rates[1])))
}

/// Rounds of each veth figure; the median is reported.
const VETH_ROUNDS: usize = 3;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The benchmark client's one flow (198.19.0.1:40000 to VIP:143), with `flags`.
fn client_frame(vip: IpAddr, flags: u8) -> Vec<u8> {
    frame(&Segment::tcp(
        IpAddr::from([198, 19, 0, 1]),
        40000,
        vip,
        143,
        flags,
    ))
}
