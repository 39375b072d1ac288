//! A scripted HTTP/1.1 "BMC" on loopback for the Redfish unit tests: each
//! request (method and path) is answered by a test-supplied function, and
//! every request line is recorded so tests can assert what was (not) sent.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted BMC sends back.
pub(crate) enum Answer {
    /// A complete response: status line, headers and body are built from it.
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// A 200 with a chunked body that never ends.
    Endless,
    /// A 200 that declares a huge `Content-Length` and sends a few bytes.
    Declared(u64),
    /// The answer, after a delay.
    Slow(std::time::Duration, Box<Answer>),
    /// No answer: the connection is closed once the request was read.
    Hangup,
}

impl Answer {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::Json {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }
}

/// One request the BMC received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    pub body: String,
    /// The `X-Auth-Token` header, when sent.
    pub token: Option<String>,
}

/// A running scripted BMC.
pub(crate) struct TestBmc {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    accept: tokio::task::JoinHandle<()>,
}

type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

impl TestBmc {
    /// Starts a BMC answering every request with `script`.
    pub async fn start(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&seen);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&script), Arc::clone(&log)));
            }
        });
        Self { port, seen, accept }
    }

    /// Closes the listening socket: new connections are refused (open
    /// ones are still served).
    pub async fn stop_listening(&self) {
        self.accept.abort();
        while !self.accept.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

async fn serve(stream: TcpStream, script: Arc<Script>, log: Arc<Mutex<Vec<Seen>>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut length = 0usize;
        let mut token = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if name.eq_ignore_ascii_case("x-auth-token") {
                    token = Some(value.trim().to_owned());
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let request = Seen {
            method,
            path,
            body: String::from_utf8_lossy(&body).into_owned(),
            token,
        };
        log.lock().expect("seen lock").push(request.clone());
        let stream = reader.get_mut();
        let mut answer = script(&request);
        while let Answer::Slow(delay, inner) = answer {
            tokio::time::sleep(delay).await;
            answer = *inner;
        }
        let written = match answer {
            Answer::Json {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                head.push_str(&body);
                stream.write_all(head.as_bytes()).await
            }
            Answer::Declared(length) => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n{{\"a\":");
                stream.write_all(head.as_bytes()).await
            }
            Answer::Endless => {
                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                return;
            }
            Answer::Hangup => return,
            Answer::Slow(..) => unreachable!("unwrapped above"),
        };
        if written.is_err() {
            return;
        }
    }
}
