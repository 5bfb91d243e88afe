/* Floating point through glibc: printf and strtod formatting, libm, long double (x87). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    static const double values[] = {
        0.0, -0.0, 1.0, -1.5, 3.141592653589793, 2.718281828459045, 1e-300, 4.9e-324,
        1.7976931348623157e308, 123456789.125, 0.1, 1.0 / 3.0, 6.02214076e23,
    };
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        double v = values[i];
        printf("%f|%e|%g|%.17g|%a|%10.3f|%-12.4e|\n", v, v, v, v, v, v, v);
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", v);
        printf("round trip %s: %d\n", buf, strtod(buf, NULL) == v);
    }
    printf("inf %f nan %f %g\n", INFINITY, NAN, -INFINITY);
    printf("float %.9g %.9g\n", (double)(1.0f / 3.0f), (double)3.4028235e38f);

    /* libm: results printed to full precision must match the same code run natively. */
    double acc = 0;
    for (int i = 1; i <= 200; i++) {
        double x = i * 0.37;
        acc += sin(x) * cos(x / 3) + exp(-x / 50) + log(x) + sqrt(x) + pow(x, 0.3)
               + atan2(x, 7.0) + tanh(x / 40) + cbrt(x) + fmod(x, 1.7) + floor(x * 3.3) / 7;
    }
    printf("libm sum %.17g\n", acc);
    printf("hypot %.17g expm1 %.17g log1p %.17g\n", hypot(3e200, 4e200), expm1(1e-10),
           log1p(1e-12));

    /* long double is the x87's 80-bit format. */
    long double l = 1.0L;
    for (int i = 1; i <= 25; i++) {
        l = l * i / 3.0L + 1.0L / i;
    }
    printf("long double %.21Lg %La\n", l, l);
    printf("sqrtl %.21Lg sinl %.21Lg expl %.21Lg\n", sqrtl(2.0L), sinl(1.0L), expl(1.5L));
    printf("strtold %.21Lg\n", strtold("1.234567890123456789012e100", NULL));
    printf("float rounding %.0f %.0f %.0f %.0f\n", 0.5, 1.5, 2.5, -2.5);
    printf("lrint %ld %ld rint %g nearbyint %g\n", lrint(2.5), lrint(-3.5), rint(0.5),
           nearbyint(1.5));
    return 0;
}
