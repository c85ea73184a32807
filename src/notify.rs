//! systemd glue: readiness notifications (`sd_notify`), the watchdog, and socket
//! activation. Everything here is a no-op outside systemd.
//!
//! The environment is read once, by `tokend serve`, and passed in: nothing here reads or
//! unsets a variable later (unsetting one in a threaded process is a data race), so the
//! library stays usable in-process by tests that never set these variables.
//!
//! - `NOTIFY_SOCKET`: where `READY=1`, `STATUS=`, `RELOADING=1`, `STOPPING=1` and
//!   `WATCHDOG=1` go (sent with the `sd-notify` crate).
//! - `WATCHDOG_USEC` (and `WATCHDOG_PID`, when set, naming this process): ping twice
//!   per period, as sd_watchdog_enabled(3) advises.
//! - `LISTEN_PID` / `LISTEN_FDS`: a listening socket passed as fd 3 (sd_listen_fds(3)).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{getsockopt, sockopt, SockType};
use sd_notify::NotifyState;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Sends state changes to the service manager, when there is one to send them to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier {
    /// `NOTIFY_SOCKET` was set when the daemon started.
    enabled: bool,
}

impl Notifier {
    /// Enabled when `NOTIFY_SOCKET` is set (systemd's `Type=notify`).
    pub fn from_env(env: &HashMap<String, String>) -> Notifier {
        Notifier {
            enabled: env.get("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// `READY=1` with a status line: the socket accepts connections and the store is open.
    pub fn ready(&self, status: &str) {
        let status = one_line(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// `STATUS=`: the one-line summary `systemctl status` shows.
    pub fn status(&self, status: &str) {
        let status = one_line(status);
        self.send(&[NotifyState::Status(&status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd 253's `Type=notify-reload` wants the
    /// timestamp; older versions ignore it). `ready` ends the reload.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `WATCHDOG=1`: the daemon is alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        // A failed notification is worth a line, never a failure: the daemon serves anyway.
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

/// A status line: systemd shows only the first line, so newlines become spaces.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if the watchdog is on for
/// this process (`WATCHDOG_PID` absent or ours).
pub fn watchdog_interval(env: &HashMap<String, String>) -> Option<Duration> {
    let usec: u64 = env.get("WATCHDOG_USEC")?.parse().ok()?;
    let ours = match env.get("WATCHDOG_PID") {
        Some(pid) => pid.parse::<u32>().ok()? == std::process::id(),
        None => true,
    };
    (ours && usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Why a passed socket cannot be used. The daemon does not start: the unit is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_PID` or `LISTEN_FDS` is not a number.
    #[error("socket activation: {0} is not a number")]
    BadVariable(&'static str),
    /// More than one socket was passed; tokend serves one (one `ListenStream=`).
    #[error("socket activation: {0} sockets were passed; tokend.socket must have exactly one ListenStream=")]
    TooMany(u32),
    /// fd 3 is closed, or not a listening Unix stream socket.
    #[error("socket activation: the passed fd 3 is not a listening Unix stream socket ({0}); use ListenStream=/path in tokend.socket")]
    NotAListener(String),
}

/// The listening socket systemd passed (socket activation), or `None` when started
/// without one. Takes ownership of fd 3 and marks it close-on-exec.
pub fn inherited_listener(
    env: &HashMap<String, String>,
) -> Result<Option<UnixListener>, ActivationError> {
    let Some(pid) = env.get("LISTEN_PID") else {
        return Ok(None);
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| ActivationError::BadVariable("LISTEN_PID"))?;
    // Variables meant for another process (a parent that forgot to unset them).
    if pid != std::process::id() {
        return Ok(None);
    }
    let count: u32 = env
        .get("LISTEN_FDS")
        .map(|n| n.parse())
        .transpose()
        .map_err(|_| ActivationError::BadVariable("LISTEN_FDS"))?
        .unwrap_or(0);
    match count {
        0 => return Ok(None),
        1 => {}
        n => return Err(ActivationError::TooMany(n)),
    }
    let not_a_listener = |what: &str| ActivationError::NotAListener(what.to_owned());
    // SAFETY: only borrowed to ask the kernel whether fd 3 is open; nothing is closed.
    let fd = unsafe { BorrowedFd::borrow_raw(LISTEN_FDS_START) };
    let flags = fcntl(fd, FcntlArg::F_GETFD).map_err(|_| not_a_listener("it is not open"))?;
    let cloexec = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
    fcntl(fd, FcntlArg::F_SETFD(cloexec)).map_err(|e| not_a_listener(&e.to_string()))?;
    // SAFETY: fd 3 is open (checked above) and, by the LISTEN_FDS protocol, handed to this
    // process to own; nothing else in tokend uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd.as_raw_fd()) };
    if getsockopt(&owned, sockopt::SockType) != Ok(SockType::Stream) {
        return Err(not_a_listener("not a stream socket"));
    }
    if getsockopt(&owned, sockopt::AcceptConn) != Ok(true) {
        return Err(not_a_listener("not listening"));
    }
    let listener = UnixListener::from(owned);
    // `local_addr` fails unless the socket is AF_UNIX.
    listener
        .local_addr()
        .map_err(|_| not_a_listener("not a Unix socket"))?;
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn watchdog_pings_at_half_the_period_for_this_process_only() {
        let me = std::process::id().to_string();
        let half = Some(Duration::from_secs(10));
        assert_eq!(
            watchdog_interval(&env(&[("WATCHDOG_USEC", "20000000")])),
            half
        );
        assert_eq!(
            watchdog_interval(&env(&[
                ("WATCHDOG_USEC", "20000000"),
                ("WATCHDOG_PID", &me)
            ])),
            half
        );
        let other = (std::process::id() + 1).to_string();
        let for_other = env(&[("WATCHDOG_USEC", "20000000"), ("WATCHDOG_PID", &other)]);
        assert_eq!(watchdog_interval(&for_other), None);
        assert_eq!(watchdog_interval(&env(&[("WATCHDOG_USEC", "0")])), None);
        assert_eq!(watchdog_interval(&env(&[("WATCHDOG_USEC", "x")])), None);
        assert_eq!(watchdog_interval(&env(&[])), None);
    }

    #[test]
    fn activation_variables_for_another_process_or_none_mean_no_socket() {
        assert!(inherited_listener(&env(&[])).unwrap().is_none());
        let other = (std::process::id() + 1).to_string();
        let for_other = env(&[("LISTEN_PID", &other), ("LISTEN_FDS", "1")]);
        assert!(inherited_listener(&for_other).unwrap().is_none());
        let me = std::process::id().to_string();
        let none = env(&[("LISTEN_PID", &me), ("LISTEN_FDS", "0")]);
        assert!(inherited_listener(&none).unwrap().is_none());
    }

    #[test]
    fn bad_activation_variables_are_errors_that_name_them() {
        let me = std::process::id().to_string();
        let e = inherited_listener(&env(&[("LISTEN_PID", "me")])).unwrap_err();
        assert!(e.to_string().contains("LISTEN_PID"), "{e}");
        let e = inherited_listener(&env(&[("LISTEN_PID", &me), ("LISTEN_FDS", "x")])).unwrap_err();
        assert!(e.to_string().contains("LISTEN_FDS"), "{e}");
        let e = inherited_listener(&env(&[("LISTEN_PID", &me), ("LISTEN_FDS", "2")])).unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
    }

    #[test]
    fn status_lines_stay_one_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }
}
