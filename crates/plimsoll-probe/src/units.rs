//! Units in types: a byte count and a process id, so that a size is never mistaken for a count
//! of kibibytes or pages, and a pid never for a size.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// A number of bytes. `Display` shows it for people in binary units (`312.0 MiB`); the exact
/// count is the field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Zero bytes.
    pub const ZERO: Bytes = Bytes(0);

    /// Bytes from a count of kibibytes, the unit of `/proc/PID/status` (saturating: a value
    /// too large for `u64` is `u64::MAX`).
    pub fn from_kib(kib: u64) -> Bytes {
        Bytes(kib.saturating_mul(1024))
    }
}

impl Add for Bytes {
    type Output = Bytes;

    /// Saturating: sums over a process tree never wrap around.
    fn add(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_add(other.0))
    }
}

impl AddAssign for Bytes {
    fn add_assign(&mut self, other: Bytes) {
        *self = *self + other;
    }
}

impl Sum for Bytes {
    fn sum<I: Iterator<Item = Bytes>>(iter: I) -> Bytes {
        iter.fold(Bytes::ZERO, Add::add)
    }
}

impl fmt::Display for Bytes {
    /// `900 B`, `1.5 KiB`, `312.0 MiB`, `2.0 GiB`: powers of 1024, one decimal above bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

/// A process id (the thread-group id, what `ps` shows as PID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub u32);

impl Pid {
    /// The id of the calling process.
    pub fn current() -> Pid {
        Pid(std::process::id())
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u32> for Pid {
    fn from(pid: u32) -> Pid {
        Pid(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_display_in_binary_units() {
        let cases = [
            (0, "0 B"),
            (900, "900 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (312 << 20, "312.0 MiB"),
            (2 << 30, "2.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Bytes(bytes).to_string(), expected);
        }
    }

    #[test]
    fn bytes_arithmetic_saturates() {
        assert_eq!(Bytes::from_kib(4), Bytes(4096));
        assert_eq!(Bytes::from_kib(u64::MAX), Bytes(u64::MAX));
        assert_eq!(Bytes(u64::MAX) + Bytes(1), Bytes(u64::MAX));
        let total: Bytes = [Bytes(1), Bytes(2), Bytes(3)].into_iter().sum();
        assert_eq!(total, Bytes(6));
    }

    #[test]
    fn pid_displays_as_its_number() {
        assert_eq!(Pid(42).to_string(), "42");
        assert_eq!(Pid::current().0, std::process::id());
    }
}
