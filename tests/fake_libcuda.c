/* A test double for libcuda.so.1 (NOT a GPU), after notes/ptx-gpu/fake_libcuda.c: device
 * memory is host memory, modules are the PTX text, and cuLaunchKernel runs nothing but
 * writes one line to $FAKE_CUDA_LOG: the kernel's name, grid, block and each parameter
 * (read with the sizes the PTX declares), so tests can check how launches are packed.
 * $FAKE_CUDA_DEVICES=0 makes it a driver that sees no GPU.
 * cuGetProcAddress_v2 hands out these functions by name, as NVIDIA's cuda-bindings asks for
 * them (the base name; the _v2 variant where there is one).
 * Build: cc -shared -fPIC -o libcuda.so.1 fake_libcuda.c
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
enum { OK = 0, ERR_INVALID_VALUE = 1, ERR_NO_DEVICE = 100, ERR_INVALID_IMAGE = 200, ERR_NOT_FOUND = 500 };

typedef struct { char *ptx; char *names[64]; void *globals[64]; int n; } Module;
typedef struct { Module *mod; char name[256]; } Function;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
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

CUresult cuInit(unsigned flags) { (void)flags; return OK; }
CUresult cuDeviceGetCount(int *n) {
    const char *e = getenv("FAKE_CUDA_DEVICES");
    *n = e ? atoi(e) : 1;
    return OK;
}
CUresult cuDeviceGet(int *dev, int ordinal) { *dev = ordinal; return ordinal == 0 ? OK : ERR_INVALID_VALUE; }
CUresult cuDeviceGetAttribute(int *v, int attr, int dev) { (void)dev; *v = attr == 75 ? 9 : 0; return OK; }
CUresult cuDeviceGetName(char *name, int len, int dev) { (void)dev; snprintf(name, len, "fake device"); return OK; }
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) { (void)dev; *ctx = (void *)0x1; return OK; }
CUresult cuCtxSetCurrent(void *ctx) { (void)ctx; return OK; }
CUresult cuCtxSynchronize(void) { return OK; }

CUresult cuModuleLoadData(void **mod, const void *image) {
    const char *s = (const char *)image;
    if (!strstr(s, ".version") || !strstr(s, ".target")) return ERR_INVALID_IMAGE;
    Module *m = calloc(1, sizeof *m);
    m->ptx = strdup(s);
    *mod = m;
    logf_("load %zu\n", strlen(s));
    return OK;
}
CUresult cuModuleGetFunction(void **fn, void *mod, const char *name) {
    Module *m = mod;
    char pat[300];
    snprintf(pat, sizeof pat, ".entry %s(", name);
    if (!strstr(m->ptx, pat)) return ERR_NOT_FOUND;
    Function *f = calloc(1, sizeof *f);
    f->mod = m;
    snprintf(f->name, sizeof f->name, "%s", name);
    *fn = f;
    return OK;
}
CUresult cuModuleGetGlobal_v2(uint64_t *ptr, size_t *size, void *mod, const char *name) {
    Module *m = mod;
    char pat[300];
    snprintf(pat, sizeof pat, " %s", name);
    if (!strstr(m->ptx, pat)) return ERR_NOT_FOUND;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0) { *ptr = (uint64_t)(uintptr_t)m->globals[i]; *size = 0; return OK; }
    if (m->n == 64) return ERR_INVALID_VALUE;
    m->names[m->n] = strdup(name);
    m->globals[m->n] = calloc(1, 1 << 16);
    *ptr = (uint64_t)(uintptr_t)m->globals[m->n++];
    if (size) *size = 0;
    return OK;
}
CUresult cuMemAlloc_v2(uint64_t *p, size_t n) {
    void *q = malloc(n);
    if (!q) return 2;  /* CUDA_ERROR_OUT_OF_MEMORY */
    memset(q, 0, n);
    *p = (uint64_t)(uintptr_t)q;
    logf_("alloc %zu 0x%llx\n", n, (unsigned long long)*p);
    return OK;
}
CUresult cuMemFree_v2(uint64_t p) { logf_("free 0x%llx\n", (unsigned long long)p); free((void *)(uintptr_t)p); return OK; }
CUresult cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t n) {
    logf_("htod %zu 0x%llx\n", n, (unsigned long long)dst);
    memcpy((void *)(uintptr_t)dst, src, n);
    return OK;
}
CUresult cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t n) {
    logf_("dtoh %zu 0x%llx\n", n, (unsigned long long)src);
    memcpy(dst, (void *)(uintptr_t)src, n);
    return OK;
}
CUresult cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t n) {
    memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
    return OK;
}

/* the byte sizes of a kernel's parameters, as its PTX declares them */
static int param_sizes(const Function *f, int *sizes, int max) {
    char pat[300];
    snprintf(pat, sizeof pat, ".entry %s(", f->name);
    const char *p = strstr(f->mod->ptx, pat);
    const char *end = p ? strchr(p, ')') : NULL;
    int n = 0;
    while (p && (p = strstr(p, ".param .")) && p < end && n < max) {
        p += 8;
        int bits = 64;
        if (sscanf(p + 1, "%d", &bits) != 1) bits = 64;
        sizes[n++] = bits / 8;
    }
    return n;
}

CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shmem, void *stream, void **params, void **extra) {
    (void)gz; (void)bz; (void)shmem; (void)stream; (void)extra;
    Function *f = fn;
    if (!f || gx == 0 || gy == 0 || bx == 0 || by == 0 || bx * by > 1024) return ERR_INVALID_VALUE;
    int sizes[128];
    int n = param_sizes(f, sizes, 128);
    logf_("launch %s %u %u %u %u", f->name, gx, gy, bx, by);
    for (int i = 0; i < n; i++) {
        unsigned long long v = 0;
        memcpy(&v, params[i], sizes[i]);
        logf_(" %llu", v);
    }
    logf_("\n");
    return OK;
}
CUresult cuGetErrorName(CUresult e, const char **s) {
    *s = e == ERR_INVALID_IMAGE ? "CUDA_ERROR_INVALID_IMAGE" : e == ERR_NOT_FOUND ? "CUDA_ERROR_NOT_FOUND"
       : e == ERR_INVALID_VALUE ? "CUDA_ERROR_INVALID_VALUE" : "CUDA_ERROR_FAKE";
    return OK;
}
CUresult cuDriverGetVersion(int *version) { *version = 13000; return OK; }
CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, uint64_t flags, int *status) {
    (void)version; (void)flags;
    Dl_info info;
    void *self = dladdr((void *)cuInit, &info) ? dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD) : NULL;
    char name[256];
    *pfn = NULL;
    if (self) {
        snprintf(name, sizeof name, "%s_v2", symbol);
        *pfn = dlsym(self, name);
        if (!*pfn) *pfn = dlsym(self, symbol);
        dlclose(self);
    }
    if (status) *status = *pfn ? 0 : 1;  /* CU_GET_PROC_ADDRESS_SUCCESS / _SYMBOL_NOT_FOUND */
    return *pfn ? OK : ERR_NOT_FOUND;
}
