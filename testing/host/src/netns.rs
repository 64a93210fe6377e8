//! Network namespaces and TCP relays through their wall: e.g. the host reaches a VM's sshd
//! at an address of its own on the host's loopback, and the VM reaches the emulator at the
//! same `127.0.0.1:PORT` the lab's endpoint names.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The neighbour (ARP) table's garbage-collection thresholds raised to at least `wanted`
/// for as long as this lives, then put back. They are the host's, shared by every network
/// namespace: a namespace whose bridge holds more peers than the host's `gc_thresh2` (512 by
/// default, e.g. a test cluster node with 600 pods) drops packets to some of them with
/// "neighbor table overflow".
#[derive(Debug)]
pub struct NeighbourTable {
    saved: Vec<(PathBuf, String)>,
}

impl NeighbourTable {
    /// Raises `gc_thresh1..3` to at least `wanted` (those already higher stay). Where the
    /// host does not let us, says so on stderr: only crowded bridges suffer.
    pub fn at_least(wanted: [u32; 3]) -> Self {
        let mut table = Self { saved: vec![] };
        for (i, wanted) in wanted.iter().enumerate() {
            let path = PathBuf::from(format!("/proc/sys/net/ipv4/neigh/default/gc_thresh{}", i + 1));
            let raised = std::fs::read_to_string(&path).and_then(|now| {
                let now = now.trim().to_owned();
                if now.parse::<u32>().is_ok_and(|n| n >= *wanted) {
                    return Ok(());
                }
                std::fs::write(&path, wanted.to_string())?;
                table.saved.push((path.clone(), now));
                Ok(())
            });
            if let Err(e) = raised {
                eprintln!("warning: cannot raise {} to {wanted}: {e}", path.display());
            }
        }
        table
    }
}

impl Drop for NeighbourTable {
    fn drop(&mut self) {
        // Lowest first on the way up, so highest first on the way back (gc_thresh3 >= 2 >= 1).
        for (path, value) in self.saved.iter().rev() {
            let _ = std::fs::write(path, value);
        }
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> io::Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Self { name: name.to_owned() };
        run(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on this thread with the thread inside this namespace, then back in the
    /// namespace it was in. Sockets made by `f` stay in this namespace.
    pub fn within<T>(&self, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let home = File::open("/proc/thread-self/ns/net")?;
        let target = File::open(self.path())?;
        setns(&target)?;
        let result = f();
        setns(&home)?;
        result
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // (A sweep may have deleted it already.)
        if !self.path().exists() {
            return;
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn setns(ns: &File) -> io::Result<()> {
    // SAFETY: setns on a valid namespace file descriptor affects only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which way a relay crosses the namespace wall.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// Listens on the host, connects inside the VM.
    In,
    /// Listens inside the VM, connects on the host.
    Out,
}

/// A TCP relay between the host and a VM's namespace; stops on drop.
#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Relays connections to `listener` (bound on the host) to `target` inside `ns`.
    pub fn inbound(ns: Arc<Netns>, listener: TcpListener, target: SocketAddr) -> io::Result<Self> {
        Self::start(ns, Direction::In, listener, target)
    }

    /// Relays connections to `listen` inside `ns` to `target` on the host.
    pub fn outbound(ns: Arc<Netns>, listen: SocketAddr, target: SocketAddr) -> io::Result<Self> {
        let listener = ns.within(|| TcpListener::bind(listen))?;
        Self::start(ns, Direction::Out, listener, target)
    }

    fn start(
        ns: Arc<Netns>,
        direction: Direction,
        listener: TcpListener,
        target: SocketAddr,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let upstream = match direction {
                            Direction::In => ns.within(|| TcpStream::connect(target)),
                            Direction::Out => TcpStream::connect(target),
                        };
                        if let Ok(upstream) = upstream {
                            pipe(client, upstream);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let _ = a.set_nonblocking(false);
    for (mut from, mut to) in [(a.try_clone(), b.try_clone()), (b.try_clone(), a.try_clone())]
        .into_iter()
        .filter_map(|(f, t)| Some((f.ok()?, t.ok()?)))
    {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

/// A free address on the host's loopback for a VM's sshd (`127.100.0.0` and up, port 22),
/// and the listener holding it. Runners in other processes may hold some: the first free
/// one from a start that differs per process is taken.
pub fn reserve_ssh_address() -> io::Result<(Ipv4Addr, TcpListener)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SPACE: u32 = 1 << 20;
    let start = std::process::id().wrapping_mul(64);
    for _ in 0..4096 {
        let n = (start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))) % SPACE;
        let address = Ipv4Addr::new(127, 100 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
        match TcpListener::bind((address, 22)) {
            Ok(listener) => return Ok((address, listener)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free loopback address for a VM"))
}

pub fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}
