//! A refresh racing a client's save or delete: the client's newer write wins, a save
//! that keeps the credentials does not undo the refresh's result, and no caller is
//! served a stale token as fresh.

use serde_json::{json, Value};

use crate::fake_zoho::{grant, FakeZoho};
use crate::helpers::{id_of, Client};
use crate::inproc::{eventually, InProcess, HOUR, MINUTE, T0};
use crate::refresh::{meta, refreshable};

/// A daemon whose scheduled refresh of the expired token "u" is under way, its request
/// held at the provider until `zoho.release`: the provider, the daemon, a client and the
/// token's id.
fn scheduled_refresh_held() -> (FakeZoho, InProcess, Client, String) {
    let zoho = FakeZoho::granting();
    zoho.close_gate();
    let d = InProcess::start(&zoho.url, |_| {});
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    zoho.wait_for_count(1);
    (zoho, d, c, id)
}

#[test]
fn a_refresh_racing_a_delete_does_not_bring_the_token_back() {
    let (zoho, _daemon, mut c, id) = scheduled_refresh_held();
    assert!(c.delete(&id));
    zoho.release(1);
    eventually("the answer to be handled", || {
        c.ok(json!({"op": "status"}))["in_flight"] == 0
    });
    assert_eq!(c.find_by_id(&id), Value::Null);
    assert_eq!(c.count(), 0);
}

#[test]
fn a_refresh_racing_a_client_save_does_not_overwrite_it() {
    let (zoho, _daemon, mut c, id) = scheduled_refresh_held();
    c.save(json!({"user_name": "u", "access_token": "SECRET-client", "expiry_time": (T0 + HOUR).to_string()}));
    zoho.release(1);
    eventually("the answer to be handled", || {
        c.ok(json!({"op": "status"}))["in_flight"] == 0
    });
    assert_eq!(c.find_by_id(&id)["access_token"], "SECRET-client");
}

#[test]
fn a_save_with_new_credentials_during_a_refresh_leaves_no_stale_token_served_as_fresh() {
    for forced in [false, true] {
        let zoho = FakeZoho::granting();
        zoho.close_gate();
        let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
        let mut c = d.client();
        let id = id_of(&c.save(refreshable("u", T0 - 1)));
        // The attempt under way is the caller's own, or a forced one it joins: the
        // schedule's and `refresh`'s attempts are forced.
        let forcing = forced.then(|| {
            let (socket, id) = (d.socket(), id.clone());
            std::thread::spawn(move || {
                Client::connect(&socket).request(json!({"op": "refresh", "token_id": id}))
            })
        });
        if forced {
            zoho.wait_for_count(1);
        }
        let socket = d.socket();
        let asking = std::thread::spawn(move || {
            Client::connect(&socket).request(json!({"op": "access_token", "user_name": "u"}))
        });
        let callers = 1 + usize::from(forced);
        eventually("the callers to wait on the one refresh", || {
            c.ok(json!({"op": "status"}))["waiting"] == callers
        });
        zoho.wait_for_count(1);
        // The user authorised again, but no fresh access token came with it: the
        // refresh's result is dropped, and what is stored is still expired.
        c.save(json!({"user_name": "u", "refresh_token": "SECRET-rt-u-2"}));
        zoho.release(1);
        let reply = asking.join().unwrap();
        assert_eq!(
            reply["ok"], false,
            "forced {forced}: a stale token served as fresh: {reply}"
        );
        assert_eq!(reply["error"]["code"], "refresh_failed", "{reply}");
        if let Some(forcing) = forcing {
            let forced_reply = forcing.join().unwrap();
            assert_eq!(forced_reply["ok"], false, "{forced_reply}");
        }
        // Asked again, it refreshes the token as now stored.
        zoho.open_gate();
        let served = c.ok(json!({"op": "access_token", "token_id": id}));
        assert_eq!(served["access_token"], "SECRET-new-2");
    }
}

#[test]
fn a_save_that_keeps_the_credentials_does_not_undo_a_refresh() {
    // The schedule's refresh of the expired token is under way; a caller joins it.
    let (zoho, d, mut c, id) = scheduled_refresh_held();
    let socket = d.socket();
    let asking = std::thread::spawn(move || {
        Client::connect(&socket).request(json!({"op": "access_token", "user_name": "u"}))
    });
    eventually("the caller to join the scheduled refresh", || {
        c.ok(json!({"op": "status"}))["waiting"] == 1
    });
    // The SDK saving what it read, with a new redirect URL: the same credentials.
    c.save(json!({"user_name": "u", "redirect_url": "https://example.com/moved"}));
    zoho.release(1);
    let reply = asking.join().unwrap();
    assert_eq!(reply["result"]["access_token"], "SECRET-new-1", "{reply}");
    let stored = c.find_by_id(&id);
    assert_eq!(stored["access_token"], "SECRET-new-1");
    assert_eq!(stored["redirect_url"], "https://example.com/moved");
    assert_eq!(zoho.count(), 1);
}

#[test]
fn a_throttle_answered_during_a_save_that_keeps_the_credentials_is_recorded() {
    let zoho = FakeZoho::throttling();
    zoho.close_gate();
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    let (socket, id2) = (d.socket(), id.clone());
    let forcing = std::thread::spawn(move || {
        Client::connect(&socket).request(json!({"op": "refresh", "token_id": id2}))
    });
    zoho.wait_for_count(1);
    c.save(json!({"user_name": "u", "redirect_url": "https://example.com/moved"}));
    zoho.release(1);
    let forced = forcing.join().unwrap();
    assert_eq!(forced["error"]["code"], "throttled", "{forced}");
    assert_eq!(meta(&mut c, &id)["next_refresh_at"], T0 + 15 * MINUTE);
    // Zoho said "Access Denied" a moment ago: nobody may ask it again for throttle_wait.
    zoho.open_gate();
    let asked = c.request(json!({"op": "access_token", "token_id": id}));
    assert_eq!(asked["error"]["code"], "throttled", "{asked}");
    assert_eq!(zoho.count(), 1, "asked Zoho again during its block");
}

#[test]
fn new_credentials_saved_while_the_provider_refuses_the_old_ones_are_not_called_dead() {
    // The user authorised again while Zoho was answering invalid_code for the old
    // refresh token: the waiting caller must not be told to send the user round again.
    let zoho = FakeZoho::start(|_, _, n| match n {
        1 => (400, json!({"error": "invalid_code"}).to_string()),
        _ => grant(&format!("SECRET-new-{n}"), None),
    });
    zoho.close_gate();
    let d = InProcess::start(&zoho.url, |c| c.refresh.enabled = false);
    let mut c = d.client();
    let id = id_of(&c.save(refreshable("u", T0 - 1)));
    let socket = d.socket();
    let asking = std::thread::spawn(move || {
        Client::connect(&socket).request(json!({"op": "access_token", "user_name": "u"}))
    });
    zoho.wait_for_count(1);
    c.save(json!({"user_name": "u", "refresh_token": "SECRET-rt-u-2"}));
    zoho.release(1);
    let reply = asking.join().unwrap();
    assert_eq!(reply["error"]["code"], "refresh_failed", "{reply}");
    assert_eq!(meta(&mut c, &id)["state"], "active");
    zoho.open_gate();
    let served = c.ok(json!({"op": "access_token", "token_id": id}));
    assert_eq!(served["access_token"], "SECRET-new-2");
}
