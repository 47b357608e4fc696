//! The Mobility Header checksum: the 16-bit one's complement of the one's complement sum of
//! the IPv6 pseudo-header (RFC 8200 §8.1; Next Header 135) and the whole Mobility Header
//! (RFC 6275 §6.1.1).

use std::net::Ipv6Addr;

use super::IPPROTO_MH;

/// One's complement sum of `data`, folded to 32 bits (not yet complemented).
fn sum_bytes(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            acc = acc.wrapping_add(u32::from(u16::from_be_bytes([*a, *b])));
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Sum of the pseudo-header for a Mobility Header of `length` octets.
pub fn pseudo_header_sum(src: &Ipv6Addr, dst: &Ipv6Addr, length: u32) -> u32 {
    let mut acc = sum_bytes(0, &src.octets());
    acc = sum_bytes(acc, &dst.octets());
    acc = acc.wrapping_add(length >> 16).wrapping_add(length & 0xffff);
    acc.wrapping_add(u32::from(IPPROTO_MH))
}

/// The checksum of `mh` (its Checksum field must be zero, or the result is the residue used to
/// verify: a valid message sums to zero).
pub fn mh_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, mh: &[u8]) -> u16 {
    let acc = pseudo_header_sum(src, dst, mh.len() as u32);
    !fold(sum_bytes(acc, mh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum_bytes(0, &[1, 2, 3]), sum_bytes(0, &[1, 2, 3, 0]));
    }

    #[test]
    fn a_message_with_its_checksum_sums_to_zero() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut mh = [59u8, 1, 5, 0, 0, 0, 0, 7, 0x82, 0, 0, 10, 1, 2, 0, 0];
        let c = mh_checksum(&src, &dst, &mh);
        mh[4..6].copy_from_slice(&c.to_be_bytes());
        assert_eq!(mh_checksum(&src, &dst, &mh), 0);
    }
}
