/* Executes an AVX instruction. The software CPU does not advertise AVX, so it must die
 * of SIGILL, as a CPU without AVX would make it. */
#include "sys.h"

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    out("before\n");
    __asm__ volatile("vpxor %ymm0, %ymm0, %ymm0");
    out("after\n");
    return 0;
}
