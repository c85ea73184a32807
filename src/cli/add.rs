//! `tokend token add`: exchange a Zoho grant code (`grant_type=authorization_code`) at
//! the accounts server and store the tokens through the daemon.
//!
//! The grant code is a secret for the minutes it lives, so it is read from standard
//! input or a prompt that does not echo, never from a flag: a flag would sit in the shell
//! history and in `ps` output. The client secret comes from `TOKEND_CLIENT_SECRET` (or a
//! flag, or the same kind of prompt). The daemon is asked first: a grant code is single
//! use, and exchanging it with no daemon to store the result would waste it.

use std::io::{BufRead, IsTerminal};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
use serde_json::json;
use tokend::client::Client;
use tokend::oauth::{CodeRequest, OAuthClient};
use tokend::Config;

use super::answer;
use super::output::{json, masked_token, printable, text, when};

#[derive(Args)]
pub struct AddArgs {
    /// The OAuth client's id (from Zoho's API console)
    #[arg(long, env = "TOKEND_CLIENT_ID", value_name = "ID")]
    client_id: String,
    /// The OAuth client's secret. Without it (or the environment variable, set from a file
    /// rather than typed), it is prompted for without echo: an argument shows in `ps` and
    /// the shell history
    #[arg(
        long,
        env = "TOKEND_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    client_secret: Option<String>,
    /// The user name the token is stored under (the SDK's `user_name`), by which
    /// applications find it
    #[arg(long, value_name = "NAME")]
    user_name: Option<String>,
    /// The API domain of the user's Zoho data centre; it picks the accounts server, and
    /// is stored when the accounts server does not name one
    #[arg(long, value_name = "URL", default_value = "https://www.zohoapis.com", value_parser = http_url)]
    api_domain: String,
    /// The accounts server to exchange the code at (base URL), instead of the one the
    /// API domain and the configuration pick
    #[arg(long, value_name = "URL", value_parser = http_url)]
    accounts_url: Option<String>,
    /// The redirect URI the code was issued for (Self Client codes need none)
    #[arg(long, value_name = "URL")]
    redirect_uri: Option<String>,
}

/// How many more times a save is tried (at once, then a second apart) when the daemon
/// cannot be reached after the code was exchanged: long enough for a restart.
const SAVE_RETRIES: usize = 10;

pub fn add(socket: &Path, config: &Config, args: AddArgs, as_json: bool) -> anyhow::Result<String> {
    let mut daemon = Client::connect(socket)?;
    answer(daemon.call("ping", json!({})))?;
    let client_secret = match args.client_secret.filter(|s| !s.is_empty()) {
        Some(s) => s,
        None if std::io::stdin().is_terminal() => prompt_hidden("Client secret")?,
        None => {
            anyhow::bail!("no client secret: set TOKEND_CLIENT_SECRET (or pass --client-secret)")
        }
    };
    let code = read_code()?;
    let oauth = client(config, &args.api_domain, args.accounts_url.as_deref())?;
    let request = CodeRequest {
        client_id: &args.client_id,
        client_secret: &client_secret,
        code: &code,
        redirect_uri: args.redirect_uri.as_deref(),
        api_domain: Some(&args.api_domain),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP client's runtime")?;
    let grant = runtime
        .block_on(oauth.exchange_code(&request))
        .context("the grant code was not exchanged (codes are single use and expire within minutes: generate a new one if this one was used or is old)")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let expiry = (now + grant.expires_in).as_millis().to_string();
    let mut warning = String::new();
    if grant.refresh_token.is_none() {
        warning = "warning: the accounts server sent no refresh token (generate the code with \
                   access_type=offline); the access token is stored but cannot be refreshed\n"
            .to_owned();
    }
    let token = json!({
        "user_name": args.user_name,
        "client_id": args.client_id,
        "client_secret": client_secret,
        "refresh_token": grant.refresh_token,
        "access_token": grant.access_token,
        "expiry_time": expiry,
        "redirect_url": args.redirect_uri,
        "api_domain": grant.api_domain.unwrap_or(args.api_domain),
    });
    // The code is spent: what it bought must not be lost to a daemon restarting
    // meanwhile. The save is repeatable when it names the user or the refresh token (it
    // then updates the token it stored, if the first try got through).
    let repeatable = args.user_name.is_some() || grant.refresh_token.is_some();
    let save = || json!({"token": token});
    let mut result = daemon.call("save_token", save());
    for retry in 0..SAVE_RETRIES {
        match &result {
            Err(e) if e.is_unreachable() && repeatable => {
                if retry > 0 {
                    std::thread::sleep(Duration::from_secs(1));
                }
                result = Client::connect(socket).and_then(|mut c| c.call("save_token", save()));
            }
            _ => break,
        }
    }
    let saved =
        answer(result).context("the code was exchanged but the daemon did not store the tokens")?;
    let stored = &saved["token"];
    eprint!("{warning}");
    Ok(if as_json {
        json(&masked_token(stored))
    } else {
        format!(
            "stored token {} for {}: the access token expires {}\n",
            text(&stored["id"]),
            stored["user_name"]
                .as_str()
                .map_or("(no user name)".into(), |u| printable(u, false)),
            when(&stored["expiry_time"]),
        )
    })
}

/// A URL flag's value, refused unless it is an http(s) URL with a host: checked before
/// the grant code is asked for, which a mistake here would waste (codes are single-use).
fn http_url(s: &str) -> Result<String, String> {
    match tokend::oauth::http_url(s) {
        Some(_) => Ok(s.to_owned()),
        None => Err("not an http:// or https:// URL with a host".to_owned()),
    }
}

/// The provider client: the configured accounts servers, with `--accounts-url` winning
/// for this API domain.
fn client(
    config: &Config,
    api_domain: &str,
    accounts_url: Option<&str>,
) -> anyhow::Result<OAuthClient> {
    let r = &config.refresh;
    let mut endpoints = r.endpoints.clone();
    if let Some(url) = accounts_url {
        (endpoints.per_domain).insert(api_domain.to_owned(), url.to_owned());
    }
    OAuthClient::new(endpoints, r.connect_timeout, r.timeout)
        .context("cannot set up the accounts server client")
}

/// The grant code: a no-echo prompt on a terminal, else the first line of stdin.
fn read_code() -> anyhow::Result<String> {
    let code = if std::io::stdin().is_terminal() {
        prompt_hidden("Grant code")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the grant code from standard input")?;
        line.trim().to_owned()
    };
    if code.is_empty() {
        anyhow::bail!("no grant code: pipe it on standard input, e.g. `tokend token add ... < code.txt`, or run on a terminal to be prompted");
    }
    Ok(code)
}

/// Reads one line from the terminal with echo off, prompting on stderr.
fn prompt_hidden(label: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    eprint!("{label} (not shown): ");
    let saved = tcgetattr(stdin.as_fd()).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet).context("cannot turn off echo")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &saved);
    eprintln!();
    read.context("cannot read from the terminal")?;
    Ok(line.trim().to_owned())
}
