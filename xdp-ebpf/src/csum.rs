//! Internet checksum arithmetic: incremental updates (RFC 1624) for NAT
//! rewrites and a full sum for the RST we build.

/// Folds a 64-bit one's-complement accumulator to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Adds the big-endian 16-bit words of `bytes` (even length) to `sum`.
#[inline(always)]
pub fn add_words<const N: usize>(mut sum: u64, bytes: &[u8; N]) -> u64 {
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u64;
        i += 2;
    }
    sum
}

/// Adds the one's complement of each word of `bytes`: removes them from a sum.
#[inline(always)]
pub fn sub_words<const N: usize>(mut sum: u64, bytes: &[u8; N]) -> u64 {
    let mut i = 0;
    while i + 1 < N {
        sum += (!u16::from_be_bytes([bytes[i], bytes[i + 1]])) as u64;
        i += 2;
    }
    sum
}

/// RFC 1624 eqn. 3: the checksum `check` after `old` became `new`.
#[inline(always)]
pub fn replace<const N: usize>(check: [u8; 2], old: &[u8; N], new: &[u8; N]) -> [u8; 2] {
    let sum = (!u16::from_be_bytes(check)) as u64;
    let sum = add_words(sub_words(sum, old), new);
    (!fold(sum)).to_be_bytes()
}
