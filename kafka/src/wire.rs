//! One TCP connection to a broker (plain or TLS), one request in flight at a time, on
//! top of the `kafka-protocol` crate: encode the header and body, frame, read the
//! response, check the correlation id. Every call is bounded by the connection's
//! timeout.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use kafka_protocol::{
    messages::{RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};

use crate::tls::TlsClient;

/// The client id Stoker's requests carry (visible in the broker's request logs).
pub const CLIENT_ID: &str = "stoker";

/// Largest response the agent accepts (metadata of a big cluster fits easily).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A failed exchange with the broker.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Connecting failed.
    #[error("failed to connect to {addr}")]
    Connect {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Sending or receiving failed.
    #[error("failed to exchange {api} with the broker")]
    Io {
        /// The API.
        api: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (the broker's certificate is not from the trusted CA or
    /// does not name the expected host, or the broker refused this client's).
    #[error("failed the TLS handshake with {addr} (expecting a certificate for {name})")]
    Handshake {
        /// The address.
        addr: String,
        /// The name the certificate had to carry.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker did not answer in time.
    #[error("the broker did not answer {api} within {0:?}", timeout)]
    Timeout {
        /// The API.
        api: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The bytes could not be encoded or decoded.
    #[error("failed to encode or decode {api}: {message}")]
    Codec {
        /// The API.
        api: &'static str,
        /// The codec's message.
        message: String,
    },
}

/// The byte stream under a connection.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One connection to a broker or controller.
#[derive(Debug)]
pub struct Connection {
    stream: Transport,
    correlation_id: i32,
    timeout: Duration,
}

impl Connection {
    /// Connects to `addr` (host:port) in plaintext within `timeout`; the same limit
    /// applies to every request later.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, WireError> {
        Self::connect_with(addr, timeout, None).await
    }

    /// Connects to `addr` within `timeout`, over TLS when `tls` is given (the handshake
    /// counts within the same limit).
    pub async fn connect_with(
        addr: &str,
        timeout: Duration,
        tls: Option<&TlsClient>,
    ) -> Result<Self, WireError> {
        let started = tokio::time::Instant::now();
        let tcp = Self::tcp(addr, timeout).await?;
        let stream = match tls {
            None => Transport::Plain(tcp),
            Some(tls) => {
                let (connector, name) = tls.connector();
                let handshake = |source| WireError::Handshake {
                    addr: addr.to_owned(),
                    name: name.to_str().into_owned(),
                    source,
                };
                let left = timeout.saturating_sub(started.elapsed());
                let stream = tokio::time::timeout(left, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| {
                        handshake(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "handshake timed out",
                        ))
                    })?
                    .map_err(handshake)?;
                Transport::Tls(Box::new(stream))
            }
        };
        Ok(Self {
            stream,
            correlation_id: 0,
            timeout,
        })
    }

    async fn tcp(addr: &str, timeout: Duration) -> Result<TcpStream, WireError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| WireError::Connect {
                addr: addr.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })?
            .map_err(|source| WireError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Sends `request` at `version` and returns the decoded response.
    pub async fn send<R: Request>(
        &mut self,
        api: &'static str,
        request: &R,
        version: i16,
    ) -> Result<R::Response, WireError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(api, request, version))
            .await
            .map_err(|_| WireError::Timeout { api, timeout })?
    }

    async fn exchange<R: Request>(
        &mut self,
        api: &'static str,
        request: &R,
        version: i16,
    ) -> Result<R::Response, WireError> {
        let codec = |e: anyhow::Error| WireError::Codec {
            api,
            message: e.to_string(),
        };
        let io = |source| WireError::Io { api, source };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(codec)?;
        request.encode(&mut body, version).map_err(codec)?;
        let len = i32::try_from(body.len()).map_err(|_| WireError::Codec {
            api,
            message: "request too large".into(),
        })?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;

        let size = self.stream.read_i32().await.map_err(io)?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| WireError::Codec {
                api,
                message: format!("bad response size {size}"),
            })?;
        let mut buf = vec![0; size];
        self.stream.read_exact(&mut buf).await.map_err(io)?;
        let mut buf = bytes::Bytes::from(buf);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(codec)?;
        if header.correlation_id != self.correlation_id {
            return Err(WireError::Codec {
                api,
                message: format!(
                    "correlation id {} does not match {}",
                    header.correlation_id, self.correlation_id
                ),
            });
        }
        let response = R::Response::decode(&mut buf, version).map_err(codec)?;
        if buf.has_remaining() {
            tracing::debug!(
                api,
                remaining = buf.remaining(),
                "Response had trailing bytes"
            );
        }
        Ok(response)
    }
}
