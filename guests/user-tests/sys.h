/* A freestanding runtime for gasang's user-run test programs: raw Linux system calls,
 * no libc. Built with -nostdlib -static -mgeneral-regs-only, so the programs exercise
 * the software CPU's integer instructions and the system call layer only. */
#ifndef GASANG_SYS_H
#define GASANG_SYS_H

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef unsigned char u8;

static inline i64 sys3(i64 n, i64 a, i64 b, i64 c) {
    i64 ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static inline i64 sys6(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e, i64 f) {
    i64 ret;
    register i64 r10 __asm__("r10") = d;
    register i64 r8 __asm__("r8") = e;
    register i64 r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static u64 strlen_(const char *s) { u64 n = 0; while (s[n]) n++; return n; }
static void out(const char *s) { sys3(1, 1, (i64)s, (i64)strlen_(s)); }
static void out_u64(u64 v) {
    char buf[24]; int i = 23; buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    out(buf + i);
}
static void out_hex(u64 v) {
    char buf[20]; int i = 19; buf[i] = 0;
    do { buf[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    out("0x"); out(buf + i);
}
static __attribute__((noreturn)) void exit_(int status) { sys3(231, status, 0, 0); for (;;) {} }

void *memset(void *d, int c, u64 n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, u64 n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }

int main(int argc, char **argv);

/* The process entry: RSP points at argc, then argv. */
__asm__(".global _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov (%rsp), %rdi\n  lea 8(%rsp), %rsi\n  and $-16, %rsp\n"
        "  call main\n  mov %eax, %edi\n  mov $231, %eax\n  syscall\n  hlt\n");
#endif
