//! A loopback imitation of Zoho's accounts server (`POST /oauth/v2/token` and
//! `/oauth/v2/token/revoke`), on plain threads so tests stay synchronous.
//!
//! Every request is recorded with its form. A test decides each answer with a closure,
//! and can close a gate so requests wait until released: that is how a test holds a
//! refresh "in the air" to race it against a delete, or counts how many run at once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use serde_json::json;

use crate::inproc::eventually;

pub type Form = HashMap<String, String>;
type Responder = Box<dyn FnMut(&str, &Form, usize) -> (u16, String) + Send>;

pub struct FakeZoho {
    pub url: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    respond: Mutex<Responder>,
    /// (path, form) of every request, in arrival order.
    requests: Mutex<Vec<(String, Form)>>,
    /// `Some(permits)` while the gate is closed.
    gate: Mutex<Option<usize>>,
    opened: Condvar,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    completed: AtomicUsize,
    stop: AtomicBool,
}

/// A successful refresh answer, as Zoho sends it (no refresh token unless `rotated`).
pub fn grant(access: &str, rotated: Option<&str>) -> (u16, String) {
    let mut body = json!({"access_token": access, "api_domain": "http://127.0.0.1:1", "token_type": "Bearer", "expires_in": 3600});
    if let Some(r) = rotated {
        body["refresh_token"] = json!(r);
    }
    (200, body.to_string())
}

/// Zoho's answer to a refresh token past its limit.
pub fn throttled() -> (u16, String) {
    let body = json!({"error": "Access Denied", "error_description": "You have made too many requests continuously. Please try again after some time.", "status": "failure"});
    (400, body.to_string())
}

impl FakeZoho {
    /// Answers every refresh with a new access token `SECRET-new-<n>` (n from 1).
    pub fn granting() -> FakeZoho {
        FakeZoho::start(|_, _, n| grant(&format!("SECRET-new-{n}"), None))
    }

    /// Answers every request with Zoho's throttle.
    pub fn throttling() -> FakeZoho {
        FakeZoho::start(|_, _, _| throttled())
    }

    /// `respond(path, form, n)` answers the n-th request (from 1) with (status, body).
    pub fn start(
        respond: impl FnMut(&str, &Form, usize) -> (u16, String) + Send + 'static,
    ) -> FakeZoho {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            respond: Mutex::new(Box::new(respond)),
            requests: Mutex::default(),
            gate: Mutex::new(None),
            opened: Condvar::new(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let s = s.clone();
                if let Ok(stream) = stream {
                    std::thread::spawn(move || serve(stream, &s));
                }
            }
        });
        FakeZoho {
            url,
            shared,
            accept: Some(accept),
        }
    }

    /// From now on, requests wait at the gate until `release`d.
    pub fn close_gate(&self) {
        *self.shared.gate.lock().unwrap() = Some(0);
    }

    /// Lets `n` waiting (or future) requests through.
    pub fn release(&self, n: usize) {
        if let Some(permits) = self.shared.gate.lock().unwrap().as_mut() {
            *permits += n;
        }
        self.shared.opened.notify_all();
    }

    pub fn open_gate(&self) {
        *self.shared.gate.lock().unwrap() = None;
        self.shared.opened.notify_all();
    }

    /// Requests received so far (answered or not).
    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<(String, Form)> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn wait_for_count(&self, n: usize) {
        eventually(&format!("{n} requests at the accounts server"), || {
            self.count() >= n
        });
    }
}

impl Drop for FakeZoho {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.open_gate();
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, s: &Shared) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let form = parse_form(&String::from_utf8_lossy(&body));
    let n = {
        let mut requests = s.requests.lock().unwrap();
        requests.push((path.clone(), form.clone()));
        requests.len()
    };
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    {
        let mut gate = s.gate.lock().unwrap();
        while let Some(permits) = *gate {
            if permits > 0 {
                *gate = Some(permits - 1);
                break;
            }
            gate = s.opened.wait(gate).unwrap();
        }
    }
    let (status, body) = (s.respond.lock().unwrap())(&path, &form, n);
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    s.completed.fetch_add(1, Ordering::SeqCst);
}

fn parse_form(body: &str) -> Form {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
