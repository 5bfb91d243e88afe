/* The memory system calls: brk grows the heap, mmap maps, munmap unmaps. */
#include "sys.h"

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    u64 start = (u64)sys3(12, 0, 0, 0);
    u64 grown = (u64)sys3(12, (i64)(start + 100000), 0, 0);
    out("brk grew: "); out_u64(grown - start); out("\n");
    u8 *heap = (u8 *)start;
    for (int i = 0; i < 100000; i++) heap[i] = (u8)i;
    u64 sum = 0;
    for (int i = 0; i < 100000; i++) sum += heap[i];
    out("heap sum: "); out_u64(sum); out("\n");
    u8 *m = (u8 *)sys6(9, 0, 1 << 20, 3, 0x22, -1, 0); /* PROT_READ|WRITE, MAP_PRIVATE|ANON */
    for (int i = 0; i < (1 << 20); i += 4096) m[i] = 7;
    out("mmap page: "); out_u64(m[4096 * 9]); out("\n");
    out("munmap: "); out_u64((u64)sys3(11, (i64)m, 1 << 20, 0)); out("\n");
    return 0;
}
