/*
 * Checks that the guest kernel keeps each process's vector registers across task switches: forks N
 * processes, each holding its own pattern in ymm8 (and zmm24 and k1 where XCR0 enables AVX-512) while
 * yielding the CPU, and counts the processes that saw a register change under them.
 *
 * Used on PVM hosts, where guest user space runs with the host's XCR0 whatever the guest kernel saves
 * (docs/PERFORMANCE.md, "Reference KVM monitor", finding 4). Build it static and without compiler
 * vectorisation, so only the inline assembly touches the registers under test:
 *     gcc -static -O1 -fno-tree-vectorize -o vector-registers tests/scripts/pvm-vector-registers.c
 * Usage in the guest: vector-registers [PROCESSES] [ITERATIONS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <unistd.h>
#include <sys/wait.h>
#include <stdint.h>
#include <string.h>
static int zmm;
static int differ(const uint32_t *a, const volatile uint32_t *b, int n) { int d = 0; for (int i = 0; i < n; i++) d |= a[i] != b[i]; return d; }
static int run(uint32_t pat, long iters) {
    uint32_t in[16], out[16]; uint64_t kin = pat & 0xffff, kout;
    for (int i = 0; i < 16; i++) in[i] = pat;
    __asm__ volatile("vmovdqu %0, %%ymm8" :: "m"(in) : "xmm8");
    if (zmm) __asm__ volatile("vmovdqu32 %0, %%zmm24\n kmovq %1, %%k1" :: "m"(in), "r"(kin));
    long bad = 0;
    for (long n = 0; n < iters; n++) {
        if (n % 16 == 0) sched_yield();
        __asm__ volatile("vmovdqu %%ymm8, %0" : "=m"(out));
        int wrong = differ(in, out, 8);
        if (zmm) {
            __asm__ volatile("vmovdqu32 %%zmm24, %0\n kmovq %%k1, %1" : "=m"(out), "=r"(kout));
            wrong |= differ(in, out, 16) || kout != kin;
        }
        if (wrong) {
            if (bad < 3) printf("pid %d pattern %08x: got %08x %08x .. %08x %08x (iteration %ld)\n", getpid(), pat, out[0], out[3], out[4], out[7], n);
            bad++;
            __asm__ volatile("vmovdqu %0, %%ymm8" :: "m"(in) : "xmm8");
            if (zmm) __asm__ volatile("vmovdqu32 %0, %%zmm24\n kmovq %1, %%k1" :: "m"(in), "r"(kin));
        }
    }
    return bad != 0;
}
int main(int argc, char **argv) {
    unsigned lo, hi; __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    unsigned a, b, c, d; __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    zmm = (lo & 0xe0) == 0xe0;
    printf("VECTOR-REGISTERS zmm24/k1 checked too: %d\n", zmm);
    printf("VECTOR-REGISTERS ring 3: XCR0 %#x, CPUID.1:ECX %#x (OSXSAVE %u AVX %u)\n", lo, c, (c >> 27) & 1, (c >> 28) & 1);
    int procs = argc > 1 ? atoi(argv[1]) : 4;
    long iters = argc > 2 ? atol(argv[2]) : 20000;
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) _exit(run(0x11111111u * (p + 1), iters));
    }
    int corrupted = 0, status;
    while (wait(&status) > 0) if (!WIFEXITED(status) || WEXITSTATUS(status)) corrupted++;
    printf("VECTOR-REGISTERS %d of %d processes saw a vector register change under them\n", corrupted, procs);
    return 0;
}
