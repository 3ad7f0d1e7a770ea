//! Asks the kernel's scheduler to run the writer thread as soon as it is woken. Every write and
//! every read's audit record waits for that thread, which sleeps between batches; when the CPUs
//! are busy (the async workers, the load itself, any other process), a woken thread that asks
//! for nothing may wait for another's whole time slice (about 1.4 ms on a 2-CPU machine) before
//! it runs, and every request it holds waits with it. Linux 6.12 and later let a thread of the
//! ordinary policy ask for a shorter slice: the scheduler then runs it sooner when it wakes, in
//! shorter turns, with no more CPU than before. It needs no privilege, and nothing else about
//! the thread (policy, nice value) changes. An older kernel accepts the request and keeps its
//! own slice; other systems are not asked.
//!
//! Measured with `scripts/profile find` (audited finds, each waiting for its record's commit),
//! alternating builds: 64,000 and 64,900 finds/s against 55,900-57,300 in two of three pairs
//! (the third even), and 45,700-50,300 against 32,400-33,200 while a busy loop kept a CPU
//! busy; sets, creates and lists, which wait on the disk or the readers more than on the
//! writer's wake-up, did not change beyond the noise.

use std::time::Duration;

/// The writer's time slice.
pub const WRITER_SLICE: Duration = Duration::from_micros(100);

/// Asks for `slice` as the calling thread's time slice, keeping its policy and nice value; a
/// thread under another policy than the ordinary one (set by an operator) is left alone.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn ask_for_slice(slice: Duration) -> std::io::Result<()> {
    let size = std::mem::size_of::<libc::sched_attr>();
    // SAFETY: zero is a valid value of every field of this plain C struct.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most `size` bytes (the size passed) into `attr`, which is
    // that large and lives until the call returns; pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            std::ptr::addr_of_mut!(attr),
            size as libc::c_uint,
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if attr.sched_policy != libc::SCHED_OTHER as u32 {
        return Ok(());
    }
    attr.size = size as u32;
    attr.sched_flags = 0;
    attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: the kernel reads `attr.size` bytes of `attr`, which is that large and lives until
    // the call returns; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, std::ptr::addr_of!(attr), 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn ask_for_slice(_slice: Duration) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The slice a thread's `sched` file in /proc shows, in nanoseconds.
    fn slice_in(sched: &str) -> Option<u64> {
        let line = sched.lines().find(|line| line.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    /// Whether this kernel keeps a slice a thread asks for (Linux 6.12 and later).
    fn custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("/proc");
        let mut numbers = release
            .split(['.', '-'])
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let major = numbers.next().unwrap_or(0);
        let minor = numbers.next().unwrap_or(0);
        (major, minor) >= (6, 12)
    }

    #[test]
    fn a_thread_gets_the_slice_it_asks_for_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // A nice value of its own (raising it needs no privilege), which the call keeps.
            rustix::process::setpriority_process(None, 5).expect("nice 5");
            ask_for_slice(Duration::from_micros(300)).expect("sched_setattr");
            assert_eq!(rustix::process::getpriority_process(None).expect("nice"), 5);
            if custom_slices() {
                let sched = std::fs::read_to_string("/proc/thread-self/sched").expect("/proc");
                assert_eq!(slice_in(&sched), Some(300_000));
            }
        })
        .join()
        .expect("the thread");
    }

    /// The slice of every `sqlite-writer` thread of this process, in nanoseconds.
    fn writer_slices() -> Vec<Option<u64>> {
        let tasks = std::fs::read_dir("/proc/self/task").expect("/proc");
        tasks
            .map(|task| task.expect("a task").path())
            .filter(|task| {
                std::fs::read_to_string(task.join("comm"))
                    .is_ok_and(|comm| comm.trim() == "sqlite-writer")
            })
            .filter_map(|task| std::fs::read_to_string(task.join("sched")).ok())
            .map(|sched| slice_in(&sched))
            .collect()
    }

    #[test]
    fn the_writer_thread_runs_with_its_short_slice() {
        if !custom_slices() {
            return;
        }
        let tmp = crate::tests::private_tempdir();
        let store =
            crate::SqliteStore::open(tmp.path(), crate::SqliteOptions::default()).expect("open");
        let wanted = u64::try_from(WRITER_SLICE.as_nanos()).ok();
        // Other tests of this process may be starting writers of their own, which ask for it
        // a moment after they start.
        let began = std::time::Instant::now();
        loop {
            let slices = writer_slices();
            if !slices.is_empty() && slices.iter().all(|&slice| slice == wanted) {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "writer slices {slices:?}, wanted {wanted:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(store);
    }
}
