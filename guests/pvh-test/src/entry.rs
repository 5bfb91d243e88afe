//! The two entry points.
//!
//! - `pvh_start` (PVH): 32-bit protected mode, paging off, EBX = hvm_start_info. Prints
//!   `entry: pvh` at once, identity-maps the first 4 GiB with 2 MiB pages, enters long
//!   mode and calls `rust_main(start_info)`.
//! - `linux64_start` (Linux 64-bit boot protocol): long mode, RSI = zero page. Prints
//!   `entry: linux64` and calls `rust_main_linux64(zero_page)`.

// The note that makes this ELF a PVH kernel: its 32-bit entry point.
#[cfg(not(feature = "linux64"))]
core::arch::global_asm!(
    r#"
    .section .note.Xen, "a"
    .align 4
    .long 4                 /* name size: "Xen\0" */
    .long 4                 /* descriptor size */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .align 4
    .long pvh_start
    .align 4
"#,
    options(att_syntax)
);

// The ELF entry point: where a loader that ignores the PVH note jumps.
#[cfg(not(feature = "linux64"))]
core::arch::global_asm!(".global guest_entry", ".set guest_entry, pvh_start");
#[cfg(feature = "linux64")]
core::arch::global_asm!(".global guest_entry", ".set guest_entry, linux64_start");

// The Linux 64-bit boot protocol entry (the ELF entry with `--features linux64`): long
// mode with the loader's identity map, RSI = zero page.
core::arch::global_asm!(
    r#"
    .section .text.entry64, "ax"
    .code64
    .global linux64_start
linux64_start:
    cli
    lea entry64_msg(%rip), %rdi
    mov $0x3f8, %dx
6:  movb (%rdi), %al
    test %al, %al
    jz 7f
    out %al, %dx
    inc %rdi
    jmp 6b
7:  lea stack_top(%rip), %rsp
    mov %rsi, %rdi
    call rust_main_linux64
8:  hlt
    jmp 8b

    .section .rodata
entry64_msg:
    .asciz "entry: linux64\n"
"#,
    options(att_syntax)
);

core::arch::global_asm!(
    r#"
    .section .text.entry32, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    mov %ebx, %esi
    /* First sign of life before any setup, so boot-time benchmarks time the VMM. */
    mov $entry_msg, %edi
    mov $0x3f8, %dx
4:  movb (%edi), %al
    test %al, %al
    jz 5f
    out %al, %dx
    inc %edi
    jmp 4b
5:
    lgdt (gdt_ptr)
    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages. */
    mov $pdpt, %eax
    or $3, %eax
    mov %eax, (pml4)
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $pd, %eax
    or $3, %eax
    mov %eax, pdpt(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jne 1b
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, pd(,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax
    mov %eax, pd+4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b
    /* CR4: PAE, OSFXSR, OSXMMEXCPT. */
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    /* EFER.LME */
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    /* CR0: PG, PE, MP; clear EM. */
    mov %cr0, %eax
    and $0xfffffffb, %eax
    or $0x80000003, %eax
    mov %eax, %cr0
    ljmp $0x08, $entry64

    .code64
entry64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    lea stack_top(%rip), %rsp
    mov %esi, %edi
    call rust_main
3:  hlt
    jmp 3b

    .section .rodata
entry_msg:
    .asciz "entry: pvh\n"
    .align 8
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
gdt_ptr:
    .word gdt_ptr - gdt - 1
    .long gdt

    .section .bss
    .align 4096
pml4: .skip 4096
pdpt: .skip 4096
pd:   .skip 4096 * 4
stack: .skip 16384
stack_top:
    .code64
    .text
"#,
    options(att_syntax)
);
