//! The oracle: runs a few instructions natively on the host CPU and on the software CPU,
//! from the same registers, flags and memory, and returns both results.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
#![allow(dead_code)] // each test binary uses a different subset

use gasang_softcpu::{Cpu, CpuState, Flags, FlatMemory, Memory, X87State};
use iced_x86::code_asm::*;

mod system;
mod vendor;
#[allow(unused_imports)] // only some test binaries use them
pub use system::{run_to_end, SystemSoft};
#[allow(unused_imports)] // only some test binaries use them
pub use vendor::{Host, Image};

/// An FXSAVE64 area: the x87 unit (and MMX registers) go in and out through it.
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fx(pub [u8; 512]);

impl Fx {
    /// What the tests compare: FCW, FSW, the abridged tags and the registers' 80 bits.
    /// (FIP and FDP hold host addresses natively; FOP is not kept.)
    pub fn comparable(&self) -> Vec<u8> {
        let mut v = self.0[..5].to_vec();
        for i in 0..8 {
            v.extend_from_slice(&self.0[32 + 16 * i..42 + 16 * i]);
        }
        v
    }
}

/// Registers in the order the thunk loads and stores them; RSP is never touched.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regs {
    /// RAX..R15.
    pub gpr: [u64; 16],
    /// RFLAGS.
    pub rflags: u64,
    /// XMM0..XMM15, each as (low, high) 64-bit halves.
    pub xmm: [[u64; 2]; 16],
    /// MXCSR (kept in a u64 slot; exceptions are always masked in tests).
    pub mxcsr: u64,
    /// The x87 state, loaded before and saved after (its MXCSR and XMM are ignored).
    pub fx: Fx,
}

impl Default for Regs {
    fn default() -> Self {
        let mut fx = Fx([0; 512]);
        fx.0[..2].copy_from_slice(&0x37fu16.to_le_bytes());
        fx.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        Self {
            gpr: [0; 16],
            rflags: 0,
            xmm: [[0; 2]; 16],
            mxcsr: 0x1f80,
            fx,
        }
    }
}

impl Regs {
    /// A 64-bit CPU state at `rip` with these registers.
    pub fn state(&self, rip: u64) -> CpuState {
        let mut state = CpuState::long_mode(rip);
        state.gpr = self.gpr;
        state.rflags = self.rflags;
        state.xmm = xmm_u128(&self.xmm);
        state.mxcsr = self.mxcsr as u32;
        state.x87 = X87State::restore(&self.fx.0, true);
        state
    }

    /// The registers of `state`.
    pub fn of(state: &CpuState) -> Self {
        let mut fx = Fx([0; 512]);
        state.x87.save(&mut fx.0, true);
        Self {
            gpr: state.gpr,
            rflags: state.rflags,
            xmm: state.xmm.map(|x| [x as u64, (x >> 64) as u64]),
            mxcsr: u64::from(state.mxcsr),
            fx,
        }
    }
}

/// Offset of `fx` in [`Regs`] (16-byte aligned).
const FX_OFFSET: i32 = MXCSR_OFFSET + 8;

/// Offset of `mxcsr` in [`Regs`].
const MXCSR_OFFSET: i32 = XMM_OFFSET + 16 * 16;

/// Offset of `xmm` in [`Regs`].
const XMM_OFFSET: i32 = 136;

const XMMS: [AsmRegisterXmm; 16] = [
    xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14,
    xmm15,
];

/// Converts the harness's XMM layout to the CPU's.
pub fn xmm_u128(x: &[[u64; 2]; 16]) -> [u128; 16] {
    x.map(|[lo, hi]| u128::from(lo) | (u128::from(hi) << 64))
}

/// Memory a test case may address through RSI (room for an FXSAVE area past 0x40).
pub const DATA_LEN: usize = 640;

/// An executable page holding a thunk `fn(*mut Regs, data)`.
pub struct Native {
    page: *mut u8,
    len: usize,
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: `page` is the mapping of `len` bytes made in `Native::new`.
        unsafe { libc::munmap(self.page.cast(), self.len) };
    }
}

const GPRS: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];

/// Assembles the thunk around `code` (which must not touch RSP or fault).
fn thunk(code: &[u8]) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    for r in [rbx, rbp, r12, r13, r14, r15, rdi] {
        a.push(r).unwrap();
    }
    a.fxrstor64(ptr(rdi + FX_OFFSET)).unwrap();
    for (i, x) in XMMS.iter().enumerate() {
        a.movdqu(*x, xmmword_ptr(rdi + XMM_OFFSET + 16 * i as i32))
            .unwrap();
    }
    a.ldmxcsr(dword_ptr(rdi + MXCSR_OFFSET)).unwrap();
    a.push(qword_ptr(rdi + 128)).unwrap();
    a.popfq().unwrap();
    for (i, r) in GPRS.iter().enumerate() {
        if i != 4 && i != 7 {
            a.mov(*r, qword_ptr(rdi + 8 * i as i32)).unwrap();
        }
    }
    a.mov(rdi, qword_ptr(rdi + 56)).unwrap();
    a.db(code).unwrap();
    a.pushfq().unwrap();
    a.push(rax).unwrap();
    a.mov(rax, qword_ptr(rsp + 16)).unwrap();
    for (i, r) in GPRS.iter().enumerate() {
        if i != 0 && i != 4 {
            a.mov(qword_ptr(rax + 8 * i as i32), *r).unwrap();
        }
    }
    a.pop(rcx).unwrap();
    a.mov(qword_ptr(rax), rcx).unwrap();
    a.pop(rcx).unwrap();
    a.mov(qword_ptr(rax + 128), rcx).unwrap();
    for (i, x) in XMMS.iter().enumerate() {
        a.movdqu(xmmword_ptr(rax + XMM_OFFSET + 16 * i as i32), *x)
            .unwrap();
    }
    a.stmxcsr(dword_ptr(rax + MXCSR_OFFSET)).unwrap();
    a.fxsave64(ptr(rax + FX_OFFSET)).unwrap();
    // An empty x87 stack and default control, as the ABI expects.
    a.fninit().unwrap();
    // Back to the default control (the rest of the test process expects it).
    a.push(0x1f80).unwrap();
    a.ldmxcsr(dword_ptr(rsp)).unwrap();
    a.pop(rcx).unwrap();
    a.cld().unwrap();
    for r in [rdi, r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).unwrap();
    }
    a.ret().unwrap();
    a.assemble(0).unwrap()
}

impl Native {
    /// Maps the thunk for `code`.
    pub fn new(code: &[u8]) -> Self {
        let bytes = thunk(code);
        let len = bytes.len().next_multiple_of(4096);
        // SAFETY: a fresh private anonymous mapping; checked for failure below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let page = page.cast::<u8>();
        // SAFETY: `page` has `len >= bytes.len()` writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), page, bytes.len()) };
        Self { page, len }
    }

    /// Runs the code natively from `regs`.
    pub fn run(&self, regs: &mut Regs) {
        // SAFETY: the page holds a complete function following the SysV ABI: it saves
        // and restores callee-saved registers, leaves RSP balanced and clears DF; the
        // wrapped test code touches only registers and the data buffer RSI points to.
        let f: extern "C" fn(*mut Regs) = unsafe { std::mem::transmute(self.page) };
        f(regs);
    }
}

/// Where the software CPU runs test code.
const CODE_ADDR: u64 = 0x40_0000;

/// The software side: one CPU and one memory for all cases of an instruction form, as a
/// CPU lives on one memory (its decode cache is kept across cases, as in real use).
pub struct Soft {
    cpu: Cpu,
    mem: FlatMemory,
    end: u64,
    data_addr: u64,
}

impl Soft {
    /// Maps `code` and a data buffer of `data_len` bytes at `data_addr`.
    pub fn new(code: &[u8], data_addr: u64, data_len: usize) -> Self {
        let mut mem = FlatMemory::new();
        mem.map(CODE_ADDR, code.to_vec());
        mem.map(data_addr, vec![0; data_len]);
        let end = CODE_ADDR + code.len() as u64;
        Self {
            cpu: Cpu::new(CpuState::long_mode(CODE_ADDR)),
            mem,
            end,
            data_addr,
        }
    }

    /// Runs the code from `regs` with `data` in the buffer; returns registers and buffer.
    pub fn run(&mut self, regs: &Regs, data: &[u8]) -> (Regs, Vec<u8>) {
        self.mem.write(self.data_addr, data).unwrap();
        self.cpu.state = regs.state(CODE_ADDR);
        let mut steps = 0;
        while self.cpu.state.rip != self.end {
            let rip = self.cpu.state.rip;
            self.cpu
                .step(&mut self.mem)
                .unwrap_or_else(|e| panic!("{e} at {rip:#x}"));
            steps += 1;
            assert!(steps < 100_000, "runaway test code");
        }
        let mut out = vec![0u8; data.len()];
        self.mem
            .read(self.data_addr, &mut out, gasang_softcpu::Access::Read)
            .unwrap();
        (Regs::of(&self.cpu.state), out)
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Mostly edge values (0, 1, all ones, sign boundaries of every width), some random.
    pub fn value(&mut self) -> u64 {
        const EDGES: [u64; 14] = [
            0,
            1,
            2,
            u64::MAX,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x8000_0000_0000_0000,
        ];
        match self.next() % 4 {
            0 => EDGES[(self.next() % EDGES.len() as u64) as usize],
            1 => EDGES[(self.next() % EDGES.len() as u64) as usize].wrapping_sub(self.next() % 3),
            _ => self.next(),
        }
    }
}

impl Rng {
    /// An 80-bit value: zeros, denormals, pseudo-denormals, unnormals, infinities, NaNs,
    /// small integers, and normals near 1.0 (where arithmetic stays interesting).
    pub fn extended(&mut self) -> u128 {
        let sign = u128::from(self.next() & 1) << 79;
        let j = 1u64 << 63;
        let (exp, mantissa): (u64, u64) = match self.next() % 10 {
            0 => (0, 0),
            1 => (0, self.next() >> 1),
            2 => (0, self.next() | j),
            3 => (self.next() % 0x7ffe + 1, self.next() >> 1),
            4 => (0x7fff, j),
            5 => (0x7fff, self.next() | j),
            6 => {
                let n = self.next() % 1000 + 1;
                (
                    16383 + 63 - u64::from(n.leading_zeros()),
                    n << n.leading_zeros(),
                )
            }
            7 => (self.next() % 0x7ffe + 1, self.next() | j),
            _ => (16383 + self.next() % 128 - 64, self.next() | j),
        };
        sign | (u128::from(exp) << 64) | u128::from(mantissa)
    }

    /// A random x87 state: every exception masked (an unmasked one would kill the test
    /// natively), random precision and rounding, stack top, tags, flags and registers.
    pub fn x87(&mut self, fx: &mut Fx) {
        let fcw = 0x3f | (self.next() as u16 & 0x0f00) | 0x40;
        let fsw = (self.next() as u16 & 0x7f7f) & !0x80;
        fx.0[0..2].copy_from_slice(&fcw.to_le_bytes());
        fx.0[2..4].copy_from_slice(&fsw.to_le_bytes());
        fx.0[4] = self.next() as u8;
        for i in 0..8 {
            let v = self.extended().to_le_bytes();
            fx.0[32 + 16 * i..48 + 16 * i].copy_from_slice(&v);
        }
    }
}

pub fn cases() -> usize {
    std::env::var("GASANG_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Runs `code` natively and in software from random states; compares `flags_defined`.
pub fn check(name: &str, code: &[u8], flags_defined: u64, seed: u64) {
    check_with(name, code, seed, |_| flags_defined);
}

/// As `check`, with the defined flags depending on the input state.
pub fn check_with(name: &str, code: &[u8], seed: u64, defined: impl Fn(&Regs) -> u64) {
    check_images(name, code, seed, defined, &[]);
}

/// As `check_with`, where the code stores `images` at their offsets from RSI as
/// `aligned` leaves it: the native images are normalised where the host's vendor
/// defines fields otherwise than gasang's model (see [`vendor`]).
pub fn check_images(
    name: &str,
    code: &[u8],
    seed: u64,
    defined: impl Fn(&Regs) -> u64,
    images: &[(usize, Image)],
) {
    let host = Host::this();
    let native = Native::new(code);
    let mut data = vec![0u8; DATA_LEN];
    let mut software = Soft::new(code, data.as_ptr() as u64, DATA_LEN);
    let mut system = system::SystemSoft::new(code, data.as_ptr() as u64, DATA_LEN);
    let mut rng = Rng(seed | 1);
    for _ in 0..cases() {
        let mut regs = Regs::default();
        for r in &mut regs.gpr {
            *r = rng.value();
        }
        regs.rflags = 0x202 | (rng.next() & Flags::ARITH);
        for x in &mut regs.xmm {
            *x = [rng.value(), rng.value()];
        }
        // All exceptions masked; random rounding mode, DAZ, FTZ and sticky flags.
        regs.mxcsr = 0x1f80 | (rng.next() & 0xe07f);
        rng.x87(&mut regs.fx);
        data.iter_mut().for_each(|b| *b = rng.next() as u8);
        regs.gpr[6] = data.as_ptr() as u64; // RSI: the data buffer
        let start = regs;
        // Both software runs first: the native one changes `data` in place.
        let user = software.run(&start, &data);
        let kernel = system.run(&start, &data);
        let mut hw = start;
        native.run(&mut hw);
        let mask = defined(&start) | !Flags::ARITH & 0xfff & !0x200;
        let base = aligned_offset(&data);
        for (soft, mode) in [(user, ""), (kernel, " (system mode)")] {
            let mut native = data.clone();
            for &(offset, image) in images {
                host.normalise(&mut native, &soft.1, base + offset, image);
            }
            compare(&format!("{name}{mode}"), &start, (&hw, &native), soft, mask);
        }
    }
}

/// Asserts that the software CPU's registers and memory match the host's.
fn compare(name: &str, start: &Regs, (hw, data): (&Regs, &[u8]), soft: (Regs, Vec<u8>), mask: u64) {
    let (soft, soft_data) = soft;
    {
        let diff = format!("{name} from {start:x?}:\n  native {hw:x?}\n  soft   {soft:x?}");
        assert_eq!(hw.gpr, soft.gpr, "registers differ: {diff}");
        assert_eq!(hw.xmm, soft.xmm, "XMM registers differ: {diff}");
        assert_eq!(hw.mxcsr, soft.mxcsr, "MXCSR differs: {diff}");
        assert_eq!(
            hw.fx.comparable(),
            soft.fx.comparable(),
            "x87 state differs: {diff}"
        );
        assert_eq!(
            hw.rflags & mask,
            soft.rflags & mask,
            "flags (mask {mask:#x}) differ: {diff}"
        );
        assert_eq!(data, &soft_data[..], "memory differs: {diff}");
    }
}

pub fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(0x40_0000).unwrap()
}

/// Every arithmetic flag.
pub const ALL: u64 = Flags::ARITH;
/// Every arithmetic flag but AF (undefined after logic ops and shifts).
pub const NO_AF: u64 = Flags::ARITH & !Flags::AF;

/// Emits one instruction.
pub type Emit = fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// Aligns RSI to 16 bytes inside the buffer, then runs `op` (SSE's aligned forms).
pub fn aligned(op: Emit) -> Vec<u8> {
    asm(|a| {
        a.add(rsi, 0x40)?;
        a.and(rsi, -16)?;
        op(a)
    })
}

/// Where `aligned` leaves RSI when it points at `data`: the offset from its start.
pub fn aligned_offset(data: &[u8]) -> usize {
    ((data.as_ptr() as usize + 0x40) & !15) - data.as_ptr() as usize
}

/// Checks each `(name, op)` with every arithmetic flag compared, from seeds `seed..`.
pub fn run_all(cases: &[(&str, Emit)], seed: u64) {
    for (i, (name, op)) in cases.iter().enumerate() {
        check(name, &aligned(*op), ALL, seed + i as u64);
    }
}
