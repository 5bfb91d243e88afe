//! Static x86-64 ELF executables: the header and the loadable segments.

/// The file is not a program `user-run` can load.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file.
    #[error("not an ELF file")]
    NotElf,
    /// An ELF for another machine or class.
    #[error("not a 64-bit x86-64 ELF executable")]
    WrongMachine,
    /// Dynamically linked (needs an interpreter).
    #[error("a dynamically linked program (needs {0}): only static programs can run")]
    Dynamic(String),
    /// A header or segment points outside the file.
    #[error("truncated or corrupt ELF: {0}")]
    Corrupt(&'static str),
}

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address.
    pub vaddr: u64,
    /// Bytes in memory (the tail beyond `file_size` is zero).
    pub mem_size: u64,
    /// Offset in the file.
    pub offset: u64,
    /// Bytes in the file.
    pub file_size: u64,
}

/// What the loader needs from an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// Entry point.
    pub entry: u64,
    /// PT_LOAD segments.
    pub segments: Vec<Segment>,
    /// Where the program headers are in memory (AT_PHDR), if loaded.
    pub phdr: u64,
    /// Number of program headers (AT_PHNUM).
    pub phnum: u16,
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, ElfError> {
    let bytes = b
        .get(o..o + 2)
        .ok_or(ElfError::Corrupt("header past the end"))?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(b: &[u8], o: usize) -> Result<u32, ElfError> {
    let bytes = b
        .get(o..o + 4)
        .ok_or(ElfError::Corrupt("header past the end"))?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
}

fn u64_at(b: &[u8], o: usize) -> Result<u64, ElfError> {
    let bytes = b
        .get(o..o + 8)
        .ok_or(ElfError::Corrupt("header past the end"))?;
    Ok(u64::from_le_bytes(bytes.try_into().expect("eight bytes")))
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

/// Reads the program header at file offset `ph` into `exe`: a loadable segment, or the
/// program-header address; an interpreter means the program is dynamically linked.
fn read_program_header(file: &[u8], ph: usize, exe: &mut Executable) -> Result<(), ElfError> {
    let kind = u32_at(file, ph)?;
    let (offset, vaddr) = (u64_at(file, ph + 8)?, u64_at(file, ph + 16)?);
    let (file_size, mem_size) = (u64_at(file, ph + 32)?, u64_at(file, ph + 40)?);
    match kind {
        PT_LOAD => {
            let end = offset
                .checked_add(file_size)
                .ok_or(ElfError::Corrupt("segment"))?;
            if end > file.len() as u64 || file_size > mem_size {
                return Err(ElfError::Corrupt("segment outside the file"));
            }
            exe.segments.push(Segment {
                vaddr,
                mem_size,
                offset,
                file_size,
            });
        }
        PT_INTERP => {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let name = file
                .get(start..start.saturating_add(file_size as usize))
                .unwrap_or(b"?");
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_string();
            return Err(ElfError::Dynamic(name));
        }
        PT_PHDR => exe.phdr = vaddr,
        _ => {}
    }
    Ok(())
}

/// Parses `file` (the whole executable).
pub fn parse(file: &[u8]) -> Result<Executable, ElfError> {
    if file.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    let kind = u16_at(file, 16)?;
    if file.get(4) != Some(&2) || file.get(5) != Some(&1) || u16_at(file, 18)? != EM_X86_64 {
        return Err(ElfError::WrongMachine);
    }
    if kind != ET_EXEC && kind != ET_DYN {
        return Err(ElfError::WrongMachine);
    }
    let entry = u64_at(file, 24)?;
    let phoff = usize::try_from(u64_at(file, 32)?).map_err(|_| ElfError::Corrupt("phoff"))?;
    let phentsize = usize::from(u16_at(file, 54)?);
    let phnum = u16_at(file, 56)?;
    if phentsize < 56 {
        return Err(ElfError::Corrupt("program header size"));
    }
    let mut exe = Executable {
        entry,
        segments: Vec::new(),
        phdr: 0,
        phnum,
    };
    for i in 0..usize::from(phnum) {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or(ElfError::Corrupt("program header offset"))?;
        read_program_header(file, ph, &mut exe)?;
    }
    if exe.segments.is_empty() {
        return Err(ElfError::Corrupt("no loadable segment"));
    }
    if exe.phdr == 0 {
        // No PT_PHDR: the headers are mapped if the segment holding phoff is.
        exe.phdr = exe
            .segments
            .iter()
            .find(|s| s.offset <= phoff as u64 && (phoff as u64) < s.offset + s.file_size)
            .map_or(0, |s| s.vaddr + phoff as u64 - s.offset);
    }
    Ok(exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_rejects_non_elf_and_truncated() {
        assert_eq!(parse(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        assert!(matches!(
            parse(b"\x7fELF\x02\x01\x01"),
            Err(ElfError::Corrupt(_))
        ));
    }

    #[test]
    fn test_parse_reads_this_test_binary_as_dynamic_or_static() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        match parse(&me) {
            Ok(exe) => assert!(!exe.segments.is_empty()),
            Err(e) => assert!(matches!(e, ElfError::Dynamic(_)), "{e}"),
        }
    }
}
