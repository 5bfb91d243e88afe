//! Locked read-modify-write: each form matches the host CPU (differential), and two
//! software CPUs on two host threads, sharing memory through host atomics, never lose
//! an update: counters, XADD tickets and a CMPXCHG spinlock guarding a plain increment.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod oracle;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use gasang_softcpu::{Access, Cpu, CpuState, Exception, FlatMemory, Memory, MemoryFault};
use iced_x86::code_asm::*;
use oracle::{aligned, asm, check, Emit, ALL, NO_AF};

#[test]
fn test_diff_locked_forms() {
    let forms: &[(&str, Emit, u64)] = &[
        ("lock add", |a| a.lock().add(dword_ptr(rsi), eax), ALL),
        ("lock adc", |a| a.lock().adc(qword_ptr(rsi + 8), rcx), ALL),
        ("lock sub", |a| a.lock().sub(word_ptr(rsi + 2), dx), ALL),
        ("lock sbb", |a| a.lock().sbb(byte_ptr(rsi + 1), bl), ALL),
        ("lock and", |a| a.lock().and(qword_ptr(rsi), rax), NO_AF),
        (
            "lock or imm",
            |a| a.lock().or(dword_ptr(rsi + 4), 0x1234),
            NO_AF,
        ),
        ("lock xor", |a| a.lock().xor(qword_ptr(rsi + 3), rdx), NO_AF),
        ("lock inc", |a| a.lock().inc(qword_ptr(rsi)), ALL & !1),
        ("lock dec", |a| a.lock().dec(dword_ptr(rsi)), ALL & !1),
        ("lock neg", |a| a.lock().neg(word_ptr(rsi)), ALL),
        ("lock not", |a| a.lock().not(qword_ptr(rsi)), 0),
        ("lock xadd", |a| a.lock().xadd(qword_ptr(rsi), rcx), ALL),
        (
            "lock cmpxchg",
            |a| a.lock().cmpxchg(dword_ptr(rsi), ecx),
            ALL,
        ),
        (
            "lock cmpxchg eq",
            |a| {
                a.mov(rax, qword_ptr(rsi))?;
                a.lock().cmpxchg(qword_ptr(rsi), rcx)
            },
            ALL,
        ),
        (
            "lock bts reg",
            |a| a.lock().bts(qword_ptr(rsi + 64), rax),
            1,
        ),
        ("lock btr imm", |a| a.lock().btr(dword_ptr(rsi), 13), 1),
        ("lock btc reg", |a| a.lock().btc(word_ptr(rsi + 64), cx), 1),
        ("xchg mem", |a| a.xchg(qword_ptr(rsi), rbx), ALL),
        (
            "lock cmpxchg8b",
            |a| a.lock().cmpxchg8b(qword_ptr(rsi)),
            0x40,
        ),
        (
            "lock cmpxchg8b eq",
            |a| {
                a.mov(eax, dword_ptr(rsi))?;
                a.mov(edx, dword_ptr(rsi + 4))?;
                a.lock().cmpxchg8b(qword_ptr(rsi))
            },
            0x40,
        ),
        (
            "lock cmpxchg16b",
            |a| a.lock().cmpxchg16b(xmmword_ptr(rsi)),
            0x40,
        ),
        (
            "lock cmpxchg16b eq",
            |a| {
                a.mov(rax, qword_ptr(rsi))?;
                a.mov(rdx, qword_ptr(rsi + 8))?;
                a.lock().cmpxchg16b(xmmword_ptr(rsi))
            },
            0x40,
        ),
    ];
    for (i, (name, op, flags)) in forms.iter().enumerate() {
        // Bit-string offsets stay inside the buffer: RAX/RCX are reduced first.
        let code = aligned(|a| {
            a.and(rax, 0x1ff)?;
            a.and(rcx, 0x1ff)?;
            Ok(())
        });
        let mut code = code;
        code.extend(asm(*op));
        check(name, &code, *flags, 3000 + i as u64);
    }
}

#[test]
fn test_soft_lock_on_register_or_unlockable_is_ud_and_cmpxchg16b_misaligned_is_gp() {
    let cases: [(Vec<u8>, Exception); 3] = [
        (vec![0xf0, 0x01, 0xc0], Exception::InvalidOpcode), // lock add eax, eax
        (vec![0xf0, 0x8b, 0x07], Exception::InvalidOpcode), // lock mov eax, [rdi]
        (
            asm(|a| a.lock().cmpxchg16b(xmmword_ptr(rdi + 8))),
            Exception::GeneralProtection(0),
        ),
    ];
    for (code, expected) in cases {
        let mut mem = FlatMemory::new();
        mem.map(0x40_0000, code.clone());
        mem.map(0x1000, vec![0; 64]);
        let mut state = CpuState::long_mode(0x40_0000);
        state.gpr[7] = 0x1000;
        let mut cpu = Cpu::new(state.clone());
        assert_eq!(cpu.step(&mut mem), Err(expected), "{code:x?}");
        assert_eq!(cpu.state, state);
    }
}

/// Code private to each CPU, data shared by all through host atomics.
struct Shared {
    code: Vec<u8>,
    data: Arc<Vec<AtomicU8>>,
}

const CODE: u64 = 0x40_0000;
const DATA: u64 = 0x10_0000;

impl Shared {
    fn data_offset(&self, addr: u64, len: usize, access: Access) -> Result<usize, MemoryFault> {
        let off = addr.wrapping_sub(DATA) as usize;
        if addr < DATA || off + len > self.data.len() {
            return Err(MemoryFault::new(addr, access));
        }
        Ok(off)
    }
}

impl Memory for Shared {
    fn read(&mut self, addr: u64, buf: &mut [u8], access: Access) -> Result<(), MemoryFault> {
        if (CODE..CODE + self.code.len() as u64).contains(&addr) {
            let off = (addr - CODE) as usize;
            let n = buf.len().min(self.code.len() - off);
            buf[..n].copy_from_slice(&self.code[off..off + n]);
            return if n == buf.len() {
                Ok(())
            } else {
                Err(MemoryFault::new(addr + n as u64, access))
            };
        }
        let off = self.data_offset(addr, buf.len(), access)?;
        for (b, cell) in buf.iter_mut().zip(&self.data[off..]) {
            *b = cell.load(Ordering::Relaxed);
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        let off = self.data_offset(addr, buf.len(), Access::Write)?;
        for (b, cell) in buf.iter().zip(&self.data[off..]) {
            cell.store(*b, Ordering::Relaxed);
        }
        Ok(())
    }

    fn compare_exchange(
        &mut self,
        addr: u64,
        len: usize,
        old: u128,
        new: u128,
    ) -> Result<bool, MemoryFault> {
        let off = self.data_offset(addr, len, Access::Write)?;
        let ptr = self.data[off].as_ptr();
        // SAFETY: `off..off + len` is inside the shared buffer (checked above), which
        // outlives this call; other threads touch it only atomically.
        Ok(unsafe { gasang_softcpu::atomic::compare_exchange(ptr, len, old, new) })
    }
}

/// `rounds` rounds of contended updates. RDI: shared data. [rdi]: LOCK INC counter;
/// [rdi+8]: XADD tickets; [rdi+16]: a spinlock taken with LOCK CMPXCHG; [rdi+24]: a
/// plain INC it guards.
fn contended_rounds(a: &mut CodeAssembler, rounds: i32) -> Result<(), IcedError> {
    let mut top = a.create_label();
    let mut spin = a.create_label();
    a.mov(r8d, rounds as u32)?;
    a.set_label(&mut top)?;
    a.lock().inc(qword_ptr(rdi))?;
    a.mov(eax, 1)?;
    a.lock().xadd(qword_ptr(rdi + 8), rax)?;
    a.set_label(&mut spin)?;
    a.xor(eax, eax)?;
    a.mov(ecx, 1)?;
    a.lock().cmpxchg(dword_ptr(rdi + 16), ecx)?;
    a.jne(spin)?;
    a.inc(qword_ptr(rdi + 24))?;
    a.mov(dword_ptr(rdi + 16), 0)?;
    a.dec(r8d)?;
    a.jne(top)
}

#[test]
fn test_soft_two_cpus_on_two_threads_lose_no_locked_update() {
    const ROUNDS: i32 = 20_000;
    let code = asm(|a| {
        contended_rounds(a, ROUNDS)?;
        a.int3()
    });
    let data: Arc<Vec<AtomicU8>> = Arc::new((0..64).map(|_| AtomicU8::new(0)).collect());
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut mem = Shared {
                code: code.clone(),
                data: Arc::clone(&data),
            };
            std::thread::spawn(move || {
                let mut state = CpuState::long_mode(CODE);
                state.gpr[7] = DATA;
                let mut cpu = Cpu::new(state);
                // INT3 ends the program (user mode: the step reports the trap).
                let end = loop {
                    match cpu.step(&mut mem) {
                        Ok(None) => {}
                        other => break other,
                    }
                };
                assert_eq!(end, Err(Exception::Breakpoint));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let word = |at: usize| {
        u64::from_le_bytes(std::array::from_fn(|i| {
            data[at + i].load(Ordering::Relaxed)
        }))
    };
    let total = 2 * ROUNDS as u64;
    assert_eq!(word(0), total, "LOCK INC");
    assert_eq!(word(8), total, "LOCK XADD");
    assert_eq!(word(24), total, "increments under the CMPXCHG spinlock");
    assert_eq!(word(16), 0, "the spinlock is free");
}

/// The same on CPUs in system mode, where the loop's blocks are translated to host
/// code: the locked instructions then run as host locked instructions on guest RAM.
#[test]
fn test_translated_code_on_two_threads_loses_no_locked_update() {
    // Enough that both threads overlap for most of it (translated, this is quick).
    const ROUNDS: i32 = 200_000;
    let code = oracle::asm(|a| contended_rounds(a, ROUNDS));
    let mut machine = oracle::SystemSoft::new(&code, DATA, 64);
    let end = machine.end();
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let mut ram = machine.share_ram();
            let start = &start;
            s.spawn(move || {
                let mut regs = oracle::Regs::default();
                regs.gpr[7] = DATA;
                let mut cpu = Cpu::new(oracle::SystemSoft::start(&regs));
                start.wait();
                // A lost update to the spinlock would spin forever: bounded.
                oracle::run_to_end(&mut cpu, &mut ram, end, 200_000_000);
            });
        }
    });
    let data = machine.data(32);
    let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
    let total = 2 * ROUNDS as u64;
    assert_eq!(word(0), total, "LOCK INC");
    assert_eq!(word(8), total, "LOCK XADD");
    assert_eq!(word(24), total, "increments under the CMPXCHG spinlock");
    assert_eq!(word(16), 0, "the spinlock is free");
}
