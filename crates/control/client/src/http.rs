//! HTTP/1.1 to gasangd over its Unix socket: one connection per request.

use std::path::{Path, PathBuf};

use gasang_api::{ApiError, ErrorCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// A request to gasangd failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket is not there or refuses.
    #[error("cannot reach gasangd at {}: {source} (is gasangd running? --socket names another)", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange broke off.
    #[error("gasangd's connection failed: {0}")]
    Http(#[from] hyper::Error),
    /// gasangd refused the request.
    #[error("{0}")]
    Api(ApiError),
    /// gasangd answered with something that is not what the API says.
    #[error("gasangd sent an unexpected reply ({0})")]
    Unexpected(String),
    /// Reading or writing the terminal or a file.
    #[error("{0}")]
    Io(String),
}

/// A client of one gasangd.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// A request body and its media type.
pub type Payload = Option<(&'static str, Vec<u8>)>;

impl Client {
    /// A client of the daemon at `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    /// Sends one request; the reply's head and a body still to be read.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
        upgrade: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection.with_upgrades());
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "gasangd");
        if let Some(protocol) = upgrade {
            request = request
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, protocol);
        }
        let body = match payload {
            Some((kind, bytes)) => {
                request = request.header(header::CONTENT_TYPE, kind);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .map_err(|e| ClientError::Unexpected(e.to_string()))?;
        Ok(sender.send_request(request).await?)
    }

    /// Sends a request and reads the whole reply; a 4xx or 5xx is its [`ApiError`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
    ) -> Result<Bytes, ClientError> {
        let response = self.send(method, path, payload, None).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        check(status, &body)?;
        Ok(body)
    }

    /// [`Self::call`], with the reply parsed as JSON.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        payload: Payload,
    ) -> Result<T, ClientError> {
        let body = self.call(method, path, payload).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected(e.to_string()))
    }
}

/// The error a reply carries, if it is one.
pub fn check(status: StatusCode, body: &[u8]) -> Result<(), ClientError> {
    if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(());
    }
    Err(match serde_json::from_slice::<ApiError>(body) {
        Ok(error) => ClientError::Api(error),
        Err(_) => ClientError::Api(ApiError::new(
            ErrorCode::Internal,
            format!("HTTP {status}: {}", String::from_utf8_lossy(body).trim()),
        )),
    })
}
