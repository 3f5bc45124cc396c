//! The randomness a connection uses: mask keys (§5.3) and the handshake key (§4.1).

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};

/// A source of random bytes for a connection. The default,
/// [`OsSeededRng`], is a CSPRNG seeded from the operating system; tests
/// inject a deterministic one.
pub trait Random: Send + 'static {
    /// Fills `dst` with random bytes.
    fn fill(&mut self, dst: &mut [u8]);

    /// A random 4-byte masking key.
    fn mask_key(&mut self) -> [u8; 4] {
        let mut k = [0u8; 4];
        self.fill(&mut k);
        k
    }
}

/// ChaCha12 seeded from the operating system's entropy once per connection.
pub struct OsSeededRng(ChaCha12Rng);

impl OsSeededRng {
    /// Seeds a new generator from the operating system.
    #[must_use]
    pub fn new() -> Self {
        OsSeededRng(ChaCha12Rng::from_os_rng())
    }

    /// A generator with a fixed seed: deterministic, for tests and fuzzing only.
    #[must_use]
    pub fn from_seed(seed: [u8; 32]) -> Self {
        OsSeededRng(ChaCha12Rng::from_seed(seed))
    }
}

impl Default for OsSeededRng {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for OsSeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OsSeededRng")
    }
}

impl Random for OsSeededRng {
    fn fill(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }

    fn mask_key(&mut self) -> [u8; 4] {
        self.0.next_u32().to_ne_bytes()
    }
}
