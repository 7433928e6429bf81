//! The server loop under abuse: idle floods, slowloris, half-closed
//! clients, shutdown with a request in flight. Real sockets on 127.0.0.1,
//! every wait bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use kaching_kit::serve::{serve, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const BOUND: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(p): ConnectInfo<SocketAddr>| async move { p.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(listener, app(), limits, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        done,
    }
}

fn limits(max: usize) -> Limits {
    Limits {
        max_connections: max,
        header_read_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_secs(30),
        drain_timeout: Duration::from_millis(500),
    }
}

/// Sends one request on a new connection and returns the whole answer.
async fn get_once(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Reads until the peer closes; returns how many bytes came.
async fn read_to_close(s: &mut TcpStream) -> usize {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap_or(0)
}

#[tokio::test]
async fn a_new_client_is_answered_while_idle_connections_fill_the_cap() {
    let srv = start(Limits {
        idle_timeout: Duration::from_secs(600),
        ..limits(16)
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    // Past the cap and long before any idle timeout: pressure makes room.
    let answer = tokio::time::timeout(BOUND, get_once(srv.addr, "/healthz"))
        .await
        .expect("a new client must be answered while idle sockets fill the server");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
}

#[tokio::test]
async fn a_request_in_flight_is_never_evicted_by_pressure() {
    let srv = start(limits(2)).await;
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..8 {
        let a = tokio::time::timeout(BOUND, get_once(srv.addr, "/healthz"))
            .await
            .expect("answered");
        assert!(a.starts_with("HTTP/1.1 200"));
    }
    // The slow request's connection is still open: nothing came, no EOF.
    let mut byte = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(300), slow.read(&mut byte)).await;
    assert!(still_open.is_err(), "the in-flight request was cut off");
}

#[tokio::test]
async fn attack_slowloris_head_is_cut_off_after_the_header_timeout() {
    let srv = start(limits(16)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    // One byte every 100 ms: each byte is "activity", the head never completes.
    let drip = async {
        for b in b"GET /healthz HTTP/1.1\r\nX-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(BOUND, drip).await.expect("bounded");
    let n = tokio::time::timeout(BOUND, read_to_close(&mut s))
        .await
        .expect("the server must close a connection whose head never completes");
    assert_eq!(n, 0, "no response to an incomplete head");
    assert!(started.elapsed() < BOUND);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let srv = start(Limits {
        idle_timeout: Duration::from_millis(300),
        ..limits(16)
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let n = tokio::time::timeout(BOUND, read_to_close(&mut s))
        .await
        .expect("an idle connection must be closed");
    assert_eq!(n, 0);
    // Keep-alive: after one answered request the idle clock starts again.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = tokio::time::timeout(BOUND, read_to_close(&mut s))
        .await
        .expect("closed after the keep-alive idle timeout");
    assert!(n > 0, "the request was answered before the close");
}

#[tokio::test]
async fn attack_half_closed_client_gets_its_answer() {
    let srv = start(limits(16)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(BOUND, s.read_to_string(&mut out))
        .await
        .expect("bounded")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
}

#[tokio::test]
async fn requests_see_their_peer_address() {
    let srv = start(limits(4)).await;
    let a = get_once(srv.addr, "/peer").await;
    assert!(a.contains("127.0.0.1:"), "{a}");
}

#[tokio::test]
async fn shutdown_cuts_off_a_request_past_the_drain_timeout() {
    let mut srv = start(limits(4)).await;
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let _idle = TcpStream::connect(srv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = srv.stop.take().unwrap().send(());
    let served = tokio::time::timeout(BOUND, srv.done)
        .await
        .expect("serve must return within the drain timeout");
    served.unwrap().unwrap();
    assert_eq!(read_to_close(&mut slow).await, 0);
    // The listener is gone: nobody is accepting on the port any more.
    assert!(TcpStream::connect(srv.addr).await.is_err());
}
