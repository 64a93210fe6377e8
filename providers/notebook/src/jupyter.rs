//! A client of a Jupyter server, as a notebook front end is one: its REST API starts and
//! shuts down a kernel, the kernel's websocket (`/api/kernels/<id>/channels`, Jupyter's
//! JSON message protocol) runs code and carries back what the code printed.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// How long one REST call may take.
const REST_TIMEOUT: Duration = Duration::from_secs(30);

/// A Jupyter server at `http://<address>`, logged in to with a token.
pub struct Jupyter {
    address: String,
    token: String,
    agent: ureq::Agent,
}

/// Why running code failed.
#[derive(Debug, PartialEq, Eq)]
pub enum RunError {
    /// The server, the kernel or the websocket failed.
    Jupyter(String),
    /// The code raised: Python's exception name and message.
    Raised { name: String, message: String },
}

impl Jupyter {
    /// The server at `address` (`host:port`), with its login token.
    pub fn new(address: &str, token: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self { address: address.to_owned(), token: token.to_owned(), agent }
    }

    /// The server's version and how many kernels it runs (asked with the token: a server
    /// that does not take it answers 403).
    pub fn status(&self) -> Result<(String, u64), String> {
        let version = self.rest(Method::Get, "/api")?;
        let status = self.rest(Method::Get, "/api/status")?;
        Ok((
            version["version"].as_str().unwrap_or("unknown").to_owned(),
            status["kernels"].as_u64().unwrap_or(0),
        ))
    }

    /// Starts a Python kernel and opens its channels; the kernel is shut down when the
    /// returned [`Kernel`] is dropped.
    pub fn start_kernel(&self) -> Result<Kernel<'_>, String> {
        let kernel = self.rest(Method::Post(json!({ "name": "python3" })), "/api/kernels")?;
        let id = kernel["id"].as_str().ok_or("the server started no kernel")?.to_owned();
        let mut kernel =
            Kernel { jupyter: self, id, socket: None, session: labctl_provider_api::random_token() };
        kernel.socket = Some(self.channels(&kernel.id)?);
        Ok(kernel)
    }

    fn channels(&self, kernel: &str) -> Result<WebSocket<TcpStream>, String> {
        let url = format!("ws://{}/api/kernels/{kernel}/channels", self.address);
        let mut request = url.as_str().into_client_request().map_err(|e| e.to_string())?;
        let login = format!("token {}", self.token).parse().map_err(|_| "the token is not a header value")?;
        request.headers_mut().insert("Authorization", login);
        let addr: SocketAddr = self
            .address
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.address))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.address))?;
        let stream = TcpStream::connect_timeout(&addr, REST_TIMEOUT)
            .map_err(|e| format!("cannot reach the Jupyter server at {}: {e}", self.address))?;
        let (socket, _) = tungstenite::client(request, stream)
            .map_err(|e| format!("the kernel's websocket at {url} refused: {e}"))?;
        Ok(socket)
    }

    /// One REST call; its JSON answer, or the server's reason for refusing.
    fn rest(&self, method: Method, path: &str) -> Result<Value, String> {
        let url = format!("http://{}{path}", self.address);
        let login = format!("token {}", self.token);
        let name = method.name();
        let sent = match method {
            Method::Get => self.agent.get(&url).header("Authorization", &login).call(),
            Method::Post(body) => self.agent.post(&url).header("Authorization", &login).send_json(body),
            Method::Delete => self.agent.delete(&url).header("Authorization", &login).call(),
        };
        let mut answer =
            sent.map_err(|e| format!("cannot reach the Jupyter server at {}: {e}", self.address))?;
        let status = answer.status();
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            let reason = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(format!("{name} {path} answered {status}: {reason}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A REST call's method, with a POST's JSON body.
enum Method {
    Get,
    Post(Value),
    Delete,
}

impl Method {
    fn name(&self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post(_) => "POST",
            Self::Delete => "DELETE",
        }
    }
}

/// A running kernel and its open channels.
pub struct Kernel<'a> {
    jupyter: &'a Jupyter,
    id: String,
    socket: Option<WebSocket<TcpStream>>,
    session: String,
}

impl Kernel<'_> {
    /// Runs `code` as a cell and returns what it printed (stdout, then its value's text),
    /// waiting until `deadline` at most.
    pub fn run(&mut self, code: &str, deadline: Instant) -> Result<String, RunError> {
        let msg_id = labctl_provider_api::random_token();
        let request = json!({
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "session": self.session,
                "username": "labctl",
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "content": {
                "code": code,
                "silent": false,
                "store_history": false,
                "user_expressions": {},
                "allow_stdin": false,
                "stop_on_error": true,
            },
        });
        let jupyter = |e: String| RunError::Jupyter(e);
        let socket =
            self.socket.as_mut().ok_or_else(|| jupyter("the kernel's channels are closed".into()))?;
        socket
            .send(Message::text(request.to_string()))
            .map_err(|e| jupyter(format!("sending the cell: {e}")))?;
        let mut cell = Cell::default();
        while !cell.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(jupyter("the cell did not finish in time".into()));
            }
            let _ = socket.get_mut().set_read_timeout(Some(left));
            let message = match socket.read() {
                Ok(message) => message,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    return Err(jupyter("the cell did not finish in time".into()));
                }
                Err(e) => return Err(jupyter(format!("reading the kernel's answer: {e}"))),
            };
            let Message::Text(text) = message else { continue };
            let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
            // A kernel that dies (out of memory) says so to no request in particular.
            let state = &message["content"]["execution_state"];
            if message["msg_type"] == "status" && (state == "dead" || state == "restarting") {
                return Err(jupyter(format!("the kernel died ({state}) running the cell")));
            }
            if message["parent_header"]["msg_id"] == msg_id.as_str() {
                cell.take(&message);
            }
        }
        match cell.raised {
            Some((name, message)) => Err(RunError::Raised { name, message }),
            None => Ok(cell.output),
        }
    }
}

impl Drop for Kernel<'_> {
    /// Shuts the kernel down, so a check leaves no process behind.
    fn drop(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = socket.close(None);
        }
        let _ = self.jupyter.rest(Method::Delete, &format!("/api/kernels/{}", self.id));
    }
}

/// What one cell's messages said so far.
#[derive(Default)]
struct Cell {
    output: String,
    raised: Option<(String, String)>,
    /// Both the reply and the kernel's return to idle arrived.
    done: bool,
    replied: bool,
    idle: bool,
}

impl Cell {
    /// Takes one message from the kernel about this cell.
    fn take(&mut self, message: &Value) {
        let content = &message["content"];
        match message["msg_type"].as_str().unwrap_or_default() {
            "stream" if content["name"] == "stdout" => {
                self.output.push_str(content["text"].as_str().unwrap_or_default());
            }
            "execute_result" => {
                self.output.push_str(content["data"]["text/plain"].as_str().unwrap_or_default());
                self.output.push('\n');
            }
            "error" => {
                let text = |key: &str| content[key].as_str().unwrap_or_default().to_owned();
                self.raised = Some((text("ename"), text("evalue")));
            }
            "execute_reply" => self.replied = true,
            "status" if content["execution_state"] == "idle" => self.idle = true,
            _ => {}
        }
        self.done = self.replied && self.idle;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Cell;

    fn message(msg_type: &str, content: serde_json::Value) -> serde_json::Value {
        json!({ "msg_type": msg_type, "content": content })
    }

    #[test]
    fn a_cell_is_done_once_replied_and_idle_and_keeps_what_it_printed() {
        let mut cell = Cell::default();
        cell.take(&message("status", json!({ "execution_state": "busy" })));
        cell.take(&message("stream", json!({ "name": "stdout", "text": "4" })));
        cell.take(&message("stream", json!({ "name": "stderr", "text": "warning" })));
        cell.take(&message("execute_result", json!({ "data": { "text/plain": "2" } })));
        assert!(!cell.done);
        cell.take(&message("execute_reply", json!({ "status": "ok" })));
        assert!(!cell.done, "the output may still be on its way until the kernel is idle");
        cell.take(&message("status", json!({ "execution_state": "idle" })));
        assert!(cell.done);
        assert_eq!(cell.output, "42\n");
        assert_eq!(cell.raised, None);
    }

    #[test]
    fn an_exception_is_kept_by_name_and_message() {
        let mut cell = Cell::default();
        cell.take(&message(
            "error",
            json!({ "ename": "TimeoutError", "evalue": "Only 1/2 workers arrived" }),
        ));
        assert_eq!(cell.raised, Some(("TimeoutError".into(), "Only 1/2 workers arrived".into())));
    }
}
