//! Media path capacity: the media runtime on one pinned core, a load generator on the
//! other. Usage: media_bench relay|moh N SECONDS
//!
//! relay: N calls, each two streams joined by `MediaCmd::Relay`; the generator sends
//!   50 packets/s into each leg (2N streams, 100N packets/s in, 100N out) and times
//!   each packet from its send to its arrival back through the relay (end to end, so
//!   an upper bound on the latency the relay adds).
//! moh: N terminated streams playing music on hold to the generator while it sends
//!   50 packets/s of RTP into each; reports how late each paced packet left against
//!   its 20 ms schedule (measured inside the media thread).
//! Both report the media thread's CPU use (CLOCK_THREAD_CPUTIME_ID) over the window.
//!
//! The generator must not be what is measured: it runs at real-time priority (30, below
//! the media thread's 40) on the other CPU, sends each stream at its own phase in
//! ~50 µs batches with sendmmsg, reads with recvmmsg, touches its sample buffers before
//! the window (a first touch of a page can stall for milliseconds on a virtual
//! machine), and reports how late it sent against the schedule, so a run whose input
//! came in bursts can be told from one where the box was slow. GEN_NORMAL=1 keeps the
//! generator at normal priority (for comparison: its bursts then grow).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // a benchmark reads the clock and drives sockets

use ctibox::config::Codec;
use ctibox::core::media::rtp::RtpHeader;
use ctibox::core::{MediaCmd, MediaEvent, MediaSource, StreamId};
use ctibox::io::media::{self, LoopAudio, MediaSettings, MediaStats};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &set).is_err() {
        eprintln!("warning: cannot pin to CPU {cpu}");
    }
}

/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 64;

/// Sends each (packet, destination) from `sock`, BATCH per sendmmsg; returns how many went.
fn send_batch(sock: &UdpSocket, pkts: &[(Vec<u8>, SocketAddr)]) -> u64 {
    use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrIn};
    let mut sent = 0;
    for chunk in pkts.chunks(BATCH) {
        let iovs: Vec<[IoSlice; 1]> = chunk.iter().map(|(p, _)| [IoSlice::new(p)]).collect();
        let addrs: Vec<Option<SockaddrIn>> = chunk
            .iter()
            .map(|(_, to)| match to {
                SocketAddr::V4(v4) => Some(SockaddrIn::from(*v4)),
                SocketAddr::V6(_) => None,
            })
            .collect();
        let mut hdrs = MultiHeaders::<SockaddrIn>::preallocate(chunk.len(), None);
        let none: [ControlMessage; 0] = [];
        if let Ok(r) = sendmmsg(sock.as_raw_fd(), &mut hdrs, &iovs, &addrs, none, MsgFlags::empty()) {
            sent += r.count() as u64;
        }
    }
    sent
}

/// Reads every queued datagram from `sock` (BATCH per recvmmsg) and gives each to `each`.
fn recv_batch(sock: &UdpSocket, bufs: &mut [[u8; 512]], mut each: impl FnMut(&[u8])) {
    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrIn};
    loop {
        let lens: Vec<usize> = {
            let mut iovs: Vec<[IoSliceMut; 1]> = bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            let mut hdrs = MultiHeaders::<SockaddrIn>::preallocate(iovs.len(), None);
            match recvmmsg(sock.as_raw_fd(), &mut hdrs, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
                Ok(r) => r.map(|m| m.bytes).collect(),
                Err(_) => Vec::new(),
            }
        };
        for (b, &len) in bufs.iter().zip(&lens) {
            each(&b[..len]);
        }
        if lens.len() < bufs.len() {
            return;
        }
    }
}

/// SCHED_FIFO at `priority` for the calling thread; false when not allowed.
fn fifo(priority: i32) -> bool {
    let param = nix::libc::sched_param { sched_priority: priority };
    // SAFETY: sched_setscheduler only reads `param`; 0 means the calling thread.
    unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_FIFO, &param) == 0 }
}

/// An empty sample buffer of `capacity` whose pages are already touched, so the
/// measurement does not take first-touch faults (on a virtual machine they can go to
/// the host and stall for milliseconds).
fn touched(capacity: usize) -> Vec<u32> {
    let mut v = vec![1u32; capacity];
    v.clear();
    v
}

/// The `p` quantile of sorted samples (0 when there are none).
fn quantile(sorted: &[u32], p: f64) -> u32 {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
}

fn big_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
    s.set_nonblocking(true).unwrap();
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("relay", String::as_str).to_string();
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let secs: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let relay = mode == "relay";
    let streams = if relay { 2 * n } else { n };

    let failed = Arc::new(AtomicU64::new(0));
    let f2 = failed.clone();
    let settings = MediaSettings {
        bind_ip: "127.0.0.1".parse().unwrap(),
        country: ctibox::core::media::tone::Country::Us,
        moh: Arc::new(LoopAudio::new(media::melody())),
        rtp_timeout: Duration::from_secs(30),
        io: media::MediaIo::from_env(),
    };
    let sink = Box::new(move |e: MediaEvent| {
        if let MediaEvent::Failed { reason, .. } = &e {
            if f2.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("failed: {reason}");
            }
        }
        true
    });
    let (h, threads) = media::start(settings, sink).unwrap();
    for (name, body) in threads {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                pin(0);
                body()
            })
            .unwrap();
    }
    // The noise probe: a thread on the media CPU at the highest real-time priority
    // wakes every millisecond and records how late it woke. Work of ours cannot delay
    // it (it preempts the media thread), so its tail is what the machine itself (IRQs,
    // the hypervisor) took from that CPU during the run.
    let probe_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let stop = probe_stop.clone();
        std::thread::spawn(move || {
            pin(0);
            let rt = fifo(99);
            let mut late_us = touched(1000 * (secs as usize + 4));
            let start = Instant::now();
            let mut tick = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tick += 1;
                let due = start + Duration::from_millis(1) * tick;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if start.elapsed() >= Duration::from_secs(2) && late_us.len() < late_us.capacity() {
                    late_us.push(Instant::now().saturating_duration_since(due).as_micros() as u32);
                }
            }
            (rt, late_us)
        })
    };
    pin(1);
    // The generator at real-time priority too (below the media thread's), so other
    // work on its CPU does not make it send late in bursts (it reports its own
    // lateness below). Without CAP_SYS_NICE it stays at normal priority.
    if std::env::var_os("GEN_NORMAL").is_some() {
        eprintln!("generator at normal priority (GEN_NORMAL)");
    } else if !fifo(30) {
        eprintln!("warning: generator at normal priority: {}", std::io::Error::last_os_error());
    }

    // Generator sockets: every A leg talks to ga, every B leg to gb.
    let (ga, gb) = (big_socket(), big_socket());
    let (ga_addr, gb_addr) = (ga.local_addr().unwrap(), gb.local_addr().unwrap());
    // Local ports: consecutive even ports from 20000 that are free now.
    let mut ports = Vec::with_capacity(streams);
    let mut p = 20000u16;
    while ports.len() < streams {
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            ports.push(p);
        }
        p += 2;
    }
    for (i, &port) in ports.iter().enumerate() {
        let remote = if relay && i % 2 == 1 { gb_addr } else { ga_addr };
        let cmd = MediaCmd::Play { stream: StreamId(i as u64), local_port: port, remote, codec: Codec::Pcmu, source: MediaSource::MusicOnHold };
        while h.send(cmd.clone()).is_err() {
            std::thread::yield_now();
        }
    }
    if relay {
        for c in 0..n {
            let cmd = MediaCmd::Relay { a: StreamId(2 * c as u64), b: StreamId(2 * c as u64 + 1) };
            while h.send(cmd.clone()).is_err() {
                std::thread::yield_now();
            }
        }
    }
    // Each stream's target and the socket that feeds it.
    let targets: Vec<(SocketAddr, bool)> = ports.iter().enumerate().map(|(i, &p)| (SocketAddr::from(([127, 0, 0, 1], p)), relay && i % 2 == 1)).collect();

    let origin = Instant::now();
    let warmup = Duration::from_secs(2);
    let end = warmup + Duration::from_secs(secs);
    let mut seq = vec![0u16; streams];
    let mut pkt = RtpHeader { payload_type: 0, ssrc: 1, ..Default::default() }.to_packet(&[0xFF; 160]);
    let mut rbufs = vec![[0u8; 512]; BATCH];
    let mut lat_us = touched(streams * 50 * secs as usize);
    // How late the generator itself sent each packet against its slot (a late
    // generator delivers bursts, which the box then has to absorb).
    let mut gen_late_us = touched(streams * 50 * secs as usize);
    let (mut sent, mut received, mut frame) = (0u64, 0u64, 0u64);
    let stats: &MediaStats = h.stats();
    let mut measuring = false;
    let mut next = 0usize;
    let mut cpu0 = 0;
    let mut t_measure = origin;
    loop {
        let now = origin.elapsed();
        if !measuring && now >= warmup {
            measuring = true;
            stats.reset_lateness();
            cpu0 = MediaStats::get(&stats.thread_cpu_ns);
            t_measure = Instant::now();
            sent = 0;
            received = 0;
        }
        if now >= end {
            break;
        }
        // Stream i's frames are due at i * 20 ms / streams within each 20 ms frame.
        let frame_start = Duration::from_millis(20) * frame as u32;
        let phase_ns = now.saturating_sub(frame_start).as_nanos() as u64;
        let due_upto = ((phase_ns * streams as u64) / 20_000_000).min(streams as u64) as usize;
        // Send every stream whose slot in this frame has come, in sendmmsg batches
        // (one per generator socket): the generator must not be the bottleneck.
        let ns = origin.elapsed().as_nanos() as u64;
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        while next < due_upto {
            let (to, from_b) = targets[next];
            seq[next] = seq[next].wrapping_add(1);
            pkt[1] = 0; // PT 0, no marker
            pkt[2..4].copy_from_slice(&seq[next].to_be_bytes());
            pkt[8..12].copy_from_slice(&(next as u32 + 1).to_be_bytes());
            pkt[12..20].copy_from_slice(&ns.to_be_bytes());
            if measuring {
                let due_ns = frame_start.as_nanos() as u64 + next as u64 * 20_000_000 / streams as u64;
                gen_late_us.push((ns.saturating_sub(due_ns) / 1000) as u32);
            }
            let out = if from_b { &mut pb } else { &mut pa };
            out.push((pkt.clone(), to));
            next += 1;
        }
        sent += send_batch(&ga, &pa) + send_batch(&gb, &pb);
        if next >= streams && phase_ns >= 20_000_000 {
            next = 0;
            frame += 1;
        }
        // Drain whatever came back.
        for sock in [&ga, &gb] {
            recv_batch(sock, &mut rbufs, |data| {
                received += 1;
                if relay && measuring && data.len() >= 20 && data[1] & 0x7F == 0 && data[8..12] != [0, 0, 0, 0] {
                    let at = origin.elapsed().as_nanos() as u64;
                    let ns = u64::from_be_bytes(data[12..20].try_into().unwrap());
                    lat_us.push((at.saturating_sub(ns) / 1000) as u32);
                }
            });
        }
        // Send in small batches: sleep ~50 µs between them (precise: the generator
        // runs at real-time priority, so no timer slack), which leaves its CPU to the
        // kernel's loopback work instead of spinning.
        std::thread::sleep(Duration::from_micros(50));
    }
    let wall = t_measure.elapsed();
    probe_stop.store(true, Ordering::Relaxed);
    let (probe_rt, mut probe_us) = probe.join().unwrap();
    // The media thread publishes its CPU time every 100 ms.
    let cpu = MediaStats::get(&stats.thread_cpu_ns).saturating_sub(cpu0);
    let cpu_pct = cpu as f64 / wall.as_nanos() as f64 * 100.0;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let io = if MediaStats::get(&stats.io_uring) == 1 { "io_uring" } else { "epoll" };
    println!("mode={mode} n={n} streams={streams} seconds={secs} io={io} failed={}", failed.load(Ordering::Relaxed));
    println!(
        "  media thread CPU {cpu_pct:.1}% of one core; sent {} pkt/s, received {} pkt/s; skipped frames {}, send errors {}",
        sent * 1000 / wall.as_millis().max(1) as u64,
        received * 1000 / wall.as_millis().max(1) as u64,
        MediaStats::get(&stats.frames_skipped),
        MediaStats::get(&stats.send_errors)
    );
    gen_late_us.sort_unstable();
    let g = |p: f64| quantile(&gen_late_us, p);
    println!("  generator's own send lateness us: p50 {} p99 {} p99.9 {} max {}", g(0.5), g(0.99), g(0.999), gen_late_us.last().copied().unwrap_or(0));
    if relay {
        lat_us.sort_unstable();
        let q = |p: f64| quantile(&lat_us, p);
        println!(
            "  relayed {} packets; end-to-end latency us: p50 {} p99 {} p99.9 {} max {}",
            lat_us.len(),
            q(0.5),
            q(0.99),
            q(0.999),
            lat_us.last().copied().unwrap_or(0)
        );
        let d = &stats.relay_delay;
        println!(
            "  added by the box (kernel arrival to forwarded, {} samples) us: p50 {} p99 {} p99.9 {} max {}",
            d.count(),
            d.quantile(0.5).as_micros(),
            d.quantile(0.99).as_micros(),
            d.quantile(0.999).as_micros(),
            d.max().as_micros()
        );
    } else {
        println!(
            "  paced packets {}; send lateness vs schedule us: p50 {} p99 {} p99.9 {} max {}",
            stats.lateness_count(),
            stats.lateness_quantile(0.5).as_micros(),
            stats.lateness_quantile(0.99).as_micros(),
            stats.lateness_quantile(0.999).as_micros(),
            stats.lateness_max().as_micros()
        );
    }
    probe_us.sort_unstable();
    let pq = |p: f64| quantile(&probe_us, p);
    println!(
        "  noise on the media CPU (1 ms probe{}, wake-up lateness) us: p99 {} p99.9 {} max {}",
        if probe_rt { ", SCHED_FIFO 99" } else { ", normal priority" },
        pq(0.99),
        pq(0.999),
        probe_us.last().copied().unwrap_or(0)
    );
    println!("  load average at end: {}", load.trim());
}
