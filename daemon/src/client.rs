//! A small HTTP/1.1 client for the API over its Unix socket, used by the
//! `baton` CLI, the tests and the benchmarks. Errors say whether the daemon
//! could not be reached (missing socket, permission denied, nothing
//! listening) or answered with an error envelope.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::api::middleware::REQUEST_ID_HEADER;
use crate::api::types::ErrorEnvelope;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach batond: socket {path} does not exist; is batond running? (set --socket or BATON_SOCKET)")]
    SocketMissing { path: PathBuf },
    #[error("cannot reach batond: permission denied on {path}; run as a member of the socket's group or as root")]
    PermissionDenied { path: PathBuf },
    #[error("cannot reach batond: nothing is listening on {path} (a stale socket?); is batond running? (set --socket or BATON_SOCKET)")]
    NotListening { path: PathBuf },
    #[error("cannot reach batond: {path} is {what}, not a socket; set --socket or BATON_SOCKET to batond's socket (api.socket in its config)")]
    NotASocket { path: PathBuf, what: &'static str },
    #[error("cannot reach batond on {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to batond failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("could not build the request: {0}")]
    Request(#[from] http::Error),
    #[error("{message} (HTTP {status}, {code}, request {request_id})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("unexpected answer from batond (HTTP {status}): {detail}")]
    Decode { status: StatusCode, detail: String },
}

impl ClientError {
    /// True when the daemon was never reached.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::SocketMissing { .. }
                | ClientError::PermissionDenied { .. }
                | ClientError::NotListening { .. }
                | ClientError::NotASocket { .. }
                | ClientError::Connect { .. }
        )
    }

    /// Says why connecting to `path` failed in terms a person can act on:
    /// the kernel answers "connection refused" both for a socket nobody
    /// listens on and for a path that is no socket at all.
    fn from_connect(path: &Path, source: std::io::Error) -> Self {
        let path = path.to_owned();
        match source.kind() {
            ErrorKind::NotFound => return ClientError::SocketMissing { path },
            ErrorKind::PermissionDenied => return ClientError::PermissionDenied { path },
            _ => {}
        }
        match std::fs::metadata(&path).map(|m| m.file_type()) {
            Ok(t) if t.is_socket() => {
                if source.kind() == ErrorKind::ConnectionRefused {
                    ClientError::NotListening { path }
                } else {
                    ClientError::Connect { path, source }
                }
            }
            Ok(t) => ClientError::NotASocket {
                path,
                what: describe_file_type(t),
            },
            Err(_) => ClientError::Connect { path, source },
        }
    }
}

fn describe_file_type(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "an unusual file"
    }
}

/// A raw answer: status, request id and body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: StatusCode,
    pub request_id: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    /// The body as `T` on success; the error envelope as [`ClientError::Api`]
    /// otherwise.
    pub fn into_json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        if !self.status.is_success() {
            return Err(self.into_api_error());
        }
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode {
            status: self.status,
            detail: e.to_string(),
        })
    }

    fn into_api_error(self) -> ClientError {
        match serde_json::from_slice::<ErrorEnvelope>(&self.body) {
            Ok(envelope) => ClientError::Api {
                status: self.status,
                code: envelope.error.code,
                message: envelope.error.message,
                request_id: envelope.error.request_id,
            },
            Err(_) => ClientError::Decode {
                status: self.status,
                detail: String::from_utf8_lossy(&self.body).into_owned(),
            },
        }
    }

    /// Success without a body to decode (e.g. 204).
    pub fn into_empty(self) -> Result<(), ClientError> {
        if self.status.is_success() {
            Ok(())
        } else {
            Err(self.into_api_error())
        }
    }
}

/// Talks to one batond socket. Each request uses its own connection, which
/// is plenty for a CLI; long-lived callers keep a [`Connection`].
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Opens a keep-alive connection for many requests.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::from_connect(&self.socket, source))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, driver })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<RawResponse, ClientError> {
        self.connect().await?.request(method, path, body).await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None).await?.into_json()
    }

    pub async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            status: StatusCode::OK,
            detail: format!("cannot encode the request: {e}"),
        })?;
        self.request(method, path, Some(bytes.into()))
            .await?
            .into_json()
    }
}

/// One HTTP/1.1 keep-alive connection to batond.
#[derive(Debug)]
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<RawResponse, ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "batond");
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(RawResponse {
            status,
            request_id,
            headers,
            body,
        })
    }
}
