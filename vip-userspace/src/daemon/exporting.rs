//! The daemon's metrics listener, and how a reload moves it to another
//! `metrics.listen`: decided (the new address bound) before the reload changes
//! anything, done at its end.

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, task::JoinHandle};

use crate::metrics::server::{self, BindError, Exporter};

/// The exporter serving on the configured address.
pub(super) struct Serving {
    pub exporter: Arc<Exporter>,
    /// As the config says (port 0 stays 0): what a reload compares.
    configured: SocketAddr,
    task: JoinHandle<()>,
}

impl Serving {
    pub fn start(
        configured: SocketAddr,
        listener: TcpListener,
        exporter: Arc<Exporter>,
    ) -> Result<Serving, std::io::Error> {
        let addr = listener.local_addr()?;
        log::info!("serving /metrics and /healthz on http://{addr}");
        let task = tokio::spawn(server::serve(listener, exporter.clone()));
        Ok(Serving {
            exporter,
            configured,
            task,
        })
    }

    /// Stops accepting; returns once the listening socket is closed.
    /// Connections being served finish on their own.
    pub async fn stop(self) -> Arc<Exporter> {
        self.task.abort();
        let _ = self.task.await;
        self.exporter
    }
}

/// What a reload does with the listener.
pub(super) enum ListenMove {
    Stay,
    Close,
    /// Bound already: served in place of the old listener at the reload's end.
    Open(TcpListener),
    /// An address the old listener's port conflicts with (a wildcard and a
    /// specific address on one port): bound once the old one is closed, at
    /// the reload's end, the old one bound again if that fails.
    AfterClosing(SocketAddr),
}

/// What moving from `serving` to `wanted` takes, checked without changing
/// anything: an address in use by anyone else refuses the reload.
pub(super) async fn plan(
    serving: Option<&Serving>,
    wanted: Option<SocketAddr>,
) -> Result<ListenMove, BindError> {
    let current = serving.map(|s| s.configured);
    let Some(addr) = wanted.filter(|&w| Some(w) != current) else {
        return Ok(if wanted == current {
            ListenMove::Stay
        } else {
            ListenMove::Close
        });
    };
    match server::bind(addr).await {
        Ok(listener) => Ok(ListenMove::Open(listener)),
        Err(e)
            if e.source.kind() == std::io::ErrorKind::AddrInUse
                && current.is_some_and(|c| c.port() == addr.port() && addr.port() != 0) =>
        {
            Ok(ListenMove::AfterClosing(addr))
        }
        Err(e) => Err(e),
    }
}

/// `serving` moved as `to` says (`fresh` serves if metrics were off until
/// now); on an error, the old listener serves again (if it can be bound
/// again) and is returned with the error.
pub(super) async fn apply(
    serving: Option<Serving>,
    to: ListenMove,
    wanted: Option<SocketAddr>,
    fresh: Arc<Exporter>,
) -> Result<Option<Serving>, (Option<Serving>, BindError)> {
    let io_error = |addr, source| BindError { addr, source };
    match to {
        ListenMove::Stay => Ok(serving),
        ListenMove::Close => {
            if let Some(serving) = serving {
                serving.stop().await;
                log::info!("metrics: no longer serving (metrics.listen is off)");
            }
            Ok(None)
        }
        ListenMove::Open(listener) => {
            let addr = wanted.expect("an address to open");
            let exporter = match serving {
                Some(serving) => serving.stop().await,
                None => fresh,
            };
            Serving::start(addr, listener, exporter)
                .map(Some)
                .map_err(|e| (None, io_error(addr, e)))
        }
        ListenMove::AfterClosing(addr) => {
            let old = serving.expect("AfterClosing has an old listener");
            let previous = old.configured;
            let exporter = old.stop().await;
            let bound = server::bind(addr).await.and_then(|l| {
                Serving::start(addr, l, exporter.clone()).map_err(|e| io_error(addr, e))
            });
            match bound {
                Ok(serving) => Ok(Some(serving)),
                Err(e) => {
                    let restored = match server::bind(previous).await {
                        Ok(l) => Serving::start(previous, l, exporter).ok(),
                        Err(again) => {
                            log::error!("metrics: {again}");
                            None
                        }
                    };
                    Err((restored, e))
                }
            }
        }
    }
}
