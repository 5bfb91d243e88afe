/* CPU-bound work with a checkable answer: hashing, sorting, division, bit tricks. */
#include "sys.h"

static u64 state = 88172645463325252ull;
static u64 next(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }

/* The sort's size: small for the tests, larger for the benchmark (-DSORT_N=4096). */
#ifndef SORT_N
#define SORT_N 1024
#endif

static u32 data[SORT_N];
static u8 bytes[1 << 16];

static u64 fnv1a(const u8 *p, u64 n) {
    u64 h = 1469598103934665603ull;
    for (u64 i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

static void insertion_sort(u32 *a, int n) {
    for (int i = 1; i < n; i++) {
        u32 v = a[i]; int j = i - 1;
        while (j >= 0 && a[j] > v) { a[j + 1] = a[j]; j--; }
        a[j + 1] = v;
    }
}

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    for (u64 i = 0; i < sizeof bytes; i++) bytes[i] = (u8)next();
    out("fnv1a: "); out_hex(fnv1a(bytes, sizeof bytes)); out("\n");
    for (int i = 0; i < SORT_N; i++) data[i] = (u32)next();
    insertion_sort(data, SORT_N);
    u64 sorted = 1, sum = 0;
    for (int i = 1; i < SORT_N; i++) if (data[i - 1] > data[i]) sorted = 0;
    for (int i = 0; i < SORT_N; i++) sum += data[i] % 1000003u;
    out("sorted: "); out_u64(sorted); out("\nsum: "); out_u64(sum); out("\n");
    i64 acc = 0;
    for (i64 i = 1; i < 20000; i++) acc += (i * 7919) / (i % 97 + 1) - (acc >> 3) + __builtin_popcountll((u64)i);
    out("mixed: "); out_hex((u64)acc); out("\n");
    u64 bits = 0;
    for (u64 i = 1; i < 5000; i++) bits ^= (u64)__builtin_ctzll(i) << (i % 64) | (u64)__builtin_clzll(i * 2654435761ull);
    out("bits: "); out_hex(bits); out("\n");
    return 0;
}
