//! The HTTP side of the exporter: `/metrics` and `/healthz`, served by hyper on
//! the daemon's runtime. Counters are read from the pins on each scrape, so the
//! exporter shares nothing with the datapath but the bpffs.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
    Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::{encode, Format, SeriesPolicy, Snapshot};
use crate::{
    datapath::maps::{Access, Maps},
    stats::{self, StatsError},
};

#[derive(Debug, thiserror::Error)]
#[error("metrics: cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

impl crate::errors::Blame for BindError {
    /// The configured address is taken or not this host's.
    fn is_user_error(&self) -> bool {
        true
    }
}

/// Binds the listener; done before vip changes anything, so a taken port is an
/// error with nothing to undo.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// What the handlers read.
pub struct Exporter {
    pin_dir: PathBuf,
    run_dir: PathBuf,
    policy: Mutex<SeriesPolicy>,
    /// Opened on the first scrape after the daemon pinned its maps, then kept
    /// (mapping the counter tables costs time in proportion to their size).
    maps: Mutex<Option<Maps>>,
}

impl Exporter {
    pub fn new(pin_dir: PathBuf, run_dir: PathBuf, policy: SeriesPolicy) -> Arc<Exporter> {
        Arc::new(Exporter {
            pin_dir,
            run_dir,
            policy: Mutex::new(policy),
            maps: Mutex::new(None),
        })
    }

    /// After a reload.
    pub fn set_policy(&self, policy: SeriesPolicy) {
        *self.policy.lock().expect("policy lock") = policy;
    }

    /// After maps were pinned over others (a reload that changed the
    /// attachments): the next scrape opens the pins again.
    pub fn reopen_maps(&self) {
        *self.maps.lock().expect("maps lock") = None;
    }

    /// Runs `f` on the pinned maps, opening them first if need be.
    fn with_maps<T>(
        &self,
        f: impl FnOnce(&Maps) -> Result<T, StatsError>,
    ) -> Result<T, StatsError> {
        let mut maps = self.maps.lock().expect("maps lock");
        if maps.is_none() {
            *maps = Some(Maps::open_pinned(&self.pin_dir, Access::ReadOnly)?);
        }
        f(maps.as_ref().expect("opened above"))
    }

    /// The counters now, as /metrics shows them.
    pub fn snapshot(&self) -> Result<Snapshot, StatsError> {
        let report = self.with_maps(|maps| stats::collect(maps, &self.run_dir))?;
        Ok(Snapshot {
            report,
            policy: self.policy.lock().expect("policy lock").clone(),
        })
    }

    fn metrics(&self, format: Format) -> Response<Full<Bytes>> {
        match self.snapshot() {
            Ok(snapshot) => response(
                StatusCode::OK,
                format.content_type(),
                encode(snapshot, format),
            ),
            Err(e) => {
                log::warn!("metrics scrape: {}", crate::errors::chain(&e));
                response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{}\n", crate::errors::chain(&e)),
                )
            }
        }
    }

    fn health(&self) -> Response<Full<Bytes>> {
        match self.with_maps(stats::attachments) {
            Ok(attachments) if !attachments.is_empty() => {
                let list: Vec<String> = attachments
                    .iter()
                    .map(|a| format!("{} ({})", a.interface, a.mode))
                    .collect();
                response(
                    StatusCode::OK,
                    "text/plain",
                    format!("ok: attached to {}\n", list.join(", ")),
                )
            }
            Ok(_) => response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not attached\n".into(),
            ),
            Err(e) => response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not attached: {}\n", crate::errors::chain(&e)),
            ),
        }
    }

    fn handle(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        match request.uri().path() {
            "/metrics" => self.metrics(Format::negotiate(
                request
                    .headers()
                    .get(hyper::header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            )),
            "/healthz" => self.health(),
            _ => response(
                StatusCode::NOT_FOUND,
                "text/plain",
                "vip serves /metrics and /healthz\n".into(),
            ),
        }
    }
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Serves connections until the task is dropped.
pub async fn serve(listener: TcpListener, exporter: Arc<Exporter>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn!("metrics: accept: {e}");
                continue;
            }
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = exporter.handle(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("metrics: connection: {e}");
            }
        });
    }
}
