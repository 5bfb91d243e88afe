/* xfer: moves bytes over TCP or vsock inside a test guest, in 1 MiB writes (busybox
 * nc writes 1 KiB at a time, which on the software CPU measures the guest's system
 * calls rather than the device).
 *
 *   xfer send tcp:IP:PORT FILE     connect, send FILE, half-close, wait for the close
 *   xfer send vsock:CID:PORT FILE
 *   xfer recv tcp:PORT             listen, accept one, copy it to stdout
 *   xfer recv vsock:PORT
 *
 * Built static with glibc by the tests and put into the guest's initramfs. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (1 << 20)
static char buf[CHUNK];

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Fills *sa from "tcp:IP:PORT", "tcp:PORT", "vsock:CID:PORT" or "vsock:PORT". */
static socklen_t address(const char *spec, struct sockaddr_storage *sa, int *family) {
    char copy[128];
    strncpy(copy, spec, sizeof copy - 1);
    copy[sizeof copy - 1] = 0;
    char *kind = strtok(copy, ":"), *a = strtok(NULL, ":"), *b = strtok(NULL, ":");
    if (!kind || !a) {
        fprintf(stderr, "xfer: bad address %s\n", spec);
        exit(2);
    }
    memset(sa, 0, sizeof *sa);
    if (strcmp(kind, "vsock") == 0) {
        struct sockaddr_vm *vm = (struct sockaddr_vm *)sa;
        vm->svm_family = AF_VSOCK;
        vm->svm_cid = b ? (unsigned)atoi(a) : VMADDR_CID_ANY;
        vm->svm_port = (unsigned)atoi(b ? b : a);
        *family = AF_VSOCK;
        return sizeof *vm;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    in->sin_family = AF_INET;
    in->sin_port = htons(atoi(b ? b : a));
    in->sin_addr.s_addr = b ? inet_addr(a) : INADDR_ANY;
    *family = AF_INET;
    return sizeof *in;
}

static void write_all(int fd, const char *p, ssize_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0)
            die("write");
        p += w;
        n -= w;
    }
}

static int send_file(const char *spec, const char *path) {
    struct sockaddr_storage sa;
    int family;
    socklen_t len = address(spec, &sa, &family);
    int s = socket(family, SOCK_STREAM, 0), in = open(path, O_RDONLY);
    if (s < 0 || in < 0)
        die("socket/open");
    if (connect(s, (struct sockaddr *)&sa, len) < 0)
        die("connect");
    ssize_t n;
    while ((n = read(in, buf, CHUNK)) > 0)
        write_all(s, buf, n);
    shutdown(s, SHUT_WR);
    while (read(s, buf, CHUNK) > 0) {
    }
    return 0;
}

static int recv_one(const char *spec) {
    struct sockaddr_storage sa;
    int family, one = 1;
    socklen_t len = address(spec, &sa, &family);
    int s = socket(family, SOCK_STREAM, 0);
    if (s < 0)
        die("socket");
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&sa, len) < 0 || listen(s, 1) < 0)
        die("bind/listen");
    fprintf(stderr, "xfer: listening on %s\n", spec);
    int c = accept(s, NULL, NULL);
    if (c < 0)
        die("accept");
    ssize_t n;
    while ((n = read(c, buf, CHUNK)) > 0)
        write_all(1, buf, n);
    return n < 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "send") == 0)
        return send_file(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "recv") == 0)
        return recv_one(argv[2]);
    fprintf(stderr, "usage: xfer send ADDR FILE | xfer recv ADDR\n");
    return 2;
}
