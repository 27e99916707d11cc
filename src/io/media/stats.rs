//! Counters the media path keeps (lock-free, readable from any thread), and the
//! histogram of how late each paced packet left against its schedule.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Width of one lateness bucket (µs).
pub const BUCKET_US: u64 = 10;
/// Buckets; the last one holds everything from `BUCKETS * BUCKET_US` up.
pub const BUCKETS: usize = 2048;

/// What the media path counted. Every bad datagram is dropped and counted here.
pub struct MediaStats {
    pub streams: AtomicU64,
    pub streams_opened: AtomicU64,
    pub packets_sent: AtomicU64,
    /// Send failed (socket buffer full, unreachable): the packet was dropped.
    pub send_errors: AtomicU64,
    pub packets_received: AtomicU64,
    /// Datagrams on an RTP port that are not RTP (too short, bad version, bad padding).
    pub bad_packets: AtomicU64,
    /// RTP of a second SSRC from the latched address while the latched one is alive.
    pub wrong_ssrc: AtomicU64,
    /// RTP from an address that may not become the stream's remote (outside the latch
    /// window, or another source once latched, and not a NAT rebinding): dropped.
    pub rtp_foreign_dropped: AtomicU64,
    /// Streams the media thread closed itself under the orphan rule.
    pub streams_orphaned: AtomicU64,
    /// RTP with a payload type the stream does not take (not its codec nor its DTMF).
    pub wrong_payload_type: AtomicU64,
    pub rtcp_received: AtomicU64,
    pub rtcp_bad: AtomicU64,
    pub rtcp_sent: AtomicU64,
    /// Packets forwarded between the two streams of a relay (on io_uring counted when
    /// queued, and taken back if the send then fails).
    pub relayed: AtomicU64,
    pub digits: AtomicU64,
    /// Events the engine inbox had no room for.
    pub events_dropped: AtomicU64,
    /// Commands the media queue had no room for (a `Stop` only when its own queue was
    /// full too).
    pub commands_dropped: AtomicU64,
    /// Frames not sent because the thread fell more than `MAX_BEHIND` behind.
    pub frames_skipped: AtomicU64,
    /// 1 while the media thread runs on io_uring, 0 on epoll.
    pub io_uring: AtomicU64,
    /// io_uring receives that found no free buffer (the datagram waited in its socket
    /// until the receive was armed again).
    pub rx_buffers_exhausted: AtomicU64,
    /// Remote address changes: latched within the window, or a NAT rebinding.
    pub relatched: AtomicU64,
    /// CPU time the media thread has used (ns), refreshed every housekeeping pass.
    pub thread_cpu_ns: AtomicU64,
    lateness: Histogram,
    /// Added latency of relayed packets: from the kernel's receive timestamp to the
    /// return of the forwarding `sendto`.
    pub relay_delay: Histogram,
}

/// A lock-free histogram of durations in `BUCKET_US` buckets.
pub struct Histogram(Box<[AtomicU64]>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram((0..BUCKETS).map(|_| AtomicU64::new(0)).collect())
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let b = ((d.as_micros() as u64) / BUCKET_US).min(BUCKETS as u64 - 1) as usize;
        self.0[b].fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The `p`-quantile (0..=1), to the upper edge of its bucket.
    pub fn quantile(&self, p: f64) -> Duration {
        let counts: Vec<u64> = self.0.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let want = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Duration::from_micros((i as u64 + 1) * BUCKET_US);
            }
        }
        Duration::from_micros(BUCKETS as u64 * BUCKET_US)
    }

    /// The largest bucket with a sample in it (upper edge).
    pub fn max(&self) -> Duration {
        let i = self.0.iter().rposition(|b| b.load(Relaxed) > 0).map_or(0, |i| i + 1);
        Duration::from_micros(i as u64 * BUCKET_US)
    }

    pub fn reset(&self) {
        for b in self.0.iter() {
            b.store(0, Relaxed);
        }
    }
}

impl Default for MediaStats {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        MediaStats {
            streams: z(),
            streams_opened: z(),
            packets_sent: z(),
            send_errors: z(),
            packets_received: z(),
            bad_packets: z(),
            wrong_ssrc: z(),
            rtp_foreign_dropped: z(),
            streams_orphaned: z(),
            wrong_payload_type: z(),
            rtcp_received: z(),
            rtcp_bad: z(),
            rtcp_sent: z(),
            relayed: z(),
            digits: z(),
            events_dropped: z(),
            commands_dropped: z(),
            frames_skipped: z(),
            io_uring: z(),
            rx_buffers_exhausted: z(),
            relatched: z(),
            thread_cpu_ns: z(),
            lateness: Histogram::default(),
            relay_delay: Histogram::default(),
        }
    }
}

pub(super) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl MediaStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    /// Records how late one paced packet left.
    pub(super) fn record_lateness(&self, late: Duration) {
        self.lateness.record(late);
    }

    /// Paced packets recorded since the last reset.
    pub fn lateness_count(&self) -> u64 {
        self.lateness.count()
    }

    /// The `p`-quantile (0..=1) of lateness, to the upper edge of its bucket.
    pub fn lateness_quantile(&self, p: f64) -> Duration {
        self.lateness.quantile(p)
    }

    /// The largest lateness bucket with a packet in it (upper edge).
    pub fn lateness_max(&self) -> Duration {
        self.lateness.max()
    }

    pub fn reset_lateness(&self) {
        self.lateness.reset();
        self.relay_delay.reset();
    }
}
