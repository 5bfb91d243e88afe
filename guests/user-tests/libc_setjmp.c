/* setjmp/longjmp: out of deep recursion, nested, with values kept across the jump. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf outer, inner;
static int depth_reached;

static int dive(int depth, int limit)
{
    volatile char pad[256];
    pad[depth % 256] = (char)depth;
    depth_reached = depth;
    if (depth > limit)
        return 0;
    if (depth == limit)
        longjmp(outer, depth * 10 + pad[depth % 256] % 10);
    return dive(depth + 1, limit) + 1;
}

static void nested(int n)
{
    if (setjmp(inner) == 0) {
        printf("inner set %d\n", n);
        longjmp(inner, n);
    }
    printf("inner returned %d\n", n);
}

int main(void)
{
    volatile int rounds = 0;
    int v = setjmp(outer);
    printf("setjmp returned %d after %d rounds (depth %d)\n", v, rounds, depth_reached);
    if (rounds < 5) {
        rounds++;
        nested(rounds);
        dive(0, 100 * rounds);
    }
    /* longjmp with 0 makes setjmp return 1. */
    jmp_buf zero;
    volatile int once = 0;
    int z = setjmp(zero);
    if (!once) {
        once = 1;
        longjmp(zero, 0);
    }
    printf("longjmp 0 gives %d\n", z);
    return rounds;
}
