/* A compression round trip: LZ77 with a hash chain and a bit-level encoding, on a
 * generated text; the compressed size and checksums must match a native run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WINDOW = 4096, MIN_MATCH = 3, MAX_MATCH = 18, HASH = 1 << 12 };

struct bits {
    uint8_t *buf;
    size_t pos; /* in bits */
};

static void put(struct bits *b, unsigned value, int n)
{
    for (int i = n - 1; i >= 0; i--, b->pos++)
        if (value >> i & 1)
            b->buf[b->pos >> 3] |= (uint8_t)(0x80 >> (b->pos & 7));
}

static unsigned get(struct bits *b, int n)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++, b->pos++)
        v = v << 1 | (b->buf[b->pos >> 3] >> (7 - (b->pos & 7)) & 1);
    return v;
}

static unsigned hash3(const uint8_t *p)
{
    return (unsigned)((p[0] << 8 ^ p[1] << 4 ^ p[2]) * 2654435761u) >> 20 & (HASH - 1);
}

static size_t compress(const uint8_t *in, size_t n, uint8_t *out)
{
    struct bits b = { out, 0 };
    int *head = malloc(HASH * sizeof *head), *prev = malloc(n * sizeof *prev);
    for (int i = 0; i < HASH; i++)
        head[i] = -1;
    put(&b, (unsigned)n, 32);
    for (size_t i = 0; i < n;) {
        size_t best = 0, dist = 0;
        if (i + MIN_MATCH <= n) {
            unsigned h = hash3(in + i);
            for (int c = head[h], tries = 0; c >= 0 && i - (size_t)c <= WINDOW && tries < 64;
                 c = prev[c], tries++) {
                size_t l = 0;
                while (l < MAX_MATCH && i + l < n && in[c + l] == in[i + l])
                    l++;
                if (l > best)
                    best = l, dist = i - (size_t)c;
            }
        }
        size_t step = best >= MIN_MATCH ? best : 1;
        if (best >= MIN_MATCH) {
            put(&b, 1, 1);
            put(&b, (unsigned)(dist - 1), 12);
            put(&b, (unsigned)(best - MIN_MATCH), 4);
        } else {
            put(&b, 0, 1);
            put(&b, in[i], 8);
        }
        for (size_t k = 0; k < step; k++, i++) {
            if (i + MIN_MATCH <= n) {
                unsigned h = hash3(in + i);
                prev[i] = head[h];
                head[h] = (int)i;
            }
        }
    }
    free(head);
    free(prev);
    return (b.pos + 7) / 8;
}

static size_t decompress(uint8_t *in, uint8_t *out)
{
    struct bits b = { in, 0 };
    size_t n = get(&b, 32), i = 0;
    while (i < n) {
        if (get(&b, 1)) {
            size_t dist = get(&b, 12) + 1, len = get(&b, 4) + MIN_MATCH;
            for (size_t k = 0; k < len; k++, i++)
                out[i] = out[i - dist];
        } else {
            out[i++] = (uint8_t)get(&b, 8);
        }
    }
    return n;
}

int main(void)
{
    static const char *words[] = { "the ", "quick ", "brown ", "fox ", "jumps ", "over ",
                                   "lazy ", "dog ", "virtual ", "machine ", "\n" };
    size_t n = 40000;
    uint8_t *text = malloc(n), *packed = calloc(n * 2, 1), *unpacked = malloc(n);
    uint32_t x = 7;
    for (size_t i = 0; i < n;) {
        x = x * 1664525u + 1013904223u;
        const char *w = words[(x >> 16) % 11];
        for (size_t k = 0; w[k] && i < n; k++)
            text[i++] = (uint8_t)w[k];
    }
    size_t size = compress(text, n, packed);
    size_t back = decompress(packed, unpacked);
    uint32_t sum = 0;
    for (size_t i = 0; i < size; i++)
        sum = sum * 31 + packed[i];
    printf("original %zu compressed %zu (%.2f%%) checksum %08x\n", n, size,
           100.0 * (double)size / (double)n, sum);
    printf("round trip %s\n", back == n && memcmp(text, unpacked, n) == 0 ? "ok" : "FAILED");
    return 0;
}
