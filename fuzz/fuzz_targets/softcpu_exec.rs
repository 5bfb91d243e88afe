//! Arbitrary guest code on the software CPU: any instruction stream must end in an
//! exception or an exit, never a panic or a hang.

#![no_main]

use gasang_softcpu::{Cpu, CpuState, FlatMemory};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut mem = FlatMemory::new();
    let mut code = data.to_vec();
    code.truncate(4096);
    mem.map(0x1000, code);
    mem.map(0x10000, vec![0; 0x10000]); // stack and data
    let mut state = CpuState::long_mode(0x1000);
    state.gpr = [0x18000; 16];
    let mut cpu = Cpu::new(state);
    for _ in 0..10_000 {
        match cpu.step(&mut mem) {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => break,
        }
    }
});
