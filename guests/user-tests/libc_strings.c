/* Strings, sorting and hashing through glibc (its SSE2 string functions included). */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint32_t crc32(const unsigned char *p, size_t n)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t crc = 0xffffffffu;
    while (n--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
    return h;
}

int main(void)
{
    /* Sorting: 200000 pseudo-random integers, then strings. */
    enum { N = 20000 };
    int *v = malloc(N * sizeof *v);
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        v[i] = (int)(x >> 1) - (1 << 30);
    }
    qsort(v, N, sizeof *v, by_int);
    int sorted = 1;
    long long sum = 0;
    for (int i = 0; i < N; i++) {
        sorted &= i == 0 || v[i - 1] <= v[i];
        sum += v[i];
    }
    printf("ints sorted %d min %d max %d sum %lld\n", sorted, v[0], v[N - 1], sum);
    free(v);

    char *words[500];
    char buf[64];
    for (int i = 0; i < 500; i++) {
        x = x * 1103515245u + 12345u;
        snprintf(buf, sizeof buf, "w%08x-%d", x, i % 37);
        words[i] = strdup(buf);
    }
    qsort(words, 500, sizeof *words, by_string);
    printf("first %s last %s\n", words[0], words[499]);

    /* String functions at many lengths and alignments. */
    char text[4096];
    size_t len = 0;
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "%s ", words[i]);
    printf("len %zu strlen %zu\n", len, strlen(text));
    printf("strchr %td strrchr %td\n", strchr(text, '-') - text, strrchr(text, 'w') - text);
    printf("strstr %td memchr %td\n", strstr(text, "-36 ") - text,
           (char *)memchr(text, '9', len) - text);
    char copy[4096];
    memcpy(copy, text, len + 1);
    memmove(copy + 3, copy, 1000);
    printf("memcmp %d strncmp %d\n", memcmp(copy, text, len) > 0, strncmp(copy + 3, text, 1000));
    for (int i = 0; copy[i]; i++)
        copy[i] = (char)toupper((unsigned char)copy[i]);
    printf("upper %.40s\n", copy);
    printf("strspn %zu strcspn %zu\n", strspn(text, "w0123456789abcdef"), strcspn(text, " -"));
    int tokens = 0;
    for (char *t = strtok(copy, " -"); t; t = strtok(NULL, " -"))
        tokens++;
    printf("tokens %d\n", tokens);

    /* Hashing. */
    printf("crc32 %08x fnv1a %016llx\n", crc32((unsigned char *)text, len),
           (unsigned long long)fnv1a(text));
    printf("strtol %ld strtoul %lu atoi %d\n", strtol("-0x7fffffff", NULL, 16),
           strtoul("18446744073709551615", NULL, 10), atoi("  -42xyz"));
    for (int i = 0; i < 500; i++)
        free(words[i]);
    return 0;
}
