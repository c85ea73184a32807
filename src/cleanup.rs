//! CleanupActor: ends sessions by policy (`policy.rs`) on a cron schedule, or when a
//! client asks (`cleanup` operation), with a dry run and an audit line per session.
//!
//! The cron job only sends this actor a `RunCleanup`; passes run one at a time. The store
//! judges the sessions while it scans, a page at a time (with the uses it has not
//! flushed yet), and deletes each one only if it was not changed or used since: a
//! session that came back to life during the pass is kept. Each deletion reaches the
//! refresher through the store's change feed, which cancels the token's deadline.

use actix::prelude::*;
use serde::Serialize;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::config::{CleanupAction, CleanupConfig};
use crate::db::Ended;
use crate::error::StoreError;
use crate::model::StoredToken;
use crate::oauth::OAuthClient;
use crate::policy::Policy;
use crate::store::{self, StoreActor};

/// Run one pass now. `dry_run`: report, remove nothing; `None`: as `cleanup.dry_run`
/// says now (resolved here, so a reload of that setting takes effect). The reply says
/// which it was, and what was (or would be) removed.
#[derive(Message)]
#[rtype(result = "Result<(bool, Vec<Removal>), StoreError>")]
pub struct RunCleanup {
    pub dry_run: Option<bool>,
}

/// Apply a new configuration (a reload): policies, action, schedule, and the provider
/// client when its endpoints changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub cfg: CleanupConfig,
    pub oauth: Option<OAuthClient>,
}

/// Stop the schedule; a pass under way finishes first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A removed (or, in a dry run, removable) session, as the `cleanup` operation reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    pub token_id: String,
    pub user_name: Option<String>,
    pub policy: Policy,
}

pub struct CleanupActor {
    cfg: CleanupConfig,
    store: Addr<StoreActor>,
    oauth: OAuthClient,
    /// The running cron scheduler, kept to shut it down on reload and at exit.
    scheduler: Option<JobScheduler>,
    /// Fired when the daemon starts to stop. A pass runs as one unit (the actor takes no
    /// other message meanwhile) and may spend the provider's timeout on each revoke, so
    /// it watches this to end early instead of outliving systemd's stop timeout.
    stopping: CancellationToken,
}

impl CleanupActor {
    pub fn new(
        cfg: CleanupConfig,
        store: Addr<StoreActor>,
        oauth: OAuthClient,
        stopping: CancellationToken,
    ) -> CleanupActor {
        CleanupActor {
            cfg,
            store,
            oauth,
            scheduler: None,
            stopping,
        }
    }

    /// (Re)starts the cron schedule from the current configuration.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let old = self.scheduler.take();
        let (me, expr, enabled) = (ctx.address(), self.cfg.schedule.clone(), self.cfg.enabled);
        let start = async move {
            if let Some(mut old) = old {
                let _ = old.shutdown().await;
            }
            if !enabled {
                return Ok(None);
            }
            let scheduler = JobScheduler::new().await?;
            let job = Job::new_async(expr.as_str(), move |_, _| {
                let me = me.clone();
                // `None`: the pass takes `dry_run` from the configuration in force when it
                // runs, not when it was scheduled, so a reload to a trial is obeyed at once.
                Box::pin(async move { me.do_send(RunCleanup { dry_run: None }) })
            })?;
            scheduler.add(job).await?;
            scheduler.start().await?;
            Ok::<_, tokio_cron_scheduler::JobSchedulerError>(Some(scheduler))
        };
        ctx.wait(start.into_actor(self).map(|started, act, _| match started {
            Ok(s) => act.scheduler = s,
            Err(e) => tracing::error!(error = %e, "cannot start the cleanup schedule; cleanup runs only on request"),
        }));
    }
}

impl Actor for CleanupActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule(ctx);
    }
}

impl Handler<RunCleanup> for CleanupActor {
    // Atomic: one pass at a time, so a slow revoke cannot make two passes judge the
    // same sessions.
    type Result = AtomicResponse<Self, Result<(bool, Vec<Removal>), StoreError>>;

    fn handle(&mut self, msg: RunCleanup, _: &mut Self::Context) -> Self::Result {
        let dry_run = msg.dry_run.unwrap_or(self.cfg.dry_run);
        let pass = run_pass(
            self.store.clone(),
            self.oauth.clone(),
            self.cfg.clone(),
            dry_run,
            self.stopping.clone(),
        );
        let pass = async move { pass.await.map(|removed| (dry_run, removed)) };
        AtomicResponse::new(Box::pin(pass.into_actor(self)))
    }
}

impl Handler<Reconfigure> for CleanupActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Self::Context) {
        let reschedule =
            (msg.cfg.enabled, &msg.cfg.schedule) != (self.cfg.enabled, &self.cfg.schedule);
        self.cfg = msg.cfg;
        if let Some(oauth) = msg.oauth {
            self.oauth = oauth;
        }
        if reschedule {
            self.schedule(ctx);
        }
    }
}

impl Handler<Shutdown> for CleanupActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let scheduler = self.scheduler.take();
        Box::pin(async move {
            if let Some(mut s) = scheduler {
                let _ = s.shutdown().await;
            }
        })
    }
}

/// Tokens judged per message to the store. The store shares its thread with every
/// connection, so one message for a whole pass held every client up for as long as the
/// scan took (0.7 s at 1M tokens); a page of 2,000 takes 2–8 ms.
const SCAN_PAGE: u32 = 2_000;

async fn run_pass(
    store: Addr<StoreActor>,
    oauth: OAuthClient,
    cfg: CleanupConfig,
    dry_run: bool,
    stopping: CancellationToken,
) -> Result<Vec<Removal>, StoreError> {
    let mut removed = Vec::new();
    let mut after = None;
    loop {
        let (ended, next) = ask(store.send(store::EndedSessions {
            policies: cfg.policies.clone(),
            after,
            limit: SCAN_PAGE,
        }))
        .await?;
        for session in ended {
            if stopping.is_cancelled() {
                tracing::info!(
                    sessions = removed.len(),
                    "cleanup pass cut short: tokend is stopping"
                );
                return Ok(removed);
            }
            if dry_run {
                audit(&session, true);
            } else if !end(&store, &oauth, cfg.action, &session, &stopping).await? {
                continue;
            }
            removed.push(Removal {
                token_id: session.id,
                user_name: session.user_name,
                policy: session.policy,
            });
        }
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
        store::let_clients_in().await;
    }
    if !removed.is_empty() || dry_run {
        tracing::info!(sessions = removed.len(), dry_run, "cleanup pass done");
    }
    Ok(removed)
}

/// Ends one session; `false` when it is kept (revoke failed, or it changed meanwhile).
async fn end(
    store: &Addr<StoreActor>,
    oauth: &OAuthClient,
    action: CleanupAction,
    s: &Ended,
    stopping: &CancellationToken,
) -> Result<bool, StoreError> {
    // Only idle sessions are saved by a use; the other policies end a session whatever
    // its use.
    let used_before = match s.policy {
        Policy::IdleTimeout => s.last_used_at,
        _ => i64::MAX,
    };
    let mut expire = store::Expire {
        id: s.id.clone(),
        version: s.version,
        used_before,
    };
    if action == CleanupAction::RevokeAndDelete {
        let Some(judged) = ask(store.send(store::StillEnded(expire.clone()))).await? else {
            tracing::debug!(token_id = %s.id.escape_debug(), "session changed or was used since judged; kept");
            return Ok(false);
        };
        // With no refresh token there is nothing to revoke: the delete keeps the checks
        // the session was judged under.
        if let Some(refresh_token) = judged.token.refresh_token {
            let revoke = oauth.revoke(&refresh_token, judged.token.api_domain.as_deref());
            let answer = tokio::select! {
                answer = revoke => answer,
                // Whether the provider got it or not, the token stays for the next run.
                () = stopping.cancelled() => return Ok(false),
            };
            if let Err(e) = answer {
                tracing::warn!(token_id = %s.id.escape_debug(), policy = s.policy.as_str(), error = %e,
                    "revoke failed; keeping the token for the next cleanup run");
                return Ok(false);
            }
            // The revoke can take seconds. Whatever else changed meanwhile (a refresh, a
            // use), the revoked credentials are dead and go; but if a save brought new
            // ones (the user signed in again), the token is someone's live session.
            let Some(now) = find(store, &s.id).await? else {
                return Ok(false);
            };
            if now.token.refresh_token.as_deref() != Some(refresh_token.as_str()) {
                tracing::info!(token_id = %s.id.escape_debug(), "new credentials saved during the revoke; kept");
                return Ok(false);
            }
            expire.version = now.meta.version;
            expire.used_before = i64::MAX;
        }
    }
    if !ask(store.send(expire)).await? {
        tracing::debug!(token_id = %s.id.escape_debug(), "session changed or was used during cleanup; kept");
        return Ok(false);
    }
    audit(s, false);
    Ok(true)
}

async fn find(store: &Addr<StoreActor>, id: &str) -> Result<Option<StoredToken>, StoreError> {
    ask(store.send(store::FindById {
        id: id.to_owned(),
        touch: false,
    }))
    .await
}

/// The audit trail: one line per session ended (or that would be), never a secret.
/// Values a client chose are escaped (`escape_debug`), as in every log line: a newline
/// in a user name must not forge a second audit line.
fn audit(s: &Ended, dry_run: bool) {
    tracing::info!(
        target: "tokend::audit",
        // Text logs show no targets: this marks the line for grep and journalctl.
        audit = true,
        token_id = %s.id.escape_debug(),
        user_name = %s.user_name.as_deref().unwrap_or("").escape_debug(),
        client_id = %s.client_id.as_deref().unwrap_or("").escape_debug(),
        policy = s.policy.as_str(),
        age_secs = s.age.as_secs(),
        dry_run,
        "{}", if dry_run { "session would be ended" } else { "session ended" }
    );
}

async fn ask<T>(
    sent: impl std::future::Future<Output = Result<Result<T, StoreError>, MailboxError>>,
) -> Result<T, StoreError> {
    sent.await.map_err(|_| StoreError::Unavailable)?
}
