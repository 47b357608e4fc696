//! The anti-replay window of an inbound SA (RFC 4303 §3.4.3) and, with Extended Sequence
//! Numbers, the inference of the high-order 32 bits the sender does not transmit (RFC 4303
//! Appendix A2.2).
//!
//! Order of the checks, as RFC 4303 §3.4.3 asks: [`ReplayWindow::check`] before the ICV is
//! verified (a cheap rejection of duplicates and of packets left of the window), then
//! [`ReplayWindow::accept`] only after the ICV verified, so a forged packet never moves the
//! window.

/// Smallest window RFC 4303 §3.4.3 allows ("a minimum window size of 32 packets MUST be
/// supported").
pub const MIN_WINDOW: u32 = 32;
/// The default RFC 4303 §3.4.3 recommends ("a window size of 64 SHOULD be the default").
pub const DEFAULT_WINDOW: u32 = 64;
/// Largest window this implementation keeps (a 1024-bit map).
pub const MAX_WINDOW: u32 = 1024;

const WORDS: usize = (MAX_WINDOW / 64) as usize;

/// Why a sequence number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    /// Already received (and authenticated) on this SA.
    #[error("sequence number {0} was already received")]
    Duplicate(u64),
    /// Left of the window: too old to tell.
    #[error("sequence number {0} is left of the anti-replay window")]
    Old(u64),
    /// Zero, which no sender uses (the first packet of an SA carries 1, RFC 4303 §3.3.3), or,
    /// with ESN, a value beyond the 64-bit counter.
    #[error("sequence number is outside the counter's range")]
    OutOfRange,
}

/// A sliding window over the 64-bit sequence number space of one inbound SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The right edge: the highest authenticated sequence number (0: none yet).
    top: u64,
    size: u32,
    esn: bool,
    /// Bit `s % MAX_WINDOW` is set when `s` (within the window) was received.
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// A window of `size` packets (clamped to `MIN_WINDOW..=MAX_WINDOW`); `esn` when the SA
    /// uses 64-bit Extended Sequence Numbers (RFC 4303 §2.2.1).
    pub fn new(size: u32, esn: bool) -> Self {
        ReplayWindow {
            top: 0,
            size: size.clamp(MIN_WINDOW, MAX_WINDOW),
            esn,
            bits: [0; WORDS],
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether the SA uses Extended Sequence Numbers.
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// The highest authenticated sequence number.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Moves the right edge to at least `top` (a value restored after a restart) without
    /// marking anything received.
    pub fn restore(&mut self, top: u64) {
        if top > self.top {
            self.advance(top);
        }
    }

    /// The full sequence number of a packet carrying `low` in its header, if it may be new.
    pub fn check(&self, low: u32) -> Result<u64, Replay> {
        let seq = if self.esn {
            self.infer_esn(low)?
        } else {
            u64::from(low)
        };
        if seq == 0 {
            return Err(Replay::OutOfRange);
        }
        if seq > self.top {
            return Ok(seq);
        }
        if self.top - seq >= u64::from(self.size) {
            return Err(Replay::Old(seq));
        }
        if self.is_set(seq) {
            return Err(Replay::Duplicate(seq));
        }
        Ok(seq)
    }

    /// Records `seq` (from [`ReplayWindow::check`]) once its packet's ICV verified.
    pub fn accept(&mut self, seq: u64) {
        if seq > self.top {
            self.advance(seq);
        }
        if self.top - seq < u64::from(self.size) {
            let bit = seq % u64::from(MAX_WINDOW);
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn is_set(&self, seq: u64) -> bool {
        let bit = seq % u64::from(MAX_WINDOW);
        self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// Moves the right edge to `to`, clearing the bits of the sequence numbers it passes.
    fn advance(&mut self, to: u64) {
        let step = to - self.top;
        if step >= u64::from(MAX_WINDOW) {
            self.bits = [0; WORDS];
        } else {
            for s in self.top + 1..=to {
                let bit = s % u64::from(MAX_WINDOW);
                self.bits[(bit / 64) as usize] &= !(1 << (bit % 64));
            }
        }
        self.top = to;
    }

    /// RFC 4303 Appendix A2.2: the high-order bits (Seqh) of a packet whose low-order bits
    /// are `low`, from the window's right edge T = (Th, Tl) and size W.
    fn infer_esn(&self, low: u32) -> Result<u64, Replay> {
        let th = (self.top >> 32) as u32;
        let tl = self.top as u32;
        let w = self.size;
        // Bl = Tl - W + 1, modulo 2^32 (in Case B it wraps below zero).
        let bl = tl.wrapping_sub(w).wrapping_add(1);
        let high = if tl >= w - 1 {
            // Case A: the window lies within one subspace.
            if low >= bl {
                Some(th)
            } else {
                th.checked_add(1)
            }
        } else {
            // Case B: the window spans two subspaces.
            if low >= bl {
                th.checked_sub(1)
            } else {
                Some(th)
            }
        };
        let high = high.ok_or(Replay::OutOfRange)?;
        Ok((u64::from(high) << 32) | u64::from(low))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(w: &mut ReplayWindow, low: u32) -> Result<u64, Replay> {
        let s = w.check(low)?;
        w.accept(s);
        Ok(s)
    }

    #[test]
    fn in_order_then_duplicates_are_refused() {
        let mut w = ReplayWindow::new(64, false);
        for s in 1..=100 {
            assert_eq!(recv(&mut w, s), Ok(u64::from(s)));
        }
        assert_eq!(recv(&mut w, 100), Err(Replay::Duplicate(100)));
        // The window is [T - W + 1, T] = [37, 100].
        assert_eq!(recv(&mut w, 37), Err(Replay::Duplicate(37)));
        assert_eq!(recv(&mut w, 36), Err(Replay::Old(36)));
        assert_eq!(recv(&mut w, 0), Err(Replay::OutOfRange));
    }

    #[test]
    fn reordering_within_the_window_is_accepted_once() {
        let mut w = ReplayWindow::new(64, false);
        assert_eq!(recv(&mut w, 10), Ok(10));
        assert_eq!(recv(&mut w, 5), Ok(5));
        assert_eq!(recv(&mut w, 5), Err(Replay::Duplicate(5)));
        assert_eq!(recv(&mut w, 73), Ok(73));
        // 73 - 64 = 9 is the last sequence number left of the window.
        assert_eq!(recv(&mut w, 9), Err(Replay::Old(9)));
        assert_eq!(recv(&mut w, 10), Err(Replay::Duplicate(10)));
        assert_eq!(recv(&mut w, 11), Ok(11));
    }

    #[test]
    fn check_alone_never_moves_the_window() {
        let mut w = ReplayWindow::new(32, false);
        assert_eq!(w.check(1000), Ok(1000));
        assert_eq!(w.top(), 0);
        assert_eq!(recv(&mut w, 1), Ok(1));
    }

    #[test]
    fn a_jump_clears_the_bits_it_passes() {
        let mut w = ReplayWindow::new(64, false);
        for s in 1..=64 {
            recv(&mut w, s).unwrap();
        }
        // Jump by exactly MAX_WINDOW: sequence numbers whose bits alias old ones must be new.
        let far = 64 + MAX_WINDOW;
        assert_eq!(recv(&mut w, far), Ok(u64::from(far)));
        assert_eq!(recv(&mut w, far - 1), Ok(u64::from(far - 1)));
        // And a jump shorter than the bitmap.
        assert_eq!(recv(&mut w, far + 100), Ok(u64::from(far + 100)));
        assert_eq!(recv(&mut w, far + 99), Ok(u64::from(far + 99)));
        assert_eq!(
            recv(&mut w, far + 100),
            Err(Replay::Duplicate(u64::from(far + 100)))
        );
    }

    #[test]
    fn window_size_is_clamped_to_the_rfc_minimum() {
        assert_eq!(ReplayWindow::new(1, false).size(), MIN_WINDOW);
        assert_eq!(ReplayWindow::new(1 << 20, false).size(), MAX_WINDOW);
    }

    #[test]
    fn esn_case_a_infers_the_next_subspace() {
        let mut w = ReplayWindow::new(64, true);
        w.restore(0x0000_0001_ffff_fff0);
        // Right of T within the subspace.
        assert_eq!(w.check(0xffff_fff8), Ok(0x0000_0001_ffff_fff8));
        // Within the window, left of T.
        assert_eq!(w.check(0xffff_ffc0), Ok(0x0000_0001_ffff_ffc0));
        // Below Bl: the low bits wrapped, so the packet belongs to the next subspace.
        assert_eq!(w.check(3), Ok(0x0000_0002_0000_0003));
        recv(&mut w, 3).unwrap();
        assert_eq!(w.top(), 0x0000_0002_0000_0003);
    }

    #[test]
    fn esn_case_b_infers_the_previous_subspace() {
        let mut w = ReplayWindow::new(64, true);
        w.restore(0x0000_0002_0000_0010);
        // Tl < W - 1: a low value above Bl (which wrapped) is from the previous subspace.
        assert_eq!(w.check(0xffff_fff0), Ok(0x0000_0001_ffff_fff0));
        assert_eq!(w.check(0x11), Ok(0x0000_0002_0000_0011));
        // Below Bl in the previous subspace reads as Th (far ahead): A2.2 cannot tell the two
        // apart, and the ICV computed with the wrong high bits then fails (RFC 4303 A2.2).
        assert_eq!(w.check(0xffff_ffd0), Ok(0x0000_0002_ffff_ffd0));
    }

    #[test]
    fn esn_at_the_start_has_no_previous_subspace() {
        let w = ReplayWindow::new(64, true);
        // T = 0 is Case B with Th = 0: a high low value would be in subspace -1.
        assert_eq!(w.check(0xffff_fff0), Err(Replay::OutOfRange));
        assert_eq!(w.check(1), Ok(1));
    }

    #[test]
    fn without_esn_a_restored_edge_refuses_what_came_before() {
        let mut w = ReplayWindow::new(64, false);
        w.restore(500);
        assert_eq!(w.check(400), Err(Replay::Old(400)));
        assert_eq!(w.check(480), Ok(480));
        w.restore(10);
        assert_eq!(w.top(), 500, "restore never moves the edge back");
    }
}
