//! Every capacity and protocol constant in one place. Past a bound the answer is an
//! explicit refusal (503, a CTI "capacity" error, a dropped and counted datagram),
//! never unbounded growth.

/// Largest SIP datagram or stream message accepted (bytes).
pub const SIP_MAX_MESSAGE: usize = 65_535;
/// Bytes buffered per SIP TCP connection while framing a message.
pub const SIP_TCP_BUFFER: usize = 2 * SIP_MAX_MESSAGE;
/// Receive buffer asked for the SIP UDP socket (bytes; the kernel caps it at
/// net.core.rmem_max): absorbs bursts while the engine loop is briefly off the CPU.
pub const SIP_UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;
/// SIP datagrams the engine loop reads in one go before it sends what they caused
/// and looks at its other inputs again.
pub const SIP_UDP_RECV_BATCH: usize = 32;
/// SIP datagrams sent with one sendmmsg(2).
pub const SIP_UDP_SEND_BATCH: usize = 32;
/// Simultaneous SIP TCP connections.
pub const SIP_TCP_CONNECTIONS: usize = 1024;
/// Simultaneous CTI connections (TCP + WebSocket).
pub const CTI_CONNECTIONS: usize = 256;
/// Longest CTI request line (bytes).
pub const CTI_MAX_LINE: usize = 64 * 1024;
/// Events an API client's queue holds; a client that lets it fill is closed as failed.
pub const API_EVENT_QUEUE: usize = 1024;
/// Messages queued toward one CTI connection before it is closed as too slow.
pub const CTI_SEND_QUEUE: usize = 4096;
/// Simultaneous HTTP connections.
pub const HTTP_CONNECTIONS: usize = 64;
/// Largest HTTP request head + body (bytes).
pub const HTTP_MAX_REQUEST: usize = 64 * 1024;
/// Inputs queued from the network tasks to the engine loop.
pub const ENGINE_INBOX: usize = 8192;
/// Messages queued toward one stream connection (SIP TCP, HTTP) before it is dropped.
pub const CONN_SEND_QUEUE: usize = 1024;
/// A registration refresh that changes only expiries is written to the registrations
/// file at most this often (coalesced); adding or removing a binding writes at once.
pub const REGISTRATIONS_REFRESH_SAVE_MS: u64 = 5 * 60_000;
/// Largest persisted state file (bytes); checked before decoding.
pub const STATE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Largest configuration file (bytes).
pub const CONFIG_MAX_BYTES: usize = 4 * 1024 * 1024;
/// How often the engine loop runs even when idle, so the watchdog sees it alive (ms).
pub const ENGINE_TICK_MS: u64 = 250;
/// Default systemd watchdog interval when WATCHDOG_USEC is not set (ms).
pub const DEFAULT_WATCHDOG_MS: u64 = 10_000;
/// Header fields accepted in one SIP message (after unfolding); more is a 400.
pub const SIP_MAX_HEADERS: usize = 128;
/// Longest SIP start line or (unfolded) header line, in bytes; longer is a 400.
pub const SIP_MAX_LINE: usize = 8 * 1024;
/// Largest Content-Length value accepted (a body can never exceed the message cap).
pub const SIP_MAX_CONTENT_LENGTH: usize = SIP_MAX_MESSAGE;
/// Live SIP transactions (client + server: no final answer yet, or an INVITE's
/// non-2xx waiting for its ACK). Past it, requests that would start a call or a
/// dialog get 503 with Retry-After; requests inside a dialog, CANCELs and the box's
/// own requests may use up to twice this, the hard bound, so that calls can end.
/// A live transaction lasts a call's set-up; at 4000 calls/s a few hundred are
/// alive (scripts/bench/sip).
pub const SIP_MAX_TRANSACTIONS: usize = 131_072;
/// Completed transaction records (what absorbs retransmissions after the final
/// answer, about 70 bytes each without a stored answer) kept at once. A call leaves
/// about two for 64*T1 = 32 s over UDP (its INVITE's Accepted record and its BYE's),
/// so this holds 6000 calls/s; past it the oldest go first (counted).
pub const SIP_MAX_COMPLETED: usize = 393_216;
/// The load meter's window (io/load.rs): the smallest wait of a SIP datagram in the
/// socket over this long is what says whether the engine loop keeps up.
pub const LOAD_WINDOW_MS: u64 = 500;
/// A window whose every datagram waited at least this long makes the loop busy: new
/// calls are refused with 503 until it clears.
pub const LOAD_BUSY_DELAY_MS: u64 = 100;
/// A window whose smallest wait is under this clears the busy state.
pub const LOAD_CLEAR_DELAY_MS: u64 = 20;
/// How often the heap trimmer looks at the allocator's free memory (io/trim.rs).
pub const HEAP_TRIM_INTERVAL_S: u64 = 10;
/// Heap blocks this big or bigger get pages of their own and are handed back to the
/// system when freed (io/trim.rs `configure_allocator`).
pub const HEAP_MMAP_THRESHOLD: usize = 1024 * 1024;
/// Free bytes in the allocator's arenas past which they are trimmed.
pub const HEAP_TRIM_MIN_FREE: usize = 1024 * 1024;
/// Seconds a caller refused for capacity is asked to wait (Retry-After).
pub const SIP_OVERLOAD_RETRY_AFTER_S: u32 = 5;
/// Time a new HTTP connection has to send its whole request (ms).
pub const HTTP_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Bytes tungstenite may buffer toward one CTI WebSocket before the write fails.
pub const CTI_WS_WRITE_BUFFER: usize = 1024 * 1024;
/// Time one outbound CTI message may wait on a peer that does not read (ms).
pub const CTI_SEND_TIMEOUT_MS: u64 = 30_000;
/// Time a WebSocket peer has to answer our close frame (ms).
pub const CTI_WS_CLOSE_TIMEOUT_MS: u64 = 2_000;
/// Media streams (RTP sessions) the media thread serves at once; past it `Play` fails.
pub const MEDIA_MAX_STREAMS: usize = 2048;
/// Media commands queued from the engine loop to the media thread; past it a command
/// is dropped, logged and counted (the engine loop never waits on the media path).
pub const MEDIA_CMD_QUEUE: usize = 4096;
/// A stream that had received RTP reports `RtpTimeout` after this long without any (ms).
pub const MEDIA_RTP_TIMEOUT_MS: u64 = 30_000;
/// `Stop` commands queued toward the media thread, in their own queue beside
/// `MEDIA_CMD_QUEUE` so a full command queue never loses one: room for a Stop of every
/// stream that can exist at once (open ones, and those whose `Play` is still queued).
pub const MEDIA_STOP_QUEUE: usize = MEDIA_MAX_STREAMS + MEDIA_CMD_QUEUE;
/// Symmetric RTP latching window (ms): after a stream opens or is given a new remote,
/// the first source sending valid RTP within this long may become its remote. After
/// it (or once a source latched) RTP from any other address is dropped and counted
/// unless it continues the latched SSRC (a NAT rebinding), so a stray sender cannot
/// take the stream over.
pub const MEDIA_LATCH_WINDOW_MS: u64 = 2_000;
/// A NAT rebinding: RTP of the latched SSRC from a new address moves the stream there
/// when its sequence number is 1 to this many ahead of the highest seen (a few packets
/// lost while the binding changed); a farther jump or a repeat is refused.
pub const MEDIA_REBIND_SEQ_STEP: u16 = 64;
/// A stream that had RTP and then received nothing (no RTP, no RTCP from its peer) and
/// no command for `MEDIA_RTP_TIMEOUT_MS` plus this long (ms) is taken as forgotten by
/// the engine: the media thread closes it (BYE) and reports it `Failed`.
pub const MEDIA_ORPHAN_GRACE_MS: u64 = 60_000;
/// A stream that never had RTP is closed the same way after this long (ms) with
/// nothing received and no command (music on hold toward a phone that sends nothing
/// is legitimate, so this is long).
pub const MEDIA_ORPHAN_IDLE_MS: u64 = 2 * 3_600_000;
/// RTCP sender reports are sent about this often per stream (ms).
pub const MEDIA_RTCP_INTERVAL_MS: u64 = 5_000;
/// While datagrams keep arriving the media thread wakes this often (µs) and reads all
/// that came meanwhile, instead of waking for each; the most a datagram waits for it.
pub const MEDIA_POLL_TICK_US: u64 = 200;
/// Rounds of "one datagram from every readable socket" per wake-up before commands and
/// housekeeping get their turn.
pub const MEDIA_RECV_ROUNDS: usize = 8;
/// On io_uring, a wait under traffic ends at this many completions even before the
/// tick, so a heavy tick's receives are forwarded in parts, not all after all.
pub const MEDIA_URING_BATCH: usize = 32;
/// On io_uring, queued forwards are submitted every this many, so the first of a batch
/// do not wait for the last.
pub const MEDIA_URING_SUBMIT: usize = 8;
/// Largest music-on-hold or prompt file read (bytes): 10 minutes of PCM16 plus headers.
pub const MEDIA_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Prompt files queued toward the loader thread.
pub const MEDIA_LOAD_QUEUE: usize = 64;
/// SCHED_FIFO priority of the media thread (below the kernel's own threaded IRQs at 50
/// would starve them; the unit allows up to 95).
pub const MEDIA_RT_PRIORITY: i32 = 40;
/// Threads that verify Argon2 CTI secrets (off the engine loop, at nice 10).
pub const CTI_VERIFY_WORKERS: usize = 1;
/// Secret checks waiting for them. A connection has at most one login being checked,
/// so this many never fill up (a login past it would be answered "capacity"): a flood
/// waits its turn, paced by the verifier, instead of spinning on refusals.
pub const CTI_VERIFY_QUEUE: usize = CTI_CONNECTIONS;
/// SIP requests without a Via branch (RFC 2543 peers) awaiting an answer at once.
pub const SIP_MAX_UNKEYED: usize = 1024;
/// Log lines waiting for the writer thread, in bytes: when stderr (journald) is slower
/// than this, lines are dropped and counted rather than stalling the thread that logs.
pub const LOG_QUEUE_BYTES: usize = 256 * 1024;
/// How long the log writer lets lines gather after the first before one write(2).
pub const LOG_GATHER_MS: u64 = 5;

/// An analog port's playback and capture gain (board file), in dB.
pub const PORT_GAIN_DB_MIN: i8 = -24;
pub const PORT_GAIN_DB_MAX: i8 = 12;
