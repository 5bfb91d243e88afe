//! The platform's hooks, as a machine uses them: port I/O, the MSRs the platform owns,
//! and CPUID completed by the platform. Run in 32-bit protected mode with paging off
//! (the simplest system state: no tables to build).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use gasang_softcpu::system::deliver::NoInterrupts;
use gasang_softcpu::system::paging::PhysicalMemory;
use gasang_softcpu::{Cpu, CpuState, Exit, Gpr};
use iced_x86::code_asm::*;

mod common;
use common::Ram;

/// A platform: RAM, a log of port writes and MSR writes, port reads answering with
/// the port's low byte, an APIC base MSR, and the APIC bit added to CPUID leaf 1.
struct Platform {
    ram: Ram,
    port_writes: Vec<(u16, Vec<u8>)>,
    msr_writes: Vec<(u32, u64)>,
}

impl PhysicalMemory for Platform {
    fn read(&mut self, addr: u64, buf: &mut [u8]) {
        self.ram.read(addr, buf)
    }
    fn write(&mut self, addr: u64, buf: &[u8]) {
        self.ram.write(addr, buf)
    }
    fn code_version(&mut self, addr: u64) -> Option<u64> {
        self.ram.code_version(addr)
    }
    fn code_generation(&self) -> Option<u64> {
        self.ram.code_generation()
    }
    fn port_read(&mut self, port: u16, data: &mut [u8]) {
        data.fill(port as u8);
    }
    fn port_write(&mut self, port: u16, data: &[u8]) {
        self.port_writes.push((port, data.to_vec()));
    }
    fn msr_read(&mut self, number: u32) -> Option<u64> {
        (number == 0x1b).then_some(0xfee0_0900)
    }
    fn msr_write(&mut self, number: u32, value: u64) -> Option<()> {
        self.msr_writes.push((number, value));
        (number == 0x4b56_4d01).then_some(())
    }
    fn cpuid(&mut self, leaf: u32, _sub: u32, [a, b, c, d]: [u32; 4]) -> [u32; 4] {
        if leaf == 1 {
            [a, b, c, d | 1 << 9]
        } else {
            [a, b, c, d]
        }
    }
}

#[test]
fn test_port_io_platform_msrs_and_cpuid_reach_the_platform() {
    let code = {
        let mut a = CodeAssembler::new(32).unwrap();
        a.mov(dx, 0x3f8u32).unwrap();
        a.mov(al, 0x41u32).unwrap();
        a.out(dx, al).unwrap();
        a.mov(eax, 0x1234_5678u32).unwrap();
        a.out(0x80, eax).unwrap();
        a.in_(al, 0x71).unwrap();
        a.mov(esi, eax).unwrap();
        a.mov(ecx, 0x1bu32).unwrap();
        a.rdmsr().unwrap();
        a.mov(edi, eax).unwrap();
        a.mov(ecx, 0x4b56_4d01u32).unwrap();
        a.mov(eax, 0x5001u32).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.mov(eax, 1u32).unwrap();
        a.cpuid().unwrap();
        a.hlt().unwrap();
        a.assemble(0x1000).unwrap()
    };
    let mut platform = Platform {
        ram: Ram::new(1 << 20),
        port_writes: Vec::new(),
        msr_writes: Vec::new(),
    };
    platform.ram.put(0x1000, &code);
    let mut cpu = Cpu::new(CpuState::protected_mode(0x1000));
    let (_, exit) = cpu.run_system(&mut platform, &mut NoInterrupts, 100);
    assert_eq!(exit, Some(Exit::Halt), "RIP {:#x}", cpu.state.rip);
    assert_eq!(
        platform.port_writes,
        [
            (0x3f8, vec![0x41]),
            (0x80, 0x1234_5678u32.to_le_bytes().to_vec())
        ]
    );
    let st = &cpu.state;
    assert_eq!(st.reg(Gpr::Rsi), 0x1234_5671, "IN AL keeps the rest of EAX");
    assert_eq!(st.reg(Gpr::Rdi), 0xfee0_0900, "the platform's APIC base");
    assert_eq!(platform.msr_writes, [(0x4b56_4d01, 0x5001)]);
    assert_ne!(st.reg(Gpr::Rdx) & (1 << 9), 0, "the platform's APIC bit");
    assert_ne!(st.reg(Gpr::Rdx) & (1 << 26), 0, "the CPU's own SSE2 bit");
}
