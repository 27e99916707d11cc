//! The control socket: `<data dir>/control.sock`, a Unix stream socket only its owner
//! may use (mode 0600; the data directory is the box's own), for `ctibox peer
//! status` and `ctibox peer switchover`. One command line in, the answer out, then
//! the connection closes. Nothing on the network reaches it.

use super::driver::Event;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// The longest command line read.
const MAX_COMMAND: usize = 256;

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Binds the socket (replacing a stale one left by a crash).
pub fn bind(data_dir: &Path) -> Result<UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    let p = path(data_dir);
    match std::fs::remove_file(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", p.display())),
    }
    let l = UnixListener::bind(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(l)
}

pub async fn serve(l: UnixListener, inbox: mpsc::Sender<Event>) -> Result<(), String> {
    loop {
        let (s, _) = l.accept().await.map_err(|e| format!("control socket: {e}"))?;
        tokio::task::spawn_local(one(s, inbox.clone()));
    }
}

async fn one(s: UnixStream, inbox: mpsc::Sender<Event>) {
    use tokio::io::AsyncReadExt;
    let (r, mut w) = s.into_split();
    let mut line = String::new();
    let mut limited = BufReader::new(r.take(MAX_COMMAND as u64 + 1));
    let read = limited.read_line(&mut line).await;
    if read.is_err() || line.len() > MAX_COMMAND || !line.ends_with('\n') {
        let _ = w.write_all(b"error: a command is one line of at most 256 bytes\n").await;
        return;
    }
    let (reply, answer) = oneshot::channel();
    if inbox.send(Event::Control { command: line, reply }).await.is_err() {
        return;
    }
    if let Ok(a) = answer.await {
        let _ = w.write_all(a.as_bytes()).await;
    }
}

/// The client side (`ctibox peer ...`): sends `command`, returns the answer.
pub fn request(data_dir: &Path, command: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let p = path(data_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&p).map_err(|e| format!("{}: {e} (is the box running with this --data-dir?)", p.display()))?;
    s.write_all(format!("{command}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
