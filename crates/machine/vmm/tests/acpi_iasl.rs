//! Every table gasang's machine gets must disassemble cleanly with ACPICA's `iasl -d`
//! (Debian's acpica-tools): the same parser family the Linux kernel uses.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::Command;

use gasang_acpi::write_tables;
use gasang_memory::GuestMemory;
use gasang_vcpu::CpuTopology;
use vm_memory::{Bytes, GuestAddress};

fn read(memory: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    memory.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

fn table_at(memory: &GuestMemory, addr: u64) -> Vec<u8> {
    let header = read(memory, addr, 8);
    let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
    read(memory, addr, len)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// All tables, by walking RSDP -> XSDT -> FADT -> (FACS, DSDT) as an OS does.
/// With a PCI host bridge if `pci`.
fn tables(pci: bool) -> Vec<(String, Vec<u8>)> {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let host = pci.then(|| gasang_vmm::pci_host("2G".parse().unwrap()));
    let machine = gasang_vmm::acpi_machine(CpuTopology::new(4).unwrap(), host);
    let rsdp_addr = write_tables(&memory, &machine).unwrap();
    let rsdp = read(&memory, rsdp_addr, 36);
    let xsdt = table_at(&memory, u64_at(&rsdp, 24));
    // The RSDP has no standard table header: this iasl cannot load it from a file.
    // Its checksums and pointer are checked by the crate's unit tests.
    let mut tables = Vec::new();
    for entry in xsdt[36..].chunks(8) {
        let table = table_at(&memory, u64::from_le_bytes(entry.try_into().unwrap()));
        if &table[..4] == b"FACP" {
            tables.push(("facs".into(), read(&memory, u64_at(&table, 132), 64)));
            tables.push(("dsdt".into(), table_at(&memory, u64_at(&table, 140))));
        }
        let name = String::from_utf8_lossy(&table[..4]).to_lowercase();
        tables.push((name, table));
    }
    tables.push(("xsdt".into(), xsdt));
    tables
}

#[test]
fn test_iasl_disassembles_every_table_cleanly() {
    let tables = tables(false);
    assert_eq!(tables.len(), 5, "FACS, DSDT, FADT, MADT, XSDT");
    disassemble(&tables, "legacy");
}

#[test]
fn test_iasl_disassembles_pci_machine_with_mcfg_and_host_bridge() {
    let tables = tables(true);
    let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["facs", "dsdt", "facp", "apic", "mcfg", "xsdt"]);
    let dsl = disassemble(&tables, "pci");
    for needle in [
        "PNP0A08",
        "PCI0",
        "_PRT",
        "PNP0C02",
        "Base Address : 00000000E0000000",
        "0xC0000000",
    ] {
        assert!(dsl.contains(needle), "the DSDT lacks {needle}:\n{dsl}");
    }
}

/// Disassembles each table with `iasl -d`, checks that it is clean, and returns the
/// DSDT's source.
fn disassemble(tables: &[(String, Vec<u8>)], which: &str) -> String {
    let dir = std::env::temp_dir().join(format!("gasang-iasl-{which}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut dsdt = String::new();
    for (name, bytes) in tables {
        let path: PathBuf = dir.join(format!("{name}.dat"));
        std::fs::write(&path, bytes).unwrap();
        let out = Command::new("iasl")
            .arg("-d")
            .arg(&path)
            .output()
            .expect("iasl is needed: apt-get install acpica-tools");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "iasl -d {name}: {text}");
        for bad in ["Error", "Warning", "Invalid", "Incorrect checksum"] {
            assert!(
                !text.contains(bad),
                "iasl -d {name} reports '{bad}':\n{text}"
            );
        }
        let dsl = std::fs::read_to_string(path.with_extension("dsl")).unwrap();
        assert!(
            !dsl.contains("**** "),
            "iasl -d {name} flags a problem:\n{dsl}"
        );
        if name == "dsdt" || name == "mcfg" {
            dsdt.push_str(&dsl);
        }
    }
    if std::env::var_os("GASANG_KEEP_IASL").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dsdt
}
