//! The wire format of labctl's bundled workers: length-delimited frames, each one JSON
//! message, over TCP. Both the MapReduce engine and the task scheduler speak it. Also what
//! else they share: how they stop when asked to ([`stop`]).

#![warn(clippy::print_stdout)]

pub mod stop;

use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

type Inner = Framed<TcpStream, LengthDelimitedCodec>;

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

    /// Connects to `addr`, retrying while it does not listen yet, for up to `patience`.
    pub async fn connect(addr: &str, patience: Duration) -> std::io::Result<Self> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(Self::new(s)),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
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
