//! What a used network namespace holds, read from inside it (netns.py's quiet check):
//! /proc/thread-self/net/{dev,sockstat,sockstat6} and lo's flags. Done on one native
//! thread of ours, which alone ever changes network namespace: it setns()es into the
//! namespace, reads, and goes back home. Python did this on a thread of its own reached
//! through a Future, each check handing the GIL between three threads (~14 futex calls a
//! container, taken from the threads starting containers).

use std::ffi::CStr;
use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender};
use std::sync::Mutex;

use crate::sys;

/// What the namespace showed: dev, sockstat and sockstat6 (empty without IPv6), lo's flags.
pub type Peek = (Vec<u8>, Vec<u8>, Vec<u8>, i32);

/// (what failed, errno).
pub type Failed = (&'static str, i32);

struct Job {
    fd: i32,
    reply: SyncSender<Result<Peek, Failed>>,
}

struct Peeker {
    pid: u32,
    tx: Sender<Job>,
}

static PEEKER: Mutex<Option<Peeker>> = Mutex::new(None);

fn read_file(path: &CStr, missing_ok: bool) -> Result<Vec<u8>, Failed> {
    let fd = match sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0) {
        Ok(fd) => fd,
        Err(libc::ENOENT) if missing_ok => return Ok(Vec::new()),
        Err(e) => return Err(("open", e)),
    };
    let mut out = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(libc::EINTR) => continue,
            Err(e) => {
                sys::close(fd);
                return Err(("read", e));
            }
        }
    }
    sys::close(fd);
    Ok(out)
}

/// Inside the namespace (the calling thread's): the files, then lo's flags. The socket
/// for the ioctl comes last: until it is freed it is one more in the namespace's count.
fn peek_here() -> Result<Peek, Failed> {
    let dev = read_file(c"/proc/thread-self/net/dev", false)?;
    let sockstat = read_file(c"/proc/thread-self/net/sockstat", false)?;
    let sockstat6 = read_file(c"/proc/thread-self/net/sockstat6", true)?;
    let flags = sys::interface_flags(c"lo").map_err(|e| ("SIOCGIFFLAGS", e))?;
    Ok((dev, sockstat, sockstat6, flags))
}

fn serve(home: i32, jobs: std::sync::mpsc::Receiver<Job>) {
    for job in jobs {
        let r = match sys::setns(job.fd, libc::CLONE_NEWNET) {
            Err(e) => Err(("setns", e)),
            Ok(()) => {
                let r = peek_here();
                if let Err(e) = sys::setns(home, libc::CLONE_NEWNET) {
                    // never stay elsewhere: this thread ends, and the next peek starts another
                    let _ = job.reply.send(Err(("setns back", e)));
                    *PEEKER.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    return;
                }
                r
            }
        };
        let _ = job.reply.send(r);
    }
}

/// peek_here() in the namespace `fd` (a descriptor of /proc/PID/ns/net), on the peek thread
/// (started on first use, again in a forked child or after it ended).
pub fn peek(fd: i32) -> Result<Peek, Failed> {
    let (reply, answer) = sync_channel(1);
    {
        let pid = std::process::id();
        let mut p = PEEKER.lock().unwrap_or_else(|e| e.into_inner());
        if p.as_ref().is_none_or(|p| p.pid != pid) {
            // home: the process's namespace, that of its main thread (/proc/self)
            let home = sys::open(c"/proc/self/ns/net", libc::O_RDONLY | libc::O_CLOEXEC, 0).map_err(|e| ("open home", e))?;
            let (tx, rx) = channel::<Job>();
            if std::thread::Builder::new().name("fc-netns-peek".into()).spawn(move || serve(home, rx)).is_err() {
                sys::close(home);
                return Err(("starting the peek thread", libc::EAGAIN));
            }
            *p = Some(Peeker { pid, tx });
        }
        let job = Job { fd, reply };
        if p.as_ref().expect("just set").tx.send(job).is_err() {
            *p = None;
            return Err(("the peek thread ended", libc::EPIPE));
        }
    }
    answer.recv().unwrap_or(Err(("the peek thread ended", libc::EPIPE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_namespace_shows_only_lo_and_no_socket() {
        // a namespace of our own, made on a thread of its own (unshare changes the caller's)
        let fd = std::thread::spawn(|| {
            sys::unshare(libc::CLONE_NEWNET).ok()?;
            sys::open(c"/proc/thread-self/ns/net", libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()
        })
        .join()
        .unwrap();
        let Some(fd) = fd else { return }; // not root: nothing to peek into
        let (dev, sockstat, _, flags) = peek(fd).unwrap();
        sys::close(fd);
        let dev = String::from_utf8(dev).unwrap();
        assert_eq!(dev.lines().count(), 3, "{dev}");
        assert!(dev.lines().nth(2).unwrap().trim_start().starts_with("lo:"));
        assert!(String::from_utf8(sockstat).unwrap().starts_with("sockets: used 0\n"));
        assert_eq!(flags & libc::IFF_UP, 0); // lo starts down
        // a descriptor that is no namespace: setns refuses it, and the thread goes on
        assert_eq!(peek(-1).unwrap_err().0, "setns");
        let own = sys::open(c"/proc/self/ns/net", libc::O_RDONLY | libc::O_CLOEXEC, 0).unwrap();
        assert!(peek(own).is_ok());
        sys::close(own);
    }
}
