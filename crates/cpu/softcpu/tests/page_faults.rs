//! The whole #PF error code (P, W/R, U/S, RSVD, I/D), CR2 and the faulting RIP, for
//! reads, writes and instruction fetches, stack pushes, string instructions and CLFLUSH,
//! within a page and across a page boundary, from user and kernel mode, on not-present
//! pages, protection violations and reserved bits; interpreted (one round) and after
//! translation (the same code a hundred times: hot blocks become host code after 64).
//! A Linux kernel takes a fault with U/S clear from user mode for a kernel bug.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use gasang_softcpu::Exit;
use iced_x86::code_asm::*;

mod common;
use common::machine::*;

/// What the access under test is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// MOV RAX, [RBX].
    Read,
    /// MOV [RBX], RAX.
    Write,
    /// CALL RBX to `mov eax, 1; ret`.
    Fetch,
    /// PUSH RAX with RSP = RBX + 8 (user mode only: in kernel mode the exception frame
    /// would go to the same bad stack).
    Push,
    /// REP STOSQ at RDI = RBX (4 elements).
    StoreString,
    /// REP MOVSQ from RSI = RBX to good memory (4 elements).
    LoadString,
    /// CLFLUSH [RBX]: checked as a one-byte read, so it never crosses a page.
    Flush,
}

/// What is wrong with the second page of the bad pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    NotPresent,
    ReadOnly,
    Supervisor,
    NoExecute,
    Reserved,
}

const KINDS: [Kind; 7] = [
    Kind::Read,
    Kind::Write,
    Kind::Fetch,
    Kind::Push,
    Kind::StoreString,
    Kind::LoadString,
    Kind::Flush,
];
const BADS: [Bad; 5] = [
    Bad::NotPresent,
    Bad::ReadOnly,
    Bad::Supervisor,
    Bad::NoExecute,
    Bad::Reserved,
];

/// Code pages for fetches: a good pair at FUNCS, a bad pair at FUNCS + 0x2000.
const FUNCS: u64 = 0x60000;
/// The bad page of each pair: its second page.
const BAD_DATA: u64 = DATA + 0x3000;
const BAD_CODE: u64 = FUNCS + 0x3000;

impl Kind {
    fn writes(self) -> bool {
        matches!(self, Kind::Write | Kind::Push | Kind::StoreString)
    }

    /// Where the access starts for a pair whose second page is `second`: 4 bytes
    /// before it (8-byte accesses; 1 byte for a fetch), or 16 bytes into it.
    fn target(self, second: u64, cross: bool) -> u64 {
        match (self, cross) {
            (Kind::Fetch, true) => second - 1,
            (_, true) => second - 4,
            (_, false) => second + 0x10,
        }
    }

    /// RBX for a pair whose second page is `second`.
    fn rbx(self, second: u64, cross: bool) -> u64 {
        let target = self.target(second, cross);
        if self == Kind::Push {
            target + 8
        } else {
            target
        }
    }

    /// The instructions before the one that faults.
    fn prefix(self, a: &mut CodeAssembler) -> Result<(), IcedError> {
        match self {
            Kind::Read | Kind::Write | Kind::Fetch | Kind::Flush => Ok(()),
            Kind::Push => {
                a.mov(r13, rsp)?;
                a.mov(rsp, rbx)
            }
            Kind::StoreString => {
                a.mov(rdi, rbx)?;
                a.mov(ecx, 4)
            }
            Kind::LoadString => {
                a.mov(rsi, rbx)?;
                a.mov(rdi, DATA + 0x800)?;
                a.mov(ecx, 4)
            }
        }
    }

    /// The access function: the prefix, the access, RET.
    fn emit(self, a: &mut CodeAssembler) -> Result<(), IcedError> {
        self.prefix(a)?;
        match self {
            Kind::Read => a.mov(rax, qword_ptr(rbx))?,
            Kind::Write => a.mov(qword_ptr(rbx), rax)?,
            Kind::Fetch => a.call(rbx)?,
            Kind::Push => {
                a.push(rax)?;
                a.mov(rsp, r13)?;
            }
            Kind::StoreString => a.rep().stosq()?,
            Kind::LoadString => a.rep().movsq()?,
            Kind::Flush => a.clflush(byte_ptr(rbx))?,
        }
        a.ret()
    }
}

/// Whether `kind` from user mode (`user`) faults on a page that is `bad`.
fn faults(user: bool, kind: Kind, bad: Bad) -> bool {
    match bad {
        Bad::NotPresent | Bad::Reserved => true,
        Bad::ReadOnly => kind.writes(), // CR0.WP is set: the kernel faults too
        Bad::Supervisor => user,        // no SMAP or SMEP
        Bad::NoExecute => kind == Kind::Fetch,
    }
}

/// The error code hardware pushes.
fn expected_error(user: bool, kind: Kind, bad: Bad) -> u64 {
    u64::from(bad != Bad::NotPresent)
        | (u64::from(kind.writes()) << 1)
        | (u64::from(user) << 2)
        | (u64::from(bad == Bad::Reserved) << 3)
        | (u64::from(kind == Kind::Fetch) << 4)
}

fn pte_for(page: u64, bad: Bad) -> u64 {
    match bad {
        Bad::NotPresent => 0,
        Bad::ReadOnly => page | P | U,
        Bad::Supervisor => page | P | W,
        Bad::NoExecute => page | P | W | U | NX,
        Bad::Reserved => page | P | W | U | (1 << 51),
    }
}

/// Runs `rounds` rounds of the access on the good pair, the last on the bad one;
/// returns the vector taken, the error code, CR2 and the faulting RIP.
fn run_case(user: bool, kind: Kind, cross: bool, bad: Bad, rounds: u32) -> [u64; 4] {
    let (mut cpu, mut ram) = machine();
    ram.set_u64(pte(BAD_DATA), pte_for(BAD_DATA, bad));
    ram.set_u64(pte(BAD_CODE), pte_for(BAD_CODE, bad));
    let function = asm(0, |a| {
        a.mov(eax, 1)?;
        a.ret()
    });
    for second in [FUNCS + 0x1000, BAD_CODE] {
        for cross in [true, false] {
            ram.put(Kind::Fetch.target(second, cross), &function);
        }
    }
    let code = if user { USER_CODE } else { KERNEL_CODE };
    let access = code + 0x800;
    if user {
        ram.put(KERNEL_CODE, &asm(KERNEL_CODE, enter_user));
    }
    let second = |good| match (kind, good) {
        (Kind::Fetch, true) => FUNCS + 0x1000,
        (Kind::Fetch, false) => BAD_CODE,
        (_, true) => DATA + 0x1000,
        (_, false) => BAD_DATA,
    };
    let (good, bad_rbx) = (
        kind.rbx(second(true), cross),
        kind.rbx(second(false), cross),
    );
    let main = asm(code, |a| {
        let (mut top, mut go) = (a.create_label(), a.create_label());
        a.mov(r12, access)?;
        a.mov(r14d, rounds)?;
        a.set_label(&mut top)?;
        a.mov(rbx, good)?;
        a.cmp(r14d, 1)?;
        a.jne(go)?;
        a.mov(rbx, bad_rbx)?;
        a.set_label(&mut go)?;
        a.call(r12)?;
        a.dec(r14d)?;
        a.jne(top)?;
        a.ud2()
    });
    ram.put(code, &main);
    ram.put(access, &asm(access, |a| kind.emit(a)));
    assert_eq!(run_blocks(&mut cpu, &mut ram), Exit::Halt);
    let (error, rip, ..) = frame(&cpu, &ram, true);
    [handled(&cpu), error, cpu.state.sys.cr2, rip]
}

fn check_all(rounds: u32) {
    let mut checked = 0;
    for user in [false, true] {
        for kind in KINDS {
            for bad in BADS {
                if !faults(user, kind, bad) || (kind == Kind::Push && !user) {
                    continue;
                }
                let crossings: &[bool] = if kind == Kind::Flush {
                    &[false]
                } else {
                    &[false, true]
                };
                for &cross in crossings {
                    let second = if kind == Kind::Fetch {
                        BAD_CODE
                    } else {
                        BAD_DATA
                    };
                    let fault_addr = if cross { second } else { second + 0x10 };
                    let code = if user { USER_CODE } else { KERNEL_CODE };
                    let rip = if kind == Kind::Fetch {
                        kind.target(second, cross)
                    } else {
                        let prefix = asm(0, |a| kind.prefix(a));
                        code + 0x800 + prefix.len() as u64
                    };
                    let expected = [14, expected_error(user, kind, bad), fault_addr, rip];
                    let got = run_case(user, kind, cross, bad, rounds);
                    assert_eq!(
                        got, expected,
                        "{kind:?} on {bad:?}, user {user}, across {cross}, {rounds} rounds: \
                         [vector, error, CR2, RIP]"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 75);
}

#[test]
fn test_page_fault_error_code_cr2_and_rip_interpreted() {
    check_all(1);
}

#[test]
fn test_page_fault_error_code_cr2_and_rip_after_translation() {
    check_all(100);
}

/// The fault of the report that found the bug: a user-mode instruction on the last
/// byte of a page, continuing into a page not present yet (demand paging of a shared
/// library), must fault with U/S and I/D set, CR2 at the second page.
#[test]
fn test_user_fetch_across_into_a_missing_page_is_a_user_fault() {
    let [vector, error, fault_addr, rip] = run_case(true, Kind::Fetch, true, Bad::NotPresent, 1);
    assert_eq!((vector, error), (14, 0b10100), "not present, user, fetch");
    assert_eq!((fault_addr, rip), (BAD_CODE, BAD_CODE - 1));
}
