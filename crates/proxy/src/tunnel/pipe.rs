//! The pipe a tunnel's bytes go through with splice(2), socket → pipe → socket, never
//! entering user space.
//!
//! Pipes are reused across connections: making a pipe and closing it costs five
//! syscalls, a good part of a short tunnel's. A pipe knows how many bytes it holds and
//! goes back to the pool only when that is zero (a tunnel that ends early closes its
//! pipes), so no byte of one connection can reach another. A pipe that fills in one
//! splice is carrying a bulk transfer and is grown (up to 1 MiB), so that each splice
//! moves more; grown pipes are closed, not pooled.

#![cfg(target_os = "linux")]

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::net::TcpStream;

/// Pipe size for bulk transfers (Linux's default `pipe-max-size`).
const BULK_CAPACITY: usize = 1024 * 1024;

/// Idle pipes kept for reuse (two descriptors each).
const MAX_POOLED: usize = 256;

/// Empty pipes of the default size, ready for the next tunnel.
static POOL: Mutex<Vec<(OwnedFd, OwnedFd, usize)>> = Mutex::new(Vec::new());

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

pub struct Pipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
    capacity: usize,
    /// Bytes in the pipe: spliced in, not yet spliced out.
    held: usize,
    grown: bool,
}

impl Pipe {
    /// A pipe from the pool, or a new one.
    pub fn take() -> io::Result<Pipe> {
        let pooled = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (read_end, write_end, capacity) = match pooled {
            Some(pipe) => pipe,
            None => {
                let (read_end, write_end) =
                    nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
                let capacity = fcntl(&read_end, FcntlArg::F_GETPIPE_SZ)?;
                (
                    read_end,
                    write_end,
                    usize::try_from(capacity).unwrap_or(4096),
                )
            }
        };
        Ok(Pipe {
            read_end,
            write_end,
            capacity,
            held: 0,
            grown: false,
        })
    }

    /// Bytes in the pipe.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Splice from `socket` into the (empty) pipe, as much as it holds; `Ok(0)` is the
    /// end of the stream. A pipe filled in one go is grown for the next.
    pub fn fill(&mut self, socket: &TcpStream) -> io::Result<usize> {
        debug_assert_eq!(self.held, 0, "fill only an empty pipe");
        let read = splice(socket, None, &self.write_end, None, self.capacity, FLAGS)?;
        self.held = read;
        if read == self.capacity && !self.grown {
            self.grow();
        }
        Ok(read)
    }

    /// Splice what the pipe holds into `socket`; returns the bytes moved.
    pub fn drain(&mut self, socket: &TcpStream) -> io::Result<usize> {
        let written = splice(&self.read_end, None, socket, None, self.held, FLAGS)?;
        self.held -= written;
        Ok(written)
    }

    fn grow(&mut self) {
        self.grown = true;
        let size = i32::try_from(BULK_CAPACITY).unwrap_or(i32::MAX);
        // Refused (pipe-max-size, or the user's pipe-buffer limit): keep the size it has.
        if let Ok(capacity) = fcntl(&self.write_end, FcntlArg::F_SETPIPE_SZ(size)) {
            self.capacity = usize::try_from(capacity).unwrap_or(self.capacity);
        }
    }

    /// Back to the pool when it is empty and of the default size; otherwise closed. A
    /// pipe dropped without this (a relay cut short) is closed, whatever it holds.
    pub fn recycle(self) {
        if self.held != 0 || self.grown {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_POOLED {
            pool.push((self.read_end, self.write_end, self.capacity));
        }
    }
}
