//! Cache throughput against moka and quick_cache (filled in below).
fn main() {}
