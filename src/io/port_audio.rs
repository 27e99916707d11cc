//! The sound device of an analog port: one named real-time thread per port
//! ("analog-PORT", SCHED_FIFO like the media thread, not a tokio task), ALSA through
//! the `alsa` crate, 8 kHz mono PCM16 in 20 ms periods. The engine only commands
//! (`AudioCmd`, from the port's `AnalogOutput`s); the thread does the audio:
//!
//! - playback: the engine's sound (the country's tones, the howler), caller ID (FSK or
//!   DTMF CLIP, on hook or into a call for call waiting), the call-waiting tone and
//!   alerting signal, DTMF dialling (FXO) -- these have priority, the far end muted
//!   meanwhile -- and the call's audio from RTP through the adaptive jitter buffer
//!   (G.711 either law), with the sound mixed over it;
//! - capture: in-band DTMF (FXS: the engine's digit collection and a set's
//!   call-waiting acknowledgement), caller ID from the line (FXO on hook: Bell 202 and V.23 FSK, DTMF
//!   CLIP), call-progress tones (FXO seized: dial, busy, reorder), and the call's
//!   audio to RTP;
//! - FXO: the line echo canceller (`core::media::echo`) takes what the port played
//!   out of what it hears, before anything listens to it or it goes to RTP;
//! - the device is open only while there is something to play or hear, and
//!   `LINGER` after; a closed port costs nothing.
//!
//! Pacing: a monotonic 20 ms schedule; each tick reads one period and writes one
//! (blocking), so a device whose clock runs slow holds the loop back and one that runs
//! fast is caught up by reading what is available. alsa-lib's file plugin over the
//! null device (the host tests) has no clock of its own; the schedule paces it.

use super::driver::Event;
use crate::board::{Port, PortKind};
use crate::codec::callerid::{self, Field, Fsk, FskRx, Preamble};
use crate::config::Codec;
use crate::core::analog::engine::{AnalogInput, CidSignal};
use crate::core::analog::fxs::Sound;
use crate::core::media::echo::{EchoCanceller, EchoConfig};
use crate::core::media::dtmf::{synth_digit, Digit, DtmfConfig, DtmfDetector, DtmfEvent, DtmfTone};
use crate::core::media::g711::Law;
use crate::core::media::jitter::{JitterBuffer, JitterConfig};
use crate::core::media::progress::ProgressDetector;
use crate::core::media::rtp::{self, RtpHeader};
use crate::core::media::tone::{self, Osc, ToneGen};
use crate::core::media::{dbm0_to_peak, FRAME_SAMPLES};
use crate::core::{Input, Time};
use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_millis(20);
/// The device stays open this long after the port last had something to do.
pub const LINGER: Duration = Duration::from_secs(2);
/// A device that would not open is tried again after this long.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Commands queued per port, at most.
const COMMANDS: usize = 64;
/// Periods of silence written ahead at start, so that playback never runs dry.
const PREFILL: usize = 2;
/// A schedule this far behind (the thread was starved) starts again from now.
const MAX_LATE: Duration = Duration::from_millis(100);
/// Caller ID level: -13 dBm0, as Bell and ETSI specify for on-hook data.
const CID_DBM0: f32 = -13.0;
/// DTMF CLIP: 70 ms tones, 70 ms apart.
const CLIP_ON: usize = 8 * 70;
/// FXO dialling: 100 ms tones, 100 ms apart (the pace the engine's FXO line
/// expects, `fxo::DTMF_DIGIT`).
const DIAL_ON: usize = 8 * 100;
/// The call-waiting tone burst, then the CPE alerting signal (2130 + 2750 Hz).
const CW_TONE: usize = 8 * 300;
const CAS: usize = 8 * 80;
/// Digits of a DTMF CLIP message arrive within this of each other.
const CLIP_GAP: Duration = Duration::from_millis(500);
/// The FXO echo canceller's tail (ms).
const ECHO_TAIL_MS: u32 = 128;
/// Most samples queued for caller ID and dialling (8 s).
const MAX_QUEUED: usize = 8 * 8000;
fn db_to_gain(db: i8) -> f32 {
    10f32.powf(f32::from(db) / 20.0)
}

/// Scales samples by `gain`, saturating (a gain of 1 leaves them alone).
fn apply_gain(samples: &mut [i16], gain: f32) {
    if gain != 1.0 {
        for s in samples {
            *s = (f32::from(*s) * gain).round().clamp(-32768.0, 32767.0) as i16;
        }
    }
}

/// The jitter buffer's clock: microseconds since the thread began.
fn micros(epoch: Instant) -> Time {
    Time(epoch.elapsed().as_micros().min(u128::from(u64::MAX)) as u64)
}

/// What the engine (through the shell) asks of a port's sound.
#[derive(Debug)]
pub enum AudioCmd {
    Play(Sound),
    CallerId(CidSignal),
    /// FXO: digits to dial on the line, in DTMF.
    Dial(String),
    /// FXS in a call: the call-waiting tone, with the alerting signal after it.
    CallWaitingTone { cas: bool },
    Connect { local_port: u16, remote: SocketAddr, codec: Codec },
    Disconnect,
    /// FXO: the line rings (listen for caller ID for a while).
    Ringing,
    /// FXO: the line is seized (true) or released.
    Seized(bool),
    /// FXS: the handset is off hook (true) or on hook, as the hook line last said
    /// (digits may come however slowly while it is off).
    OffHook(bool),
}

/// What the audio thread needs besides its port.
#[derive(Clone, Copy, Debug)]
pub struct AudioSettings {
    /// Where the port's RTP socket binds (the media path's address).
    pub bind_ip: IpAddr,
    pub country: tone::Country,
}

/// The shell's handle on a port's audio thread.
#[derive(Clone)]
pub struct PortAudio {
    tx: SyncSender<AudioCmd>,
    port: String,
}

impl PortAudio {
    /// Starts the port's audio thread (the device opens when there is something to do).
    pub fn start(port: &Port, settings: AudioSettings, inbox: tokio::sync::mpsc::Sender<Event>) -> std::io::Result<PortAudio> {
        let (tx, rx) = mpsc::sync_channel(COMMANDS);
        let worker = Worker::new(port, settings, rx, inbox);
        std::thread::Builder::new().name(format!("analog-{}", port.name)).spawn(move || worker.run())?;
        Ok(PortAudio { tx, port: port.name.clone() })
    }

    pub fn send(&self, cmd: AudioCmd) {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(c)) => log::warn!("analog: port {}: the audio thread is behind; dropped {c:?}", self.port),
            Err(TrySendError::Disconnected(_)) => log::warn!("analog: port {}: the audio thread has stopped", self.port),
        }
    }
}

struct Devices {
    play: PCM,
    cap: PCM,
    /// The capture has a clock of its own (a real device; not alsa-lib's null
    /// device, whose capture is always full).
    clocked: bool,
}

struct RtpLeg {
    sock: UdpSocket,
    remote: SocketAddr,
    law: Law,
    header: RtpHeader,
    jitter: JitterBuffer,
}

/// The howler (receiver off hook): 1400+2060+2450+2600 Hz, 0.1 s on and off, loud.
struct Howler {
    osc: [Osc; 4],
    n: u32,
}

impl Howler {
    fn new() -> Howler {
        let peak = dbm0_to_peak(-6.0) / 4.0;
        Howler { osc: [1400.0, 2060.0, 2450.0, 2600.0].map(|f| Osc::new(f, peak)), n: 0 }
    }
    fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            let mut v: f32 = self.osc.iter_mut().map(Osc::next_sample).sum();
            if (self.n / 800) % 2 == 1 {
                v = 0.0;
            }
            self.n = (self.n + 1) % 1600;
            *s = v.round().clamp(-32768.0, 32767.0) as i16;
        }
    }
}

enum Gen {
    Silence,
    Tone(ToneGen),
    Howler(Howler),
}

struct Worker {
    port: String,
    kind: PortKind,
    /// Linear gains from the board file.
    playback_gain: f32,
    capture_gain: f32,
    playback: String,
    capture: String,
    settings: AudioSettings,
    rx: Receiver<AudioCmd>,
    inbox: tokio::sync::mpsc::Sender<Event>,
    dev: Option<Devices>,
    failed_at: Option<Instant>,
    gen: Gen,
    /// Caller ID or dialling samples, played before anything else.
    queued: VecDeque<i16>,
    queued_what: Option<&'static str>,
    rtp: Option<RtpLeg>,
    dtmf: DtmfDetector,
    progress: ProgressDetector,
    fsk: [FskRx; 2],
    clip: String,
    clip_at: Option<Instant>,
    ringing_until: Option<Instant>,
    seized: bool,
    off_hook: bool,
    busy_until: Instant,
    epoch: Instant,
    lost_inputs: u64,
    skipped: u64,
    /// FXO: the line echo canceller, and the frame played last (its reference).
    echo: Option<EchoCanceller>,
    last_out: [i16; FRAME_SAMPLES],
}

impl Worker {
    fn new(port: &Port, settings: AudioSettings, rx: Receiver<AudioCmd>, inbox: tokio::sync::mpsc::Sender<Event>) -> Worker {
        let now = Instant::now();
        Worker {
            port: port.name.clone(),
            kind: port.kind,
            playback_gain: db_to_gain(port.playback_gain_db),
            capture_gain: db_to_gain(port.capture_gain_db),
            playback: port.playback.clone(),
            capture: port.capture.clone(),
            settings,
            rx,
            inbox,
            dev: None,
            failed_at: None,
            gen: Gen::Silence,
            queued: VecDeque::new(),
            queued_what: None,
            rtp: None,
            dtmf: DtmfDetector::new(DtmfConfig::default()),
            progress: ProgressDetector::new(settings.country),
            fsk: [FskRx::new(Fsk::Bell202), FskRx::new(Fsk::V23)],
            clip: String::new(),
            clip_at: None,
            ringing_until: None,
            seized: false,
            off_hook: false,
            busy_until: now,
            epoch: now,
            lost_inputs: 0,
            skipped: 0,
            // The tail covers the hybrid's echo and the device's own buffering (the
            // prefill and a period each way): 128 ms.
            echo: (port.kind == PortKind::Fxo).then(|| EchoCanceller::new(EchoConfig { tail_ms: ECHO_TAIL_MS, ..EchoConfig::default() })),
            last_out: [0; FRAME_SAMPLES],
        }
    }

    /// Something to play or to hear.
    fn wanted(&self, now: Instant) -> bool {
        !matches!(self.gen, Gen::Silence) || !self.queued.is_empty() || self.rtp.is_some() || self.seized || self.off_hook || self.ringing_until.is_some_and(|t| now < t)
    }

    fn run(mut self) {
        super::media::realtime_priority_for(&format!("analog-{}", self.port));
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            if self.wanted(now) {
                self.busy_until = now + LINGER;
            }
            if now >= self.busy_until {
                if self.dev.take().is_some() {
                    log::info!("analog: port {}: sound device closed", self.port);
                }
                // Nothing to do: wait for the next command without ticking.
                match self.rx.recv() {
                    Ok(c) => self.command(c),
                    Err(_) => return,
                }
                next = Instant::now();
                continue;
            }
            loop {
                match self.rx.try_recv() {
                    Ok(c) => self.command(c),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > MAX_LATE {
                next = now;
            }
            next += PERIOD;
            self.tick();
        }
    }

    fn command(&mut self, c: AudioCmd) {
        match c {
            AudioCmd::Play(sound) => {
                self.gen = match sound {
                    Sound::Silence => Gen::Silence,
                    Sound::Tone(k) => Gen::Tone(ToneGen::for_plan(self.settings.country, k)),
                    Sound::Howler => Gen::Howler(Howler::new()),
                }
            }
            AudioCmd::CallerId(signal) => {
                let mut samples = Vec::new();
                let peak = dbm0_to_peak(CID_DBM0).round() as i16;
                match signal {
                    CidSignal::Fsk { fsk, message } => callerid::modulate(fsk, Preamble::ON_HOOK, &message, peak, &mut samples),
                    CidSignal::FskCallWaiting { fsk, message } => callerid::modulate(fsk, Preamble::OFF_HOOK, &message, peak, &mut samples),
                    CidSignal::Dtmf { digits } => dtmf_samples(&digits, CLIP_ON, &mut samples),
                }
                self.queue(samples, "caller ID");
            }
            AudioCmd::Dial(digits) => {
                let mut samples = Vec::new();
                dtmf_samples(&digits, DIAL_ON, &mut samples);
                self.queue(samples, "dialled digits");
            }
            AudioCmd::CallWaitingTone { cas } => {
                let mut samples = vec![0i16; CW_TONE];
                ToneGen::for_plan(self.settings.country, tone::ToneKind::CallWaiting).fill(&mut samples);
                if cas {
                    let peak = dbm0_to_peak(-15.0);
                    let (mut lo, mut hi) = (Osc::new(2130.0, peak), Osc::new(2750.0, peak));
                    samples.extend((0..CAS).map(|_| (lo.next_sample() + hi.next_sample()).round().clamp(-32768.0, 32767.0) as i16));
                }
                self.queue(samples, "call-waiting tone");
            }
            AudioCmd::Connect { local_port, remote, codec } => {
                let law = match codec {
                    Codec::Pcmu => Law::Ulaw,
                    Codec::Pcma => Law::Alaw,
                };
                match UdpSocket::bind((self.settings.bind_ip, local_port)).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                    Ok(sock) => {
                        let seed = self.epoch.elapsed().as_nanos() as u64 ^ u64::from(local_port) << 32;
                        let header = RtpHeader { payload_type: law.payload_type(), sequence: seed as u16, timestamp: (seed >> 16) as u32, ssrc: (seed >> 8) as u32 ^ 0x5a5a_5a5a, marker: true, ..RtpHeader::default() };
                        self.rtp = Some(RtpLeg { sock, remote, law, header, jitter: JitterBuffer::new(JitterConfig::default()) });
                    }
                    Err(e) => log::warn!("analog: port {}: cannot bind RTP port {local_port}: {e}", self.port),
                }
            }
            AudioCmd::Disconnect => self.rtp = None,
            AudioCmd::Ringing => self.ringing_until = Some(Instant::now() + Duration::from_secs(10)),
            AudioCmd::OffHook(off) => self.off_hook = off,
            AudioCmd::Seized(on) => {
                self.seized = on;
                self.progress.reset();
                // A new call on the line: a new echo path.
                if let Some(ec) = &mut self.echo {
                    ec.reset();
                }
            }
        }
    }

    fn queue(&mut self, samples: Vec<i16>, what: &'static str) {
        if self.queued.len() + samples.len() > MAX_QUEUED {
            log::warn!("analog: port {}: {what} dropped: {} samples already queued", self.port, self.queued.len());
            return;
        }
        self.queued.extend(samples);
        self.queued_what = Some(what);
    }

    fn open(&mut self) -> Option<&Devices> {
        if self.dev.is_none() {
            if self.failed_at.is_some_and(|t| t.elapsed() < REOPEN_AFTER) {
                return None;
            }
            match open_devices(&self.playback, &self.capture) {
                Ok(d) => {
                    log::info!("analog: port {}: sound device open (playback {}, capture {})", self.port, self.playback, self.capture);
                    self.failed_at = None;
                    self.dtmf.reset();
                    self.dev = Some(d);
                }
                Err(e) => {
                    if self.failed_at.is_none() {
                        log::warn!("analog: port {}: cannot open its sound device: {e}", self.port);
                    }
                    self.failed_at = Some(Instant::now());
                    return None;
                }
            }
        }
        self.dev.as_ref()
    }

    fn tick(&mut self) {
        let mut cap = [0i16; FRAME_SAMPLES];
        {
            let port = self.port.clone();
            let Some(dev) = self.open() else { return };
            if let Err(e) = read_period(&dev.cap, &mut cap) {
                // Not recovered by a restart (a USB card unplugged): open it again.
                return self.fail(&format!("capture: {e}"));
            }
            // A device whose clock runs ahead of the schedule fills its capture
            // buffer: a period is dropped so that what is sent stays fresh.
            if dev.clocked && dev.cap.avail_update().is_ok_and(|a| a >= 2 * FRAME_SAMPLES as alsa::pcm::Frames) {
                let mut spare = [0i16; FRAME_SAMPLES];
                if read_period(&dev.cap, &mut spare).is_ok() {
                    self.skipped += 1;
                    if self.skipped.is_power_of_two() {
                        log::info!("analog: port {port}: its sound device runs fast; {} capture period(s) dropped", self.skipped);
                    }
                }
            }
        }
        apply_gain(&mut cap, self.capture_gain);
        if let Some(ec) = &mut self.echo {
            // The line reflects what the port played: take it out of what it hears.
            let near = cap;
            ec.process(&self.last_out, &near, &mut cap);
        }
        self.hear(&cap);
        let mut out = [0i16; FRAME_SAMPLES];
        self.render(&mut out);
        apply_gain(&mut out, self.playback_gain);
        self.last_out = out;
        if let Some(dev) = &self.dev {
            if let Err(e) = write_period(&dev.play, &out) {
                self.fail(&format!("playback: {e}"));
            }
        }
    }

    /// The device failed past recovery: close it; it is opened again after
    /// `REOPEN_AFTER` (the port's calls go on, silent meanwhile).
    fn fail(&mut self, what: &str) {
        log::warn!("analog: port {}: sound device failed ({what}); opening it again", self.port);
        self.dev = None;
        self.failed_at = Some(Instant::now());
    }

    /// What the port hears: digits, caller ID and tones to the engine; audio to RTP.
    fn hear(&mut self, cap: &[i16; FRAME_SAMPLES]) {
        let now = Instant::now();
        self.dtmf.process(cap);
        while let Some(ev) = self.dtmf.poll_event() {
            let DtmfEvent::Start { digit, .. } = ev else { continue };
            let c = digit.to_char();
            match self.kind {
                // In a call the engine takes only a call-waiting acknowledgement (A, D).
                PortKind::Fxs => self.input(AnalogInput::Digit { port: self.port.clone(), digit: c }),
                PortKind::Fxo if !self.seized => {
                    self.clip.push(c);
                    self.clip_at = Some(now);
                }
                _ => {}
            }
        }
        if self.kind == PortKind::Fxo {
            if !self.seized {
                for rx in &mut self.fsk {
                    rx.push(cap);
                }
                let mut decoded = Vec::new();
                for rx in &mut self.fsk {
                    while let Some(r) = rx.poll() {
                        match r {
                            Ok(m) => decoded.push(m),
                            Err(e) => log::info!("analog: port {}: caller ID on the line not decoded: {e}", self.port),
                        }
                    }
                }
                for m in decoded {
                    self.input(AnalogInput::CallerId { port: self.port.clone(), number: m.number, name: m.name });
                }
                if self.clip_at.is_some_and(|t| now - t > CLIP_GAP) || self.clip.ends_with('C') {
                    let digits = std::mem::take(&mut self.clip);
                    self.clip_at = None;
                    if let Some(number) = callerid::parse_dtmf_clip(&digits) {
                        self.input(AnalogInput::CallerId { port: self.port.clone(), number, name: Field::Absent });
                    }
                }
            } else if let Some(tone) = self.progress.process(cap) {
                self.input(AnalogInput::ToneHeard { port: self.port.clone(), tone });
            }
        }
        if let Some(leg) = &mut self.rtp {
            let mut payload = [0u8; FRAME_SAMPLES];
            leg.law.encode_into(cap, &mut payload);
            let packet = leg.header.to_packet(&payload);
            if let Err(e) = leg.sock.send_to(&packet, leg.remote) {
                log::debug!("analog: port {}: RTP send: {e}", self.port);
            }
            leg.header.marker = false;
            leg.header.sequence = leg.header.sequence.wrapping_add(1);
            leg.header.timestamp = leg.header.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        }
    }

    /// What the port plays: queued caller ID or digits first, else the call's audio
    /// with the engine's sound over it.
    fn render(&mut self, out: &mut [i16; FRAME_SAMPLES]) {
        if !self.queued.is_empty() {
            for s in out.iter_mut() {
                *s = self.queued.pop_front().unwrap_or(0);
            }
            if self.queued.is_empty() {
                if let Some(what) = self.queued_what.take() {
                    log::info!("analog: port {}: {what} played", self.port);
                }
            }
            return;
        }
        if let Some(leg) = &mut self.rtp {
            let now = micros(self.epoch);
            let mut buf = [0u8; 1500];
            let mut pcm = [0i16; 480];
            while let Ok((n, from)) = leg.sock.recv_from(&mut buf) {
                if from.ip() != leg.remote.ip() {
                    continue;
                }
                let Ok(p) = rtp::parse(&buf[..n]) else { continue };
                if p.header.payload_type != leg.law.payload_type() || p.payload.len() > pcm.len() {
                    continue;
                }
                let k = leg.law.decode_into(p.payload, &mut pcm);
                leg.jitter.push(now, p.header.timestamp, &pcm[..k]);
            }
            leg.jitter.pop(now, out);
        }
        let mut sound = [0i16; FRAME_SAMPLES];
        match &mut self.gen {
            Gen::Silence => return,
            Gen::Tone(t) => {
                t.fill(&mut sound);
            }
            Gen::Howler(h) => h.fill(&mut sound),
        }
        for (o, s) in out.iter_mut().zip(sound) {
            *o = o.saturating_add(s);
        }
    }

    fn input(&mut self, a: AnalogInput) {
        if self.inbox.try_send(Event::Input(Input::Analog(a))).is_err() {
            self.lost_inputs += 1;
            if self.lost_inputs.is_power_of_two() {
                log::warn!("analog: port {}: the engine's inbox is full; {} input(s) lost", self.port, self.lost_inputs);
            }
        }
    }
}

/// DTMF digits as a line carries them, `on` samples of tone and as many of silence
/// each; other characters are skipped.
fn dtmf_samples(digits: &str, on: usize, out: &mut Vec<i16>) {
    let tone = DtmfTone::default();
    for d in digits.chars().filter_map(Digit::from_char) {
        synth_digit(d, &tone, on, out);
        out.extend(std::iter::repeat_n(0, on));
    }
}

fn open_devices(playback: &str, capture: &str) -> Result<Devices, String> {
    let play = open_pcm(playback, Direction::Playback).map_err(|e| format!("playback {playback}: {e}"))?;
    let cap = open_pcm(capture, Direction::Capture).map_err(|e| format!("capture {capture}: {e}"))?;
    let silence = [0i16; FRAME_SAMPLES];
    for _ in 0..PREFILL {
        write_period(&play, &silence).map_err(|e| format!("playback {playback}: {e}"))?;
    }
    cap.start().map_err(|e| format!("capture {capture}: {e}"))?;
    // Just started, a real capture holds less than a period.
    let clocked = cap.avail_update().is_ok_and(|a| a < FRAME_SAMPLES as alsa::pcm::Frames);
    Ok(Devices { play, cap, clocked })
}

fn open_pcm(name: &str, dir: Direction) -> alsa::Result<PCM> {
    let pcm = PCM::new(name, dir, false)?;
    {
        let hw = HwParams::any(&pcm)?;
        hw.set_access(Access::RWInterleaved)?;
        hw.set_format(Format::s16())?;
        hw.set_channels(1)?;
        hw.set_rate(8000, ValueOr::Nearest)?;
        hw.set_period_size_near(FRAME_SAMPLES as alsa::pcm::Frames, ValueOr::Nearest)?;
        hw.set_buffer_size_near(4 * FRAME_SAMPLES as alsa::pcm::Frames)?;
        pcm.hw_params(&hw)?;
    }
    pcm.prepare()?;
    Ok(pcm)
}

/// One period from capture, recovering from an overrun once.
fn read_period(pcm: &PCM, buf: &mut [i16; FRAME_SAMPLES]) -> alsa::Result<()> {
    let io = pcm.io_i16()?;
    let mut got = 0;
    let mut recovered = false;
    while got < buf.len() {
        match io.readi(&mut buf[got..]) {
            Ok(n) => got += n,
            Err(e) if !recovered => {
                recovered = true;
                pcm.try_recover(e, true)?;
                pcm.start()?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One period to playback, recovering from an underrun once (with fresh prefill).
fn write_period(pcm: &PCM, buf: &[i16; FRAME_SAMPLES]) -> alsa::Result<()> {
    let io = pcm.io_i16()?;
    let mut put = 0;
    let mut recovered = false;
    while put < buf.len() {
        match io.writei(&buf[put..]) {
            Ok(n) => put += n,
            Err(e) if !recovered => {
                recovered = true;
                pcm.try_recover(e, true)?;
                let silence = [0i16; FRAME_SAMPLES];
                for _ in 0..PREFILL {
                    io.writei(&silence)?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
