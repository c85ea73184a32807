//! FrontActor: owns the Unix socket, accepts clients and starts a task per connection
//! (`connection.rs`); at shutdown it stops accepting and waits for replies in flight.
//!
//! Two limits keep one client from locking out the rest: `max_connections` in all, and
//! `max_connections_per_user` for the programs of one user (by the peer's uid), so that
//! with a socket group, a program of one member that leaks connections leaves the other
//! members' programs their share. Without a socket group, the daemon's own user is not
//! limited per user: on a socket only it may open, that limit would only cut
//! `max_connections`.
//!
//! Binding is careful, as a credential agent's must be: the socket's directory must not
//! be writable by others nor owned by another user, a live daemon on the path is never
//! displaced, a stale socket file from a killed daemon is replaced, anything else at the
//! path is left alone, and the socket file is removed on the way out by a guard. A socket
//! passed by systemd (`adopt`) is used as it is and left in place (`front/bind.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SocketConfig;
use crate::connection::{self, Services};
use crate::protocol::{self, Code, WireError};

mod bind;
pub use bind::{adopt, bind, socket_path, SocketGuard};

/// Stop accepting, let every connection answer what it has read, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

pub struct FrontActor {
    /// Taken when the actor starts and turned into its stream of accepted connections.
    listener: Option<UnixListener>,
    /// The accept stream, cancelled at shutdown so no new client gets in.
    accepting: Option<SpawnHandle>,
    services: Services,
    max_line: usize,
    max_connections: usize,
    max_per_user: usize,
    /// Open connections by the peer's uid.
    per_user: PerUser,
    /// The daemon's own (effective) uid when no socket group is set: not limited per user.
    exempt_uid: Option<u32>,
    shutdown_timeout: Duration,
    /// The live connection tasks: their count enforces `max_connections`, and shutdown
    /// waits on them.
    connections: TaskTracker,
    /// The daemon's "stopping" (the same token the cleanup watches); once it fires, each
    /// connection stops reading new requests.
    closing: CancellationToken,
}

impl FrontActor {
    pub fn new(
        listener: UnixListener,
        services: Services,
        config: &SocketConfig,
        stopping: CancellationToken,
    ) -> FrontActor {
        FrontActor {
            listener: Some(listener),
            accepting: None,
            services,
            max_line: config.max_request_bytes,
            max_connections: config.max_connections,
            max_per_user: config.max_connections_per_user,
            per_user: PerUser::default(),
            exempt_uid: config
                .group
                .is_none()
                .then(|| nix::unistd::geteuid().as_raw()),
            shutdown_timeout: config.shutdown_timeout,
            connections: TaskTracker::new(),
            closing: stopping,
        }
    }
}

impl Actor for FrontActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(listener) = self.listener.take() {
            let accepted = futures_util::stream::unfold(listener, |l| async move {
                let next = l.accept().await.map(|(stream, _)| stream);
                Some((next, l))
            });
            self.accepting = Some(ctx.add_stream(accepted));
        }
    }
}

impl StreamHandler<io::Result<UnixStream>> for FrontActor {
    fn handle(&mut self, accepted: io::Result<UnixStream>, ctx: &mut Self::Context) {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Typically out of file descriptors: pause accepting briefly rather than
                // spin on an error that will not clear at once.
                tracing::warn!(error = %e, "accept failed; pausing accepts for 100 ms");
                ctx.wait(tokio::time::sleep(Duration::from_millis(100)).into_actor(self));
                return;
            }
        };
        if self.connections.len() >= self.max_connections {
            tracing::warn!(
                limit = self.max_connections,
                "connection refused: at the connection limit"
            );
            actix::spawn(refuse(stream, "tokend is at its connection limit"));
            return;
        }
        // Linux always knows a Unix socket peer's uid; without it there is no share to
        // count against, so the client is refused rather than let past the limit.
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                tracing::warn!(error = %e, "connection refused: its user could not be read");
                actix::spawn(refuse(stream, "tokend could not tell which user connected"));
                return;
            }
        };
        let limit = if Some(uid) == self.exempt_uid {
            usize::MAX
        } else {
            self.max_per_user
        };
        let Some(slot) = self.per_user.admit(uid, limit) else {
            tracing::warn!(
                uid,
                limit = self.max_per_user,
                "connection refused: the user is at its connection limit"
            );
            let why = "tokend is at its connection limit for your user";
            actix::spawn(refuse(stream, why));
            return;
        };
        tracing::debug!(uid, open = self.connections.len() + 1, "client connected");
        let task = connection::serve(
            stream,
            uid,
            self.services.clone(),
            self.max_line,
            self.closing.clone(),
        );
        self.connections.spawn_local(async move {
            task.await;
            drop(slot);
        });
    }
}

/// Open connections by uid. Connections run on the front actor's thread, so a plain
/// shared map does; each admitted connection holds a `UserSlot` that gives its place back
/// when the connection ends.
#[derive(Clone, Default)]
struct PerUser(Rc<RefCell<HashMap<u32, usize>>>);

struct UserSlot {
    users: PerUser,
    uid: u32,
}

impl PerUser {
    /// A place for one more connection of `uid`, or `None` if it has `limit` open.
    fn admit(&self, uid: u32, limit: usize) -> Option<UserSlot> {
        let mut open = self.0.borrow_mut();
        let n = open.entry(uid).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            users: self.clone(),
            uid,
        })
    }

    #[cfg(test)]
    fn open(&self, uid: u32) -> usize {
        self.0.borrow().get(&uid).copied().unwrap_or(0)
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut open = self.users.0.borrow_mut();
        if let Some(n) = open.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

impl Handler<Shutdown> for FrontActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        if let Some(handle) = self.accepting.take() {
            ctx.cancel_future(handle);
        }
        self.closing.cancel();
        self.connections.close();
        let (connections, timeout) = (self.connections.clone(), self.shutdown_timeout);
        let drained = async move {
            if tokio::time::timeout(timeout, connections.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    open = connections.len(),
                    ?timeout,
                    "gave up waiting for connections to finish"
                );
            }
        };
        Box::pin(drained.into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}

/// Tells a client over a connection limit why it is being turned away.
async fn refuse(mut stream: UnixStream, why: &'static str) {
    let mut line = Vec::new();
    let busy = WireError::new(Code::Busy, format!("{why}; retry later"));
    protocol::encode(&serde_json::Value::Null, &Err(busy), &mut line);
    let _ = stream.write_all(&line).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::PerUser;

    #[test]
    fn a_user_at_its_limit_is_refused_and_others_are_not() {
        let users = PerUser::default();
        let first = users.admit(1000, 2).expect("first of two");
        let second = users.admit(1000, 2).expect("second of two");
        assert!(users.admit(1000, 2).is_none(), "a third for the same user");
        let other = users
            .admit(1001, 2)
            .expect("another user has its own share");
        drop(first);
        assert_eq!(users.open(1000), 1);
        let again = users
            .admit(1000, 2)
            .expect("a place given back is free again");
        drop((second, again, other));
        assert_eq!((users.open(1000), users.open(1001)), (0, 0));
        assert!(
            users.0.borrow().is_empty(),
            "users with nothing open are forgotten"
        );
    }
}
