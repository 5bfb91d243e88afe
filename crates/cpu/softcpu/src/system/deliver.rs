//! Delivery of exceptions and interrupts through the 64-bit IDT, and the system-mode
//! step: an interrupt if one is accepted, one instruction, and its exception if any
//! (two in a row make a double fault, three a triple fault: shutdown).

use super::paging::{Linear, PagingMode, PhysicalMemory, Tlb};
use super::segments::{code_segment, set_code_segment, tss_field};
use crate::cpu::{Cpu, Exception, Exit};
use crate::flags::Flags;
use crate::memory::{Access, Memory};
use crate::state::{Gpr, Segment};

/// The platform's interrupt controller, as the CPU sees it.
pub trait InterruptSource {
    /// The vector of the highest-priority pending interrupt, now accepted by the CPU.
    /// Asked only when the CPU can take one (IF set, no interrupt shadow).
    fn take(&mut self) -> Option<u8>;

    /// Whether a non-maskable interrupt is pending; if so, it is now accepted. Asked
    /// only when the CPU can take one (outside an NMI handler and an interrupt shadow),
    /// before any maskable interrupt.
    fn take_nmi(&mut self) -> bool {
        false
    }

    /// Bytes that become non-zero when an interrupt may be pending (the CPU then stops
    /// running translated blocks back to back and asks). The default: never.
    fn wake_flags(&self) -> [*const u8; 2] {
        crate::jit::NEVER_WAKE
    }
}

/// No interrupt controller: nothing is ever pending.
#[derive(Debug, Default)]
pub struct NoInterrupts;

impl InterruptSource for NoInterrupts {
    fn take(&mut self) -> Option<u8> {
        None
    }
}

/// The NMI's vector.
const NMI: u8 = 2;

/// RFLAGS bits every delivery clears: TF, NT, RF (interrupt gates clear IF too).
const CLEARED_ON_DELIVERY: u64 = Flags::TF | (1 << 14) | (1 << 16);

/// What is being delivered.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// An exception (or INT n) the instruction raised.
    Exception(Exception),
    /// An interrupt from the platform.
    External(u8),
}

impl Cpu {
    /// Executes one instruction in system mode on guest-physical memory `phys`, first
    /// taking an interrupt from `irq` if the CPU accepts one (that counts as the step);
    /// exceptions go through the guest's IDT. Returns why the caller must act: HLT, or
    /// a triple fault.
    pub fn step_system(
        &mut self,
        phys: &mut dyn PhysicalMemory,
        irq: &mut dyn InterruptSource,
    ) -> Option<Exit> {
        self.run_system(phys, irq, 1).1
    }

    /// Runs up to `limit` instructions (an interrupt taken counts as one) in system
    /// mode, block by block, looking for an interrupt from `irq` before each block
    /// (after the one instruction an interrupt shadow covers, as hardware does): an
    /// NMI first, unless one is being handled (until IRETQ), then a maskable one if IF
    /// is set. Returns how many ran, and why the caller must act, if it must.
    pub fn run_system(
        &mut self,
        phys: &mut dyn PhysicalMemory,
        irq: &mut dyn InterruptSource,
        limit: u64,
    ) -> (u64, Option<Exit>) {
        let mut done = 0;
        while done < limit {
            let shadow = std::mem::take(&mut self.state.sys.interrupt_shadow);
            if let Some(vector) = self.accept(irq, shadow) {
                done += 1;
                match self.raise(phys, Event::External(vector)) {
                    None => continue,
                    exit => return (done, exit),
                }
            }
            let budget = if shadow { 1 } else { limit - done };
            let wake = irq.wake_flags();
            let (ran, result) =
                self.with_linear(phys, |cpu, linear| cpu.run_block(linear, budget, wake));
            done += ran;
            match result {
                Ok(None) => {}
                Ok(exit) => return (done, exit),
                Err(e) => {
                    done += 1;
                    if let Some(exit) = self.raise(phys, Event::Exception(e)) {
                        return (done, Some(exit));
                    }
                }
            }
        }
        (done, None)
    }

    /// The vector of the interrupt the CPU takes now, if any: an NMI (which blocks
    /// further NMIs until IRETQ), else a maskable interrupt if IF is set. None in an
    /// interrupt shadow.
    fn accept(&mut self, irq: &mut dyn InterruptSource, shadow: bool) -> Option<u8> {
        if shadow {
            return None;
        }
        if !self.state.sys.nmi_blocked && irq.take_nmi() {
            self.state.sys.nmi_blocked = true;
            return Some(NMI);
        }
        if self.state.rflags & Flags::IF == 0 {
            return None;
        }
        irq.take()
    }

    /// Delivers `event`; a fault while delivering makes a double fault (or is
    /// delivered in turn), and one while delivering a double fault shuts down.
    fn raise(&mut self, phys: &mut dyn PhysicalMemory, event: Event) -> Option<Exit> {
        if self.state.sys.efer & super::efer::LMA == 0 {
            // The 32-bit IDT is not implemented: a kernel runs outside long mode only
            // briefly at entry, with interrupts off and nothing to fault.
            tracing::warn!(?event, "software CPU: no event delivery outside long mode");
            return Some(Exit::Shutdown);
        }
        let mut current = event;
        loop {
            let Err(second) = self.deliver(phys, current) else {
                return None;
            };
            if let Event::Exception(e) = current {
                if e.is_trap() {
                    // The INT itself faulted: the fault restarts it.
                    self.state.rip = self.instruction_start;
                }
            }
            current = Event::Exception(match current {
                Event::Exception(Exception::DoubleFault) => return Some(Exit::Shutdown),
                Event::Exception(first) => first.then(second),
                Event::External(_) => second,
            });
        }
    }

    fn deliver(&mut self, phys: &mut dyn PhysicalMemory, event: Event) -> Result<(), Exception> {
        let (vector, error, software) = match event {
            Event::Exception(e) => {
                if let Exception::PageFault { addr, .. } = e {
                    self.state.sys.cr2 = addr;
                }
                let software = matches!(e, Exception::SoftwareInterrupt(_) | Exception::Breakpoint);
                (e.vector(), e.error_code(), software)
            }
            Event::External(v) => (v, None, false),
        };
        self.with_linear(phys, |cpu, mem| {
            cpu.deliver_through(mem, vector, error, software)
        })
    }

    /// Runs `f` on the CPU and its linear memory over `phys` (paging as the CPU's state
    /// says). The CPU's TLB goes into the linear memory meanwhile: `f` needs the whole
    /// CPU too.
    fn with_linear<T>(
        &mut self,
        phys: &mut dyn PhysicalMemory,
        f: impl FnOnce(&mut Self, &mut Linear<'_>) -> T,
    ) -> T {
        let mut tlb = std::mem::replace(&mut self.tlb, Tlb::empty());
        let mut linear = Linear {
            tlb: &mut tlb,
            phys,
            mode: PagingMode::of(&self.state),
        };
        let result = f(self, &mut linear);
        self.tlb = tlb;
        result
    }

    /// Reads gate `vector`, switches stacks if the privilege changes (or the gate names
    /// an IST stack), pushes the frame and enters the handler.
    fn deliver_through(
        &mut self,
        mem: &mut Linear<'_>,
        vector: u8,
        error: Option<u32>,
        software: bool,
    ) -> Result<(), Exception> {
        let st = &self.state;
        let gate_error = u32::from(vector) * 8 + 2 + u32::from(!software);
        let idtr = st.sys.idtr;
        if u64::from(vector) * 16 + 15 > u64::from(idtr.limit) {
            return Err(Exception::GeneralProtection(gate_error));
        }
        let mut raw = [0u8; 16];
        mem.read(
            idtr.base.wrapping_add(u64::from(vector) * 16),
            &mut raw,
            Access::System,
        )?;
        let lo = u64::from_le_bytes(raw[..8].try_into().expect("8 bytes"));
        let hi = u64::from_le_bytes(raw[8..].try_into().expect("8 bytes"));
        let kind = (lo >> 40) & 0xf;
        if kind != 0xe && kind != 0xf {
            return Err(Exception::GeneralProtection(gate_error));
        }
        if software && ((lo >> 45) & 3) < u64::from(st.sys.cpl) {
            return Err(Exception::GeneralProtection(gate_error));
        }
        if lo & (1 << 47) == 0 {
            return Err(Exception::SegmentNotPresent(gate_error));
        }
        let offset = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | ((hi & 0xffff_ffff) << 32);
        let cs = code_segment(st, mem, (lo >> 16) as u16)?;
        if !cs.long() {
            // Long-mode gates lead to 64-bit code only.
            return Err(Exception::GeneralProtection(u32::from(cs.selector & !3)));
        }
        let (old_cpl, new_cpl) = (st.sys.cpl, cs.dpl());
        if new_cpl > old_cpl {
            return Err(Exception::GeneralProtection(u32::from(cs.selector & !3)));
        }
        let ist = (lo >> 32) & 7;
        let rsp = if ist != 0 {
            tss_field(st, mem, 0x1c + 8 * ist)?
        } else if new_cpl < old_cpl {
            tss_field(st, mem, 4 + 8 * u64::from(new_cpl))?
        } else {
            st.reg(Gpr::Rsp)
        };
        let frame = [
            u64::from(st.seg[2].selector),
            st.reg(Gpr::Rsp),
            st.rflags,
            u64::from(st.seg[1].selector),
            st.rip,
        ];
        // The frame is written with the handler's privilege.
        mem.mode.user = new_cpl == 3;
        let mut at = rsp & !0xf;
        for value in frame.iter().chain(error.map(u64::from).as_ref()) {
            at = at.wrapping_sub(8);
            mem.write(at, &value.to_le_bytes())?;
        }
        let st = &mut self.state;
        st.set_reg(Gpr::Rsp, at);
        if new_cpl < old_cpl {
            st.seg[2] = Segment {
                selector: u16::from(new_cpl),
                ..Segment::default()
            };
        }
        set_code_segment(st, cs, new_cpl);
        st.rip = offset;
        st.rflags &= !CLEARED_ON_DELIVERY;
        if kind == 0xe {
            st.rflags &= !Flags::IF;
        }
        Ok(())
    }
}
