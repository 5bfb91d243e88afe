/* Prints its arguments, and exits with their count. */
#include "sys.h"

int main(int argc, char **argv) {
    out("argc: "); out_u64((u64)argc); out("\n");
    for (int i = 1; i < argc; i++) { out("argv: "); out(argv[i]); out("\n"); }
    return argc;
}
