//! Wall-clock time as an input. Every rule about expiry, refresh and session age asks a
//! `Clock` for "now", so tests can move time forward instead of sleeping through it.
//!
//! A manual clock also announces each change, so an actor waiting for a deadline wakes
//! when a test advances time, exactly as it would when the deadline really arrives.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

#[derive(Clone)]
pub struct Clock {
    /// `None`: the system clock.
    manual: Option<Arc<Manual>>,
}

struct Manual {
    now_ms: AtomicI64,
    changed: watch::Sender<()>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still at `start_ms` (epoch ms) until `advance` moves it.
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(Manual {
                now_ms: AtomicI64::new(start_ms),
                changed: watch::channel(()).0,
            })),
        }
    }

    /// Now, in epoch milliseconds (the unit of `expiry_time`).
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(m) => m.now_ms.load(Ordering::SeqCst),
            None => crate::model::now_ms(),
        }
    }

    /// Moves a manual clock forward and wakes whoever waits on `changes`. No effect on
    /// the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.manual {
            m.now_ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
            m.changed.send_replace(());
        }
    }

    /// Yields each time a manual clock is advanced; never yields for the system clock.
    pub fn changes(&self) -> BoxStream<'static, ()> {
        match &self.manual {
            Some(m) => {
                let rx = m.changed.subscribe();
                stream::unfold(rx, |mut rx| async move {
                    rx.changed().await.ok()?;
                    Some(((), rx))
                })
                .boxed()
            }
            None => stream::pending().boxed(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.manual {
            Some(_) => write!(f, "Clock::manual({})", self.now_ms()),
            None => write!(f, "Clock::system"),
        }
    }
}
