//! A small seeded pseudo-random generator (SplitMix64), so a run can be repeated from the seed
//! it prints: the same kill delays, the same operation sequence per client, the same payloads.
//! Statistical quality is ample for choosing operations; nothing here is used for secrecy.

/// SplitMix64: one 64-bit state, one multiply-xorshift output function.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed for runs not given one: the clock's nanoseconds (printed, so the run can be
    /// repeated).
    pub fn clock_seed() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }

    /// An independent stream for one part of a run (a client, a cycle): mixing the labels into
    /// the seed keeps streams apart even for neighbouring labels.
    pub fn derive(seed: u64, labels: &[u64]) -> Self {
        let mut rng = Self::new(seed);
        for label in labels {
            rng = Self::new(rng.next_u64() ^ label.wrapping_mul(0xA076_1D64_78BD_642F));
        }
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0). The modulo bias is below 2^-40 for the small n used here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A payload of `1..=max_chars` characters drawn from ASCII, characters the form encoding
    /// must escape, and multi-byte UTF-8, so a payload that comes back byte-identical shows the
    /// whole path (encoding, sealing, storage, opening) kept it exact.
    pub fn payload(&mut self, prefix: &str, max_chars: u64) -> String {
        const ALPHABET: &[char] = &[
            'a',
            'b',
            'c',
            'x',
            'y',
            'z',
            'A',
            'Q',
            'Z',
            '0',
            '7',
            '9',
            '-',
            '_',
            '.',
            ' ',
            '&',
            '=',
            '+',
            '%',
            '[',
            ']',
            '\'',
            '"',
            'é',
            'ß',
            '字',
            '😀',
            '\u{1F510}',
        ];
        let len = self.between(1, max_chars);
        let mut out = String::with_capacity(prefix.len() + len as usize * 2);
        out.push_str(prefix);
        for _ in 0..len {
            out.push(ALPHABET[self.below(ALPHABET.len() as u64) as usize]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_labels_separate_streams() {
        let mut a = Rng::derive(42, &[1, 2]);
        let mut b = Rng::derive(42, &[1, 2]);
        let mut c = Rng::derive(42, &[2, 1]);
        let a: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let b: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let c: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn between_stays_in_bounds() {
        let mut rng = Rng::new(7);
        for _ in 0..10_000 {
            let v = rng.between(200, 1500);
            assert!((200..=1500).contains(&v));
        }
    }

    #[test]
    fn payloads_are_non_empty_and_bounded() {
        let mut rng = Rng::new(9);
        for _ in 0..1000 {
            let p = rng.payload("", 50);
            let n = p.chars().count();
            assert!((1..=50).contains(&n), "{n}");
        }
    }
}
