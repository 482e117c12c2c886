//! The shared clock: `CLOCK_MONOTONIC` nanoseconds, identical for every process on the host,
//! so a sender and a receiver in different network namespaces can compute one-way latency.

/// Current `CLOCK_MONOTONIC` time in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported on Linux,
    // so clock_gettime only writes into `ts` and cannot fail.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    // tv_sec and tv_nsec are non-negative for CLOCK_MONOTONIC.
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Sleeps or spins until `monotonic_ns() >= deadline_ns`.
///
/// Sleeps in the kernel while the deadline is more than `spin_ns` away and busy-waits the rest,
/// so the wake-up error is bounded by `spin_ns` plus scheduling noise.
pub fn wait_until(deadline_ns: u64, spin_ns: u64) {
    loop {
        let now = monotonic_ns();
        if now >= deadline_ns {
            return;
        }
        let left = deadline_ns - now;
        if left > spin_ns {
            std::thread::sleep(std::time::Duration::from_nanos(left - spin_ns));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_advances_and_wait_until_reaches_the_deadline() {
        let a = monotonic_ns();
        let deadline = a + 2_000_000;
        wait_until(deadline, 50_000);
        let b = monotonic_ns();
        assert!(b >= deadline, "woke at {b}, before the deadline {deadline}");
        assert!(b > a);
    }
}
