//! What a benchmark is compared with, measured by `ringmq bench --reference`
//! in the same run: a loopback TCP stream (what iperf3 measures: one
//! connection, 128 KiB writes, the receiver discards) and 4 KiB appends each
//! followed by an fdatasync (what `fio --rw=write --bs=4k --fdatasync=1`
//! measures) on the file system of a given directory. Also the CPU time of
//! this process and of a local server, for CPU per GB.

use hdrhistogram::Histogram;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes per write of the loopback stream (iperf3's default for TCP).
pub const STREAM_WRITE_BYTES: usize = 128 * 1024;
/// How long the loopback stream runs.
pub const STREAM_DURATION: Duration = Duration::from_secs(3);
/// Bytes per append of the fdatasync test (fio's `--bs=4k`).
pub const SYNC_WRITE_BYTES: usize = 4096;
/// How long the fdatasync test runs.
pub const SYNC_DURATION: Duration = Duration::from_secs(3);
/// Largest fdatasync latency recorded, in microseconds.
const SYNC_LATENCY_US_MAX: u64 = 60_000_000;

/// The references of one run.
#[derive(Debug, Clone)]
pub struct References {
    /// Loopback TCP, one stream: bytes received per second.
    pub loopback_bytes_per_sec: f64,
    /// 4 KiB append + fdatasync, microseconds.
    pub fdatasync_p50_us: u64,
    pub fdatasync_p99_us: u64,
}

/// Measures both references; the fdatasync test writes a scratch file in `dir`.
pub fn measure(dir: &Path) -> io::Result<References> {
    let loopback_bytes_per_sec = loopback_stream(STREAM_DURATION)?;
    let latency = fdatasync_latency(dir, SYNC_DURATION)?;
    Ok(References {
        loopback_bytes_per_sec,
        fdatasync_p50_us: latency.value_at_quantile(0.5),
        fdatasync_p99_us: latency.value_at_quantile(0.99),
    })
}

/// One TCP stream over loopback for `duration`: a thread receives and
/// discards, this thread writes. Returns the bytes per second received.
pub fn loopback_stream(duration: Duration) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> io::Result<(u64, Duration)> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; STREAM_WRITE_BYTES * 8];
        let (mut received, start) = (0u64, Instant::now());
        loop {
            match stream.read(&mut buffer)? {
                0 => return Ok((received, start.elapsed())),
                n => received += n as u64,
            }
        }
    });
    let mut stream = TcpStream::connect(address)?;
    let chunk = vec![0x5au8; STREAM_WRITE_BYTES];
    let start = Instant::now();
    while start.elapsed() < duration {
        stream.write_all(&chunk)?;
    }
    drop(stream);
    let (received, took) = receiver.join().map_err(|_| io::Error::other("the receiving thread panicked"))??;
    Ok(received as f64 / took.as_secs_f64().max(1e-9))
}

/// Appends 4 KiB and fdatasyncs, again and again for `duration`, in a fresh
/// file in `dir` (removed after). Returns the latency of each append + sync.
pub fn fdatasync_latency(dir: &Path, duration: Duration) -> io::Result<Histogram<u64>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".ringmq-reference-{}", std::process::id()));
    let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    let mut latency = Histogram::new_with_bounds(1, SYNC_LATENCY_US_MAX, 3)
        .map_err(|e| io::Error::other(format!("histogram: {e}")))?;
    let block = vec![0xa5u8; SYNC_WRITE_BYTES];
    let (start, mut position) = (Instant::now(), 0u64);
    let result = (|| {
        while start.elapsed() < duration {
            let began = Instant::now();
            file.write_all_at(&block, position)?;
            file.sync_data()?;
            let _ = latency.record((began.elapsed().as_micros() as u64).clamp(1, SYNC_LATENCY_US_MAX));
            position += SYNC_WRITE_BYTES as u64;
        }
        Ok::<(), io::Error>(())
    })();
    let _ = std::fs::remove_file(&path);
    result.map(|()| latency)
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds_self() -> f64 {
    // SAFETY: getrusage fills a plain struct we own; RUSAGE_SELF is valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds (user + system) of the local process listening on TCP `port`,
/// found through /proc; `None` when it is not on this machine or not visible.
pub fn cpu_seconds_of_listener(port: u16) -> Option<f64> {
    let inode = listening_inode(port)?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        let owns =
            fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target.as_str()));
        if owns {
            return cpu_seconds_of(pid);
        }
    }
    None
}

/// The socket inode listening on 127.0.0.1 or 0.0.0.0 `port` (/proc/net/tcp).
fn listening_inode(port: u16) -> Option<String> {
    const LISTEN_STATE: &str = "0A";
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        (local_port == port && *state == LISTEN_STATE).then(|| (*inode).to_owned())
    })
}

/// utime + stime of a process, from /proc/PID/stat (fields 14 and 15, in
/// clock ticks).
fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / per_second.max(1) as f64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_references_measure_something() {
        let stream = loopback_stream(Duration::from_millis(200)).unwrap();
        assert!(stream > 1e6, "loopback {stream} B/s");
        let dir = std::env::temp_dir().join(format!("ringmq-reference-test-{}", std::process::id()));
        let latency = fdatasync_latency(&dir, Duration::from_millis(100)).unwrap();
        assert!(!latency.is_empty() && latency.value_at_quantile(0.5) > 0);
        let _ = std::fs::remove_dir_all(&dir);
        let busy = Instant::now();
        while busy.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(busy.elapsed());
        }
        assert!(cpu_seconds_self() > 0.0);
        assert!(cpu_seconds_of(std::process::id()).is_some());
    }

    #[test]
    fn a_local_listener_is_found_and_a_free_port_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(cpu_seconds_of_listener(port).is_some());
        drop(listener);
        assert!(cpu_seconds_of_listener(port).is_none());
    }
}
