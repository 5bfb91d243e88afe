/* Executes an SSE2 instruction: until the software CPU implements SSE it must die of
 * SIGILL, exactly as a CPU without it would make it. */
#include "sys.h"

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    out("before\n");
    __asm__ volatile("pxor %xmm0, %xmm0");
    out("after\n");
    return 0;
}
