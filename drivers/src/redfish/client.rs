//! The HTTP side of one Redfish BMC: authentication and request/response
//! plumbing.
//!
//! Login, per the Redfish spec (DSP0266 §13.3):
//! 1. `GET /redfish/v1/` without credentials (the service root is public) and
//!    read `Links.Sessions`.
//! 2. `POST` `{"UserName", "Password"}` to that collection; the answer's
//!    `X-Auth-Token` header authenticates every later request and its
//!    `Location` is the session, deleted at [`RedfishClient::logout`].
//! 3. When the service has no session collection (or refuses to create one
//!    with 404/405/501), fall back to HTTP basic auth on every request.
//! 4. A 401 on a session-authenticated request means the session expired:
//!    log in once more and repeat the request; a second 401 is an auth error.
//!
//! One session per BMC, shared by every call of its driver. A login runs on a
//! task of its own that holds the session lock, bounded by the call deadline:
//! a caller whose deadline passes mid-login drops only its wait, the login
//! finishes and its session serves the next call instead of being left open
//! on the BMC (BMCs allow only a handful of sessions).
//!
//! Everything the BMC sends is bounded and checked before use: bodies larger
//! than [`MAX_BODY`] are refused, `Retry-After` is capped at
//! [`MAX_RETRY_AFTER`], and links the BMC hands out (`Location`, `@odata.id`,
//! action targets) are followed only when they stay on this BMC — credentials
//! are never sent to another host. The body of a refused login is left out of
//! the error entirely: some BMCs echo the request, and a masked copy of the
//! password can still leak (JSON-escaped, or cut in half).
//!
//! A command that changes the server ([`RedfishClient::command`]) fails with
//! [`DriverError::OutcomeUnknown`] once its request may have reached the BMC
//! (the connection broke or the answer could not be read after sending):
//! retrying it could run it twice. A connection that never opened is still
//! `Unreachable`, a transient error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONNECTION, ETAG, IF_MATCH, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::model;

use crate::{DriverError, Secret};

const X_AUTH_TOKEN: &str = "x-auth-token";
/// The largest response body read from a BMC; Redfish resources are a few KiB.
pub(crate) const MAX_BODY: usize = 1 << 20;
/// The longest `Retry-After` honoured; longer asks are read as this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How the client authenticates.
#[derive(Debug, Clone)]
enum Auth {
    /// Not logged in yet.
    None,
    /// A Redfish session.
    Session {
        token: Secret,
        location: Option<String>,
    },
    /// HTTP basic auth on every request.
    Basic,
}

/// An HTTP answer with the parts the driver reads.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub retry_after: Option<Duration>,
    pub etag: Option<String>,
    /// The `X-Auth-Token` header of a login answer.
    pub auth_token: Option<Secret>,
    pub body: Value,
}

impl Reply {
    /// The reply itself when its status is 2xx, the matching error otherwise.
    pub fn check(self) -> Result<Self, DriverError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    /// The typed error for a non-2xx reply.
    pub fn error(&self) -> DriverError {
        let code = self.status.as_u16();
        let message = model::error_message(&self.body, self.status);
        match self.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DriverError::Auth(message),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => DriverError::Busy {
                message: format!("HTTP {code}: {message}"),
                retry_after: self.retry_after,
            },
            StatusCode::NOT_IMPLEMENTED => DriverError::Unsupported(message),
            s => DriverError::Bmc {
                code,
                message,
                transient: s.is_server_error(),
            },
        }
    }
}

/// What a request says beyond its method, path and body.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra<'a> {
    /// `If-Match`: the ETag a change is conditional on.
    pub if_match: Option<&'a str>,
    /// `Connection: close`: nothing more is asked of this BMC soon (a
    /// periodic sweep's read), so the connection is not kept open for it —
    /// 10 000 BMCs read in one sweep would otherwise hold 10 000 TLS
    /// connections (and their buffers) for the keep-alive time.
    pub last: bool,
}

/// Wait before the one retry of a read whose connection failed.
const READ_RETRY: Duration = Duration::from_millis(500);

/// The HTTP client of one Redfish BMC. Clones share the session.
#[derive(Debug, Clone)]
pub(crate) struct RedfishClient {
    http: reqwest::Client,
    /// `https://host:port`, no trailing slash.
    base: String,
    username: String,
    password: Secret,
    connect_timeout: Duration,
    /// Bound of one login (the driver's call deadline).
    login_timeout: Duration,
    auth: Arc<Mutex<Auth>>,
    /// The service root the first login read, until the driver's first
    /// look at it: the root is public, so that need not be a second GET.
    login_root: Arc<std::sync::Mutex<Option<Value>>>,
    /// Whether the driver looked at the root already: later logins (after
    /// a session expired) keep no copy nobody would take.
    root_asked: Arc<AtomicBool>,
}

impl RedfishClient {
    pub fn new(
        http: reqwest::Client,
        base: String,
        username: String,
        password: Secret,
        connect_timeout: Duration,
        login_timeout: Duration,
    ) -> Self {
        Self {
            http,
            base,
            username,
            password,
            connect_timeout,
            login_timeout,
            auth: Arc::new(Mutex::new(Auth::None)),
            login_root: Arc::default(),
            root_asked: Arc::default(),
        }
    }

    /// `host:port` for error messages.
    pub fn address(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, rest)| rest)
    }

    /// GET `path` and check the status. A read whose connection failed is
    /// sent once more after [`READ_RETRY`]: reading is safe to repeat, and
    /// BMCs drop connections for a moment as a matter of course (a NIC
    /// shared with the host resets while the host boots; a kept-alive
    /// connection is closed as the next request goes out).
    pub async fn get(&self, path: &str) -> Result<Reply, DriverError> {
        self.get_with(path, Extra::default()).await
    }

    /// [`RedfishClient::get`] with `extra` (no `If-Match`: a read).
    pub async fn get_with(&self, path: &str, extra: Extra<'_>) -> Result<Reply, DriverError> {
        let reply = match self.request(Method::GET, path, None, extra).await {
            Err(DriverError::Unreachable { reason, .. }) => {
                tracing::debug!(bmc = self.address(), %reason, "Redfish read failed, trying once more");
                tokio::time::sleep(READ_RETRY).await;
                self.request(Method::GET, path, None, extra).await
            }
            other => other,
        };
        reply?.check()
    }

    /// The service root, logged in: the copy the login read when it has
    /// just run, else a fresh GET.
    pub async fn service_root(&self) -> Result<Value, DriverError> {
        self.current_auth().await?;
        self.root_asked.store(true, Ordering::SeqCst);
        let fresh = self
            .login_root
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match fresh {
            Some(root) => Ok(root),
            None => Ok(self.get(model::SERVICE_ROOT).await?.body),
        }
    }

    /// Sends an authenticated request, logging in first when needed and once
    /// more when the session expired.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: Extra<'_>,
    ) -> Result<Reply, DriverError> {
        Ok(self.exchange(method, path, body, extra).await?)
    }

    /// POSTs a command that changes the server (a reset, an NMI). A failure
    /// after the request may have reached the BMC is
    /// [`DriverError::OutcomeUnknown`] for `operation`, never a transient
    /// error, since a retry could run the command twice.
    pub async fn command(
        &self,
        operation: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<Reply, DriverError> {
        match self
            .exchange(Method::POST, path, Some(body), Extra::default())
            .await
        {
            Ok(reply) => Ok(reply),
            Err(Failed {
                error,
                maybe_sent: true,
            }) => Err(DriverError::OutcomeUnknown {
                operation,
                reason: format!("the request was sent but no answer was read ({error})"),
            }),
            Err(failed) => Err(failed.error),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: Extra<'_>,
    ) -> Result<Reply, Failed> {
        let auth = self.current_auth().await.map_err(Failed::unsent)?;
        let reply = self.send(method.clone(), path, body, extra, &auth).await?;
        if reply.status != StatusCode::UNAUTHORIZED || !matches!(auth, Auth::Session { .. }) {
            return Ok(reply);
        }
        tracing::debug!(
            bmc = self.address(),
            "Redfish session expired, logging in again"
        );
        let auth = self.relogin(&auth).await.map_err(Failed::unsent)?;
        self.send(method, path, body, extra, &auth).await
    }

    /// Deletes the session, if there is one. Errors are logged, not returned:
    /// the BMC expires the session anyway.
    pub async fn logout(&self) {
        let old = std::mem::replace(&mut *self.auth.lock().await, Auth::None);
        let Auth::Session {
            location: Some(location),
            ..
        } = &old
        else {
            return;
        };
        match self
            .send(Method::DELETE, location, None, Extra::default(), &old)
            .await
        {
            Ok(reply) if reply.status.is_success() => {
                tracing::debug!(bmc = self.address(), "Redfish session deleted");
            }
            Ok(reply) => tracing::debug!(
                bmc = self.address(),
                status = reply.status.as_u16(),
                "Redfish session delete refused"
            ),
            Err(Failed { error, .. }) => {
                tracing::debug!(bmc = self.address(), %error, "Redfish session delete failed");
            }
        }
    }

    async fn current_auth(&self) -> Result<Auth, DriverError> {
        let auth = Arc::clone(&self.auth).lock_owned().await;
        if matches!(*auth, Auth::None) {
            return self.login_detached(auth).await;
        }
        Ok(auth.clone())
    }

    /// Logs in again unless another call already replaced `stale` (a
    /// concurrent logout leaves no session: log in then too).
    async fn relogin(&self, stale: &Auth) -> Result<Auth, DriverError> {
        let auth = Arc::clone(&self.auth).lock_owned().await;
        let replaced = match (&*auth, stale) {
            (Auth::Session { token: a, .. }, Auth::Session { token: b, .. }) => a != b,
            (Auth::None, _) => false,
            _ => true,
        };
        if !replaced {
            return self.login_detached(auth).await;
        }
        Ok(auth.clone())
    }

    /// Logs in on a task that owns the session lock and stores the session
    /// itself (see the module doc), within `login_timeout`.
    async fn login_detached(&self, mut slot: OwnedMutexGuard<Auth>) -> Result<Auth, DriverError> {
        let client = self.clone();
        let task = tokio::spawn(async move {
            let result = crate::with_deadline("login", client.login_timeout, client.login()).await;
            if let Ok(auth) = &result {
                *slot = auth.clone();
            }
            result
        });
        task.await
            .map_err(|e| DriverError::SessionFailed(format!("Redfish login task ended: {e}")))?
    }

    /// Steps 1–3 of the login described in the module doc.
    async fn login(&self) -> Result<Auth, DriverError> {
        let root = self
            .send(
                Method::GET,
                model::SERVICE_ROOT,
                None,
                Extra::default(),
                &Auth::None,
            )
            .await?
            .check()?;
        let sessions = model::sessions_path(&root.body);
        if !self.root_asked.load(Ordering::SeqCst) {
            *self
                .login_root
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(root.body);
        }
        let Some(sessions) = sessions else {
            tracing::debug!(bmc = self.address(), "no SessionService, using basic auth");
            return Ok(Auth::Basic);
        };
        let credentials = json!({"UserName": self.username, "Password": self.password.expose()});
        let reply = self
            .send(
                Method::POST,
                &sessions,
                Some(&credentials),
                Extra::default(),
                &Auth::None,
            )
            .await?;
        match reply.status {
            s if s.is_success() => {
                let session = session_from(&reply);
                if let (Err(_), Some(orphan)) = (&session, &reply.location) {
                    // The BMC made a session we cannot use: delete it (with
                    // basic auth) so failed logins do not fill its table.
                    let deleted = self
                        .send(Method::DELETE, orphan, None, Extra::default(), &Auth::Basic)
                        .await;
                    tracing::debug!(
                        bmc = self.address(),
                        ok = deleted.is_ok_and(|r| r.status.is_success()),
                        "deleted a Redfish session that came without a token"
                    );
                }
                session
            }
            StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED => {
                tracing::debug!(bmc = self.address(), "sessions refused, using basic auth");
                Ok(Auth::Basic)
            }
            _ => Err(login_refused(&reply)),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: Extra<'_>,
        auth: &Auth,
    ) -> Result<Reply, Failed> {
        let url = self.url(path).map_err(Failed::unsent)?;
        tracing::trace!(bmc = self.address(), %method, path, "Redfish request");
        let mut request = self.http.request(method, url);
        request = match auth {
            Auth::None => request,
            Auth::Session { token, .. } => request.header(X_AUTH_TOKEN, token.expose()),
            Auth::Basic => request.basic_auth(&self.username, Some(self.password.expose())),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(etag) = extra.if_match {
            request = request.header(IF_MATCH, etag);
        }
        if extra.last {
            request = request.header(CONNECTION, "close");
        }
        let response = request.send().await.map_err(|e| Failed {
            maybe_sent: !e.is_connect() && !e.is_builder(),
            error: self.transport_error(&e),
        })?;
        // From here on the BMC has the request.
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = self.read_body(response).await.map_err(Failed::sent)?;
        let body = parse_body(&bytes, status).map_err(Failed::sent)?;
        tracing::trace!(
            bmc = self.address(),
            status = status.as_u16(),
            "Redfish reply"
        );
        Ok(Reply {
            status,
            location: header_str(&headers, LOCATION).map(|l| self.relative(&l)),
            retry_after: header_str(&headers, RETRY_AFTER).and_then(|v| parse_retry_after(&v)),
            etag: header_str(&headers, ETAG).or_else(|| model::odata_etag(&body)),
            auth_token: header_str(&headers, X_AUTH_TOKEN).map(Secret::from),
            body,
        })
    }

    /// Reads the body, refusing one larger than [`MAX_BODY`] without
    /// buffering it.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, DriverError> {
        let status = response.status();
        let too_large = || {
            DriverError::InvalidResponse(format!(
                "HTTP {status} body is larger than {MAX_BODY} bytes"
            ))
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            if (e.is_body() || e.is_decode()) && !e.is_timeout() {
                // The head arrived, the body broke off short of its length.
                DriverError::InvalidResponse(format!(
                    "HTTP {status} body ended before its announced length: {}",
                    error_chain(&e)
                ))
            } else {
                self.transport_error(&e)
            }
        })? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// The URL of `path` on this BMC. An absolute `http(s)` URL counts for
    /// its path only: it is requested on this BMC whatever host it names
    /// (BMCs behind a proxy, or addressed by name, often name themselves
    /// differently), so the BMC cannot send our credentials elsewhere.
    /// Anything that is not an absolute path (`//host/x`, or `@host/x` which
    /// would turn the base's `host:port` into userinfo) is refused.
    fn url(&self, path: &str) -> Result<String, DriverError> {
        let path = self.relative(path);
        if path.starts_with('/') && !path.starts_with("//") {
            Ok(format!("{}{}", self.base, path))
        } else {
            Err(DriverError::InvalidResponse(format!(
                "the BMC links to {path:?}, which is not a path on {}",
                self.address()
            )))
        }
    }

    /// The path (and query) of an absolute `http(s)` URL, so paths compare
    /// equal and stay on this BMC; anything else is returned unchanged.
    fn relative(&self, link: &str) -> String {
        let Ok(url) = reqwest::Url::parse(link) else {
            return link.to_owned();
        };
        if !matches!(url.scheme(), "http" | "https") {
            return link.to_owned();
        }
        if !link.starts_with(&self.base) {
            tracing::debug!(
                bmc = self.address(),
                link = url.path(),
                "the BMC links to another authority; using the path on this BMC"
            );
        }
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> DriverError {
        if error.is_builder() {
            // A request built from what the BMC sent (an `@odata.etag` with a
            // control character…): retrying cannot help.
            return DriverError::InvalidResponse(format!(
                "cannot build a request from the BMC's answer: {}",
                error_chain(error)
            ));
        }
        if error.is_timeout() {
            return DriverError::Timeout {
                operation: "Redfish connect",
                deadline: self.connect_timeout,
            };
        }
        let reason = error_chain(error);
        if reason.contains("certificate") {
            // The TLS handshake refused the BMC's certificate: retrying
            // cannot make it trusted, only the node's settings can.
            return DriverError::Config(format!(
                "certificate not trusted ({reason}); set bmc.ca_file or bmc.verify_tls = false"
            ));
        }
        DriverError::Unreachable {
            address: self.address().to_owned(),
            reason,
        }
    }
}

/// A failed exchange, and whether the request may have reached the BMC.
#[derive(Debug)]
struct Failed {
    error: DriverError,
    maybe_sent: bool,
}

impl Failed {
    /// Failed before anything was sent (login, bad link, no connection).
    fn unsent(error: DriverError) -> Self {
        Self {
            error,
            maybe_sent: false,
        }
    }

    /// Failed after the BMC had the request (its answer was unreadable).
    fn sent(error: DriverError) -> Self {
        Self {
            error,
            maybe_sent: true,
        }
    }
}

impl From<Failed> for DriverError {
    fn from(failed: Failed) -> Self {
        failed.error
    }
}

/// The session from a successful login answer.
fn session_from(reply: &Reply) -> Result<Auth, DriverError> {
    let token = reply.auth_token.clone().ok_or_else(|| {
        DriverError::InvalidResponse("login answer has no X-Auth-Token header".into())
    })?;
    Ok(Auth::Session {
        token,
        location: reply.location.clone(),
    })
}

fn header_str(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`] (the HTTP-date form
/// is read as "soon").
fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
        .or(Some(Duration::from_secs(1)))
}

/// The error for a refused login, from its status alone. The body is left
/// out: a BMC that echoes the request would show the password, and no
/// masking catches every form of it (JSON-escaped, cut short).
fn login_refused(reply: &Reply) -> DriverError {
    let status = reply.status;
    let bodyless = Reply {
        status,
        location: None,
        retry_after: reply.retry_after,
        etag: None,
        auth_token: None,
        body: Value::Null,
    };
    match bodyless.error() {
        DriverError::Bmc {
            code,
            message,
            transient,
        } => DriverError::Bmc {
            code,
            message: format!("{message} to the login (body not shown: it may echo the password)"),
            transient,
        },
        other => other,
    }
}

/// The body as JSON; empty bodies are `null`; non-JSON bodies of error
/// answers are kept as a string so the error message can show them.
fn parse_body(bytes: &[u8], status: StatusCode) -> Result<Value, DriverError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) if !status.is_success() => Ok(Value::String(
            String::from_utf8_lossy(bytes).chars().take(200).collect(),
        )),
        Err(e) => Err(DriverError::InvalidResponse(format!(
            "HTTP {status} body is not JSON: {e}"
        ))),
    }
}

/// "outer: inner: innermost" for an error and its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> RedfishClient {
        RedfishClient::new(
            reqwest::Client::new(),
            "https://10.0.0.1:443".into(),
            "admin".into(),
            Secret::new("pw"),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn retry_after_is_capped() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn links_stay_on_the_bmc() {
        let c = client();
        let ok = |p: &str| c.url(p).ok();
        let x = Some("https://10.0.0.1:443/redfish/v1/x".to_owned());
        assert_eq!(ok("/redfish/v1/x"), x);
        assert_eq!(
            ok("https://10.0.0.1/t?a=1"),
            Some("https://10.0.0.1:443/t?a=1".into())
        );
        // Another authority: only its path is used, on this BMC.
        for elsewhere in [
            "https://10.0.0.2/redfish/v1/x",
            "http://bmc1.example/redfish/v1/x",
            "https://u:p@10.0.0.9:8443/redfish/v1/x",
        ] {
            assert_eq!(ok(elsewhere), x, "{elsewhere}");
        }
        for refused in ["@evil/x", "//evil/x", "redfish/v1", "ftp://evil/x", ""] {
            assert!(c.url(refused).is_err(), "{refused}");
        }
    }
}
