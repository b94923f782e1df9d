//! (Temporary API stand-in while the bounded caches are written in another branch.)

/// What clearing caches dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClearReport {
    /// Caches cleared.
    pub caches: usize,
    /// Entries dropped.
    pub entries: u64,
    /// Bytes dropped (by the caches' weighers).
    pub bytes: u64,
}

/// One cache's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    pub name: String,
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub max_entries: u64,
    pub hits: u64,
    pub misses: u64,
}

/// The registered caches.
#[derive(Debug, Clone, Default)]
pub struct CacheRegistry {}

impl CacheRegistry {
    pub fn new() -> CacheRegistry {
        CacheRegistry {}
    }
    pub fn clear_all(&self) -> ClearReport {
        ClearReport::default()
    }
    pub fn shrink_all(&self, _fraction: f64) -> ClearReport {
        ClearReport::default()
    }
    pub fn stats(&self) -> Vec<CacheStats> {
        Vec::new()
    }
}
