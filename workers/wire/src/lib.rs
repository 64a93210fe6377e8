//! The wire format of labctl's bundled workers: length-delimited frames, each one JSON
//! message, over TCP. Both the MapReduce engine and the task scheduler speak it. Also what
//! else they share: how they stop when asked to ([`stop`]), and the students' files that
//! travel with a job ([`files`]).

#![warn(clippy::print_stdout)]

pub mod files;
pub mod stop;

use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

type Inner = Framed<TcpStream, LengthDelimitedCodec>;

/// Patience for [`Conn::connect`] without a deadline: what a worker service waits for its
/// coordinator, since exiting would only make its supervisor restart it with a growing
/// delay (Kubernetes' crash-loop back-off reaches 5 minutes).
pub const UNTIL_UP: Duration = Duration::MAX;

/// How often a long wait in [`Conn::connect`] is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// A framed connection.
pub struct Conn {
    framed: Inner,
}

/// The sending half of a split [`Conn`].
pub struct Sender(SplitSink<Inner, bytes::Bytes>);

/// The receiving half of a split [`Conn`].
pub struct Receiver(SplitStream<Inner>);

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let codec = LengthDelimitedCodec::builder().max_frame_length(256 << 20).new_codec();
        Self { framed: Framed::new(stream, codec) }
    }

    /// Connects to `addr`, retrying while it does not resolve or listen yet, for up to
    /// `patience` ([`UNTIL_UP`]: for as long as it takes). Retries back off from 50 ms to
    /// 2 s, and a wait past 10 s is logged with its cause every 10 s, so that a worker
    /// started before its coordinator (or before the cluster's DNS knows the coordinator's
    /// Service) neither floods the resolver nor waits in silence.
    pub async fn connect(addr: &str, patience: Duration) -> std::io::Result<Self> {
        let start = tokio::time::Instant::now();
        let deadline = start.checked_add(patience);
        let mut pause = Duration::from_millis(50);
        let mut next_report = start + REPORT_EVERY;
        loop {
            let e = match TcpStream::connect(addr).await {
                Ok(s) => return Ok(Self::new(s)),
                Err(e) => e,
            };
            let now = tokio::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(e);
            }
            if now >= next_report {
                tracing::warn!("still waiting for {addr} after {} s: {e}", (now - start).as_secs());
                next_report = now + REPORT_EVERY;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// The local address of this connection: the one a peer on its path reaches us at.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.framed.get_ref().local_addr()
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> std::io::Result<()> {
        self.framed.send(encode(msg)?).await
    }

    /// The next message; `None` once the peer has gone.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Option<std::io::Result<T>> {
        decode(self.framed.next().await?)
    }

    pub fn split(self) -> (Sender, Receiver) {
        let (sink, stream) = self.framed.split();
        (Sender(sink), Receiver(stream))
    }
}

impl Sender {
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> std::io::Result<()> {
        self.0.send(encode(msg)?).await
    }
}

impl Receiver {
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Option<std::io::Result<T>> {
        decode(self.0.next().await?)
    }
}

fn encode<T: Serialize>(msg: &T) -> std::io::Result<bytes::Bytes> {
    serde_json::to_vec(msg).map(bytes::Bytes::from).map_err(std::io::Error::other)
}

fn decode<T: DeserializeOwned>(frame: std::io::Result<bytes::BytesMut>) -> Option<std::io::Result<T>> {
    Some(frame.and_then(|b| serde_json::from_slice(&b).map_err(std::io::Error::other)))
}

/// Why a hello must be refused, if it must: another protocol version (naming both) or
/// the wrong token.
pub fn refusal(their_version: u32, our_version: u32, their_token: &str, our_token: &str) -> Option<String> {
    if their_version != our_version {
        Some(format!(
            "protocol version {their_version} is not supported: this server speaks version {our_version}"
        ))
    } else if their_token != our_token {
        Some("wrong token".to_owned())
    } else {
        None
    }
}

/// Relays a connection after its handshake: messages from `outbound` are sent to the
/// peer, messages from the peer go to `inbound`, until either side closes.
pub async fn relay<In: DeserializeOwned, Out: Serialize>(
    conn: Conn,
    mut outbound: tokio::sync::mpsc::UnboundedReceiver<Out>,
    mut inbound: impl FnMut(In),
) {
    let (mut sink, mut stream) = conn.split();
    loop {
        tokio::select! {
            msg = outbound.recv() => match msg {
                Some(msg) => if sink.send(&msg).await.is_err() { break },
                None => break,
            },
            msg = stream.recv::<In>() => match msg {
                Some(Ok(msg)) => inbound(msg),
                _ => break,
            },
        }
    }
}
