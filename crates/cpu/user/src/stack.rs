//! The initial process stack: argc, argv, envp, the auxiliary vector, and their strings.

use gasang_softcpu::Memory;

use crate::elf::Executable;
use crate::memory::{UserMemory, PAGE};

/// The stack's top (exclusive) and size.
pub const STACK_TOP: u64 = 0x7fff_ffff_f000;
/// 8 MiB, as Linux's default RLIMIT_STACK.
pub const STACK_SIZE: u64 = 8 << 20;

/// Auxiliary vector keys.
const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_EXECFN: u64 = 31;

/// Writes strings downwards from `top`; returns each one's address.
fn push_strings(mem: &mut UserMemory, top: &mut u64, strings: &[&[u8]]) -> Vec<u64> {
    strings
        .iter()
        .map(|s| {
            *top -= s.len() as u64 + 1;
            let mut bytes = s.to_vec();
            bytes.push(0);
            mem.write(*top, &bytes).expect("inside the fresh stack");
            *top
        })
        .collect()
}

/// Maps the stack and lays out the process's start-up data; returns the initial RSP.
pub fn build(mem: &mut UserMemory, exe: &Executable, args: &[Vec<u8>], env: &[Vec<u8>]) -> u64 {
    mem.map(STACK_TOP - STACK_SIZE, STACK_SIZE);
    let mut top = STACK_TOP - PAGE;
    let arg_refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let env_refs: Vec<&[u8]> = env.iter().map(Vec::as_slice).collect();
    let argv = push_strings(mem, &mut top, &arg_refs);
    let envp = push_strings(mem, &mut top, &env_refs);
    let platform = push_strings(mem, &mut top, &[b"x86_64"])[0];
    top -= 16;
    let random = top;
    let mut seed = [0u8; 16];
    // Best effort: the bytes only seed the program's stack protector and pointer guard.
    // SAFETY: `seed` is a valid 16-byte buffer.
    unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    mem.write(random, &seed).expect("inside the fresh stack");
    let auxv = [
        (AT_PHDR, exe.phdr),
        (AT_PHENT, 56),
        (AT_PHNUM, u64::from(exe.phnum)),
        (AT_PAGESZ, PAGE),
        (AT_BASE, 0),
        (AT_FLAGS, 0),
        (AT_ENTRY, exe.entry),
        (AT_UID, 0),
        (AT_EUID, 0),
        (AT_GID, 0),
        (AT_EGID, 0),
        (AT_SECURE, 0),
        (AT_HWCAP, 0),
        (AT_CLKTCK, 100),
        (AT_PLATFORM, platform),
        (AT_RANDOM, random),
        (AT_EXECFN, argv.first().copied().unwrap_or(0)),
        (AT_NULL, 0),
    ];
    let mut words = vec![args.len() as u64];
    words.extend(&argv);
    words.push(0);
    words.extend(&envp);
    words.push(0);
    for (key, value) in auxv {
        words.extend([key, value]);
    }
    // RSP must be 16-byte aligned at the entry point, pointing at argc.
    let rsp = (top - 8 * words.len() as u64) & !0xf;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write(rsp, &bytes).expect("inside the fresh stack");
    rsp
}
