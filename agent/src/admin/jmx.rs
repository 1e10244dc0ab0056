//! The Kafka container's JMX exporter, read over HTTP inside the Pod: its text is
//! passed through on the agent's /metrics, and two of its gauges (broker state,
//! logs left to recover) feed readiness.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes};
use tokio::net::TcpStream;

/// How long the exporter may take (it walks every MBean; large brokers are slow).
pub const JMX_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the exporter could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JmxError {
    /// The URL is not `http://host:port/path`.
    #[error("invalid JMX exporter URL {0:?}: expected http://host:port/path")]
    Url(String),
    /// Connecting or exchanging failed.
    #[error("failed to scrape the JMX exporter at {url}: {message}")]
    Scrape {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
}

/// GETs `url` (plain HTTP/1.1) and returns the body.
pub async fn fetch(url: &str) -> Result<String, JmxError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| JmxError::Url(url.to_owned()))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    if authority.is_empty() {
        return Err(JmxError::Url(url.to_owned()));
    }
    let fail = |message: String| JmxError::Scrape {
        url: url.to_owned(),
        message,
    };
    let work = async {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        driver.abort();
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}")));
        }
        String::from_utf8(body.to_vec()).map_err(|_| fail("the body is not UTF-8".into()))
    };
    tokio::time::timeout(JMX_TIMEOUT, work)
        .await
        .map_err(|_| JmxError::Scrape {
            url: url.to_owned(),
            message: format!("no answer within {JMX_TIMEOUT:?}"),
        })?
}

/// Kafka's broker state (`kafka_server_kafkaserver_brokerstate`) and the logs left
/// to recover (sum of `kafka_log_logmanager_remaininglogstorecover`).
pub fn broker_state(text: &str) -> (Option<i64>, u64) {
    let mut state = None;
    let mut remaining = 0u64;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = || line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if line.starts_with("kafka_server_kafkaserver_brokerstate") {
            state = value().map(|v| v as i64);
        } else if line.starts_with("kafka_log_logmanager_remaininglogstorecover") {
            remaining += value().map_or(0, |v| v.max(0.0) as u64);
        }
    }
    (state, remaining)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_broker_state_and_remaining_logs() {
        let text = "# TYPE x gauge\nkafka_server_kafkaserver_brokerstate 2.0\nkafka_log_logmanager_remaininglogstorecover{dir=\"/a\",} 3.0\nkafka_log_logmanager_remaininglogstorecover{dir=\"/b\",} 1.0\n";
        assert_eq!(broker_state(text), (Some(2), 4));
        assert_eq!(broker_state("other 1\n"), (None, 0));
    }

    #[tokio::test]
    async fn bad_urls_are_rejected_before_connecting() {
        assert!(matches!(
            fetch("https://x:1/metrics").await,
            Err(JmxError::Url(_))
        ));
    }
}
