//! A stand-in for systemd's notify socket, for the tests of readiness, the watchdog and
//! reloads.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use super::READ_TIMEOUT;

/// A stand-in for systemd's notify socket: a datagram socket in the test's dir.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every message received so far, in order.
    seen: Vec<String>,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        NotifySocket {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Receives until a message has the line `line` (like `READY=1`); returns it.
    pub fn wait_for(&mut self, line: &str) -> String {
        loop {
            let mut buf = [0; 4096];
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => panic!(
                    "no {line} within {READ_TIMEOUT:?} ({e}); received so far: {:?}",
                    self.seen
                ),
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(message.clone());
            if message.lines().any(|l| l == line) {
                return message;
            }
        }
    }

    /// The messages already queued, without waiting for more.
    pub fn drain(&mut self) -> Vec<String> {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
        self.seen.clone()
    }
}
