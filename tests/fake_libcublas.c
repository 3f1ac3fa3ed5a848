/* A test double for libcublas (NOT a GPU): with the fake libcuda.so.1, device memory is host
 * memory, so cublasSgemm_v2/cublasDgemm_v2 compute the column-major product itself, as cuBLAS
 * defines it, and write one line to $FAKE_CUDA_LOG: "cublas <s|d>gemm ta tb m n k lda ldb ldc".
 * Build: cc -shared -fPIC -o libcublas.so fake_libcublas.c
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void logf_(const char *fmt, ...) {
    const char *path = getenv("FAKE_CUDA_LOG");
    if (!path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

int cublasCreate_v2(void **handle) { *handle = (void *)0x2; return 0; }

#define GEMM(NAME, T, TAG)                                                                       \
int NAME(void *h, int ta, int tb, int m, int n, int k, const T *alpha, const T *A, int lda,      \
         const T *B, int ldb, const T *beta, T *C, int ldc) {                                     \
    (void)h;                                                                                       \
    logf_("cublas " TAG " %d %d %d %d %d %d %d %d\n", ta, tb, m, n, k, lda, ldb, ldc);            \
    if (lda < 1 || ldb < 1 || ldc < m) return 7; /* CUBLAS_STATUS_INVALID_VALUE */               \
    for (int j = 0; j < n; j++)                                                                    \
        for (int i = 0; i < m; i++) {                                                              \
            T s = 0;                                                                               \
            for (int p = 0; p < k; p++)                                                            \
                s += (ta ? A[p + (long)i * lda] : A[i + (long)p * lda]) *                          \
                     (tb ? B[j + (long)p * ldb] : B[p + (long)j * ldb]);                           \
            C[i + (long)j * ldc] = *alpha * s + (*beta == 0 ? 0 : *beta * C[i + (long)j * ldc]);   \
        }                                                                                          \
    return 0;                                                                                      \
}

GEMM(cublasSgemm_v2, float, "sgemm")
GEMM(cublasDgemm_v2, double, "dgemm")
