/* mesh-fnv1a FILE: for each "OFFSET SIZE" line on stdin, print the 64-bit FNV-1a
 * hash (16 lowercase hex digits) of those bytes of FILE, exactly as ggml-rpc's
 * fnv_hash() names tensors in rpc-server's cache. Built by llama.cpp/build.py;
 * the node agent uses it to prepare zero-transfer weights (Python would take
 * minutes per gigabyte for this byte-serial hash). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE < offsets\n", argv[0]);
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    const uint8_t *base = st.st_size ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    if (st.st_size && base == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    unsigned long long offset, size;
    while (scanf("%llu %llu", &offset, &size) == 2) {
        if (offset > (unsigned long long)st.st_size || size > (unsigned long long)st.st_size - offset) {
            printf("out-of-range\n");
        } else {
            uint64_t hash = 0xcbf29ce484222325ULL;
            for (const uint8_t *p = base + offset, *end = p + size; p < end; ++p) {
                hash ^= *p;
                hash *= 0x100000001b3ULL;
            }
            printf("%016" PRIx64 "\n", hash);
        }
        fflush(stdout);
    }
    return 0;
}
