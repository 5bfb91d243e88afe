//! Host atomics for memory that several software CPUs share: one host `lock cmpxchg` (or
//! `lock cmpxchg16b`) per guest locked instruction, at any alignment the guest may use,
//! as x86 hosts allow (a split lock is slow but atomic).

use core::arch::asm;

/// Stores the `len` low bytes of `new` at `ptr` if the bytes there equal `old`'s,
/// atomically; returns whether it stored.
///
/// # Safety
///
/// `ptr` must be valid for reads and writes of `len` bytes, which are 1, 2, 4, 8 or 16;
/// for 16 it must be 16-byte aligned. Other threads may access the bytes concurrently
/// only through atomic instructions or plain x86 loads and stores (guest CPUs).
pub unsafe fn compare_exchange(ptr: *mut u8, len: usize, old: u128, new: u128) -> bool {
    let ok: u8;
    // SAFETY: (each arm) the caller guarantees `ptr` is valid for `len` bytes (and
    // aligned for CMPXCHG16B); the instruction touches exactly those bytes.
    unsafe {
        match len {
            1 => asm!("lock cmpxchg byte ptr [{p}], {n}", "sete {ok}",
                p = in(reg) ptr, n = in(reg_byte) new as u8,
                inout("al") old as u8 => _, ok = out(reg_byte) ok, options(nostack)),
            2 => asm!("lock cmpxchg word ptr [{p}], {n:x}", "sete {ok}",
                p = in(reg) ptr, n = in(reg) new as u16,
                inout("ax") old as u16 => _, ok = out(reg_byte) ok, options(nostack)),
            4 => asm!("lock cmpxchg dword ptr [{p}], {n:e}", "sete {ok}",
                p = in(reg) ptr, n = in(reg) new as u32,
                inout("eax") old as u32 => _, ok = out(reg_byte) ok, options(nostack)),
            8 => asm!("lock cmpxchg qword ptr [{p}], {n}", "sete {ok}",
                p = in(reg) ptr, n = in(reg) new as u64,
                inout("rax") old as u64 => _, ok = out(reg_byte) ok, options(nostack)),
            // LLVM reserves RBX: swap the new value's low half in and out around it.
            // XCHG leaves the flags alone, so SETE after swapping back reads
            // CMPXCHG16B's ZF. The pointer and the swapped half get fixed registers:
            // the allocator may otherwise hand out RBX itself (`ok` may still be BL,
            // written last).
            _ => asm!("xchg rsi, rbx", "lock cmpxchg16b xmmword ptr [rdi]",
                "xchg rsi, rbx", "sete {ok}",
                in("rdi") ptr, inout("rsi") new as u64 => _,
                in("rcx") (new >> 64) as u64,
                inout("rax") old as u64 => _, inout("rdx") (old >> 64) as u64 => _,
                ok = out(reg_byte) ok, options(nostack)),
        }
    }
    ok != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_compare_exchange_every_width_stores_only_on_match() {
        #[repr(align(16))]
        struct Buf([u8; 32]);
        let mut buf = Buf([0; 32]);
        for len in [1, 2, 4, 8, 16] {
            let ptr = buf.0.as_mut_ptr();
            // SAFETY: 32 bytes, 16-byte aligned.
            unsafe {
                assert!(compare_exchange(ptr, len, 0, u128::MAX));
                assert!(!compare_exchange(ptr, len, 0, 5));
                assert!(compare_exchange(ptr, len, u128::MAX >> (128 - 8 * len), 0));
            }
            assert!(buf.0[..len].iter().all(|&b| b == 0));
            assert_eq!(buf.0[len], 0, "nothing past {len} bytes");
        }
        // Unaligned, as a guest's split lock.
        // SAFETY: bytes 3..11 are inside the buffer.
        unsafe { assert!(compare_exchange(buf.0.as_mut_ptr().add(3), 8, 0, 0x1122)) };
        assert_eq!(&buf.0[3..5], &[0x22, 0x11]);
    }
}
