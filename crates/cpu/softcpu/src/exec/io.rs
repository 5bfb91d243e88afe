//! Port I/O: IN and OUT, to the platform (`PhysicalMemory::port_read` and
//! `port_write`, through [`crate::Memory::platform`]). Allowed while CPL <= IOPL; the TSS I/O permission
//! bitmap is not consulted (Linux gives user mode no ports but through it, and the
//! bitmap's absence only refuses more). INS and OUTS are not implemented (#UD).

use iced_x86::{Mnemonic, OpKind, Register};

use super::Exec;
use crate::cpu::Exception;

/// Runs IN or OUT; `None` if `cx.ins` is neither.
pub fn execute(cx: &mut Exec<'_>) -> Option<Result<(), Exception>> {
    let input = match cx.ins.mnemonic() {
        Mnemonic::In => true,
        Mnemonic::Out => false,
        _ => return None,
    };
    Some(port_io(cx, input))
}

fn port_io(cx: &mut Exec<'_>, input: bool) -> Result<(), Exception> {
    let iopl = ((cx.st.rflags >> 12) & 3) as u8;
    if cx.st.sys.cpl > iopl {
        return Err(Exception::GeneralProtection(0));
    }
    // IN acc, port / OUT port, acc: the port is an 8-bit immediate or DX.
    let (port_operand, data_register) = if input {
        (1, cx.ins.op0_register())
    } else {
        (0, cx.ins.op1_register())
    };
    let port = match cx.ins.op_kind(port_operand) {
        OpKind::Immediate8 => cx.ins.immediate8() as u16,
        _ => cx.reg(Register::DX) as u16,
    };
    let len = data_register.size();
    if input {
        let mut data = [0u8; 4];
        cx.with_platform(|p| p.port_read(port, &mut data[..len]));
        cx.set_reg(data_register, u64::from(u32::from_le_bytes(data)));
    } else {
        let value = cx.reg(data_register) as u32;
        cx.with_platform(|p| p.port_write(port, &value.to_le_bytes()[..len]));
    }
    Ok(())
}
