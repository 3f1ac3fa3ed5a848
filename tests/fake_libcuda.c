/* A test double for libcuda.so.1 (NOT a GPU), after notes/ptx-gpu/fake_libcuda.c: device
 * memory is host memory, modules are the PTX text, and cuLaunchKernel runs nothing but
 * writes to $FAKE_CUDA_LOG the context it runs in and a line with the kernel's name, grid,
 * block and each parameter (read with the sizes the PTX declares), so tests can check how
 * launches are packed.
 * $FAKE_CUDA_DEVICES=0 makes it a driver that sees no GPU; $FAKE_CUDA_FAIL_LAUNCH=1 one
 * whose launches fail. As the real driver, it keeps a
 * current context per thread: memory, module and launch calls made on a thread with none
 * fail with CUDA_ERROR_INVALID_CONTEXT.
 * cuGetProcAddress_v2 hands out these functions by name, as NVIDIA's cuda-bindings asks for
 * them (the base name; the _v2 variant where there is one).
 * Build: cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o libcuda.so.1 fake_libcuda.c
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
enum { OK = 0, ERR_INVALID_VALUE = 1, ERR_NO_DEVICE = 100, ERR_INVALID_IMAGE = 200, ERR_INVALID_CONTEXT = 201,
       ERR_NOT_FOUND = 500 };

/* the calling thread's current context, and a stack under it (cuCtxPush/PopCurrent) */
static __thread void *ctx_stack[16];
static __thread int ctx_depth;
#define CURRENT (ctx_depth ? ctx_stack[ctx_depth - 1] : NULL)
#define NEED_CONTEXT do { if (!CURRENT) return ERR_INVALID_CONTEXT; } while (0)


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
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return OK; }
CUresult cuDeviceComputeCapability(int *major, int *minor, int dev) { (void)dev; *major = 9; *minor = 0; return OK; }
CUresult cuDeviceTotalMem_v2(size_t *bytes, int dev) { (void)dev; *bytes = (size_t)1 << 34; return OK; }
CUresult cuCtxSetCurrent(void *ctx) {
    if (!ctx) { ctx_depth = 0; return OK; }
    if (ctx_depth) ctx_stack[ctx_depth - 1] = ctx; else ctx_stack[ctx_depth++] = ctx;
    return OK;
}
CUresult cuCtxGetCurrent(void **ctx) { *ctx = CURRENT; return OK; }
CUresult cuCtxPushCurrent_v2(void *ctx) {
    if (!ctx || ctx_depth == 16) return ERR_INVALID_VALUE;
    ctx_stack[ctx_depth++] = ctx;
    return OK;
}
CUresult cuCtxPopCurrent_v2(void **ctx) {
    NEED_CONTEXT;
    void *top = ctx_stack[--ctx_depth];
    if (ctx) *ctx = top;
    return OK;
}
/* a context of its own (pycuda's make_context), current once made, as the driver does */
CUresult cuCtxCreate_v4(void **ctx, void *params, unsigned flags, int dev) {
    (void)params; (void)flags; (void)dev;
    static uintptr_t next = 0x100;
    *ctx = (void *)(next++);
    return cuCtxPushCurrent_v2(*ctx);
}
CUresult cuCtxDetach(void *ctx) {
    if (ctx_depth && ctx_stack[ctx_depth - 1] == ctx) ctx_depth--;
    return OK;
}
CUresult cuCtxGetDevice(int *dev) { NEED_CONTEXT; *dev = 0; return OK; }
CUresult cuCtxSynchronize(void) { NEED_CONTEXT; return OK; }

CUresult cuModuleLoadData(void **mod, const void *image) {
    NEED_CONTEXT;
    const char *s = (const char *)image;
    if (!strstr(s, ".version") || !strstr(s, ".target")) return ERR_INVALID_IMAGE;
    Module *m = calloc(1, sizeof *m);
    m->ptx = strdup(s);
    *mod = m;
    char target[32] = "?";
    const char *t = strstr(s, ".target ");
    if (t) sscanf(t + 8, "%31[a-z_0-9]", target);
    logf_("load %zu %s\n", strlen(s), target);
    return OK;
}
CUresult cuModuleLoadDataEx(void **mod, const void *image, unsigned n, void *options, void **values) {
    (void)n; (void)options; (void)values;
    return cuModuleLoadData(mod, image);
}
CUresult cuModuleUnload(void *mod) { (void)mod; return OK; }  /* kept: functions may outlive it here */
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
    NEED_CONTEXT;
    void *q = malloc(n);
    if (!q) return 2;  /* CUDA_ERROR_OUT_OF_MEMORY */
    memset(q, 0, n);
    *p = (uint64_t)(uintptr_t)q;
    logf_("alloc %zu 0x%llx\n", n, (unsigned long long)*p);
    return OK;
}
CUresult cuMemFree_v2(uint64_t p) {
    NEED_CONTEXT; logf_("free 0x%llx\n", (unsigned long long)p); free((void *)(uintptr_t)p); return OK; }
CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    NEED_CONTEXT;
    *free_bytes = *total = (size_t)1 << 34;
    return OK;
}
CUresult cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t n) {
    NEED_CONTEXT;
    logf_("htod %zu 0x%llx\n", n, (unsigned long long)dst);
    memcpy((void *)(uintptr_t)dst, src, n);
    return OK;
}
CUresult cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t n) {
    NEED_CONTEXT;
    logf_("dtoh %zu 0x%llx\n", n, (unsigned long long)src);
    memcpy(dst, (void *)(uintptr_t)src, n);
    return OK;
}
CUresult cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t n) {
    NEED_CONTEXT;
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
    (void)gz; (void)bz; (void)shmem; (void)stream;
    NEED_CONTEXT;
    Function *f = fn;
    if (!f || gx == 0 || gy == 0 || bx == 0 || by == 0 || bx * by > 1024) return ERR_INVALID_VALUE;
    if (!params || extra) return ERR_INVALID_VALUE;  /* irkit passes the void** list */
    if (getenv("FAKE_CUDA_FAIL_LAUNCH")) return 719;  /* CUDA_ERROR_LAUNCH_FAILED */
    if (!getenv("FAKE_CUDA_LOG")) return OK;  /* nothing to log: as cheap as a launch can be */
    int sizes[128];
    int n = param_sizes(f, sizes, 128);
    logf_("context %p\n", CURRENT);
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
       : e == ERR_INVALID_VALUE ? "CUDA_ERROR_INVALID_VALUE" : e == ERR_INVALID_CONTEXT ? "CUDA_ERROR_INVALID_CONTEXT"
       : e == 801 ? "CUDA_ERROR_NOT_SUPPORTED" : e == 2 ? "CUDA_ERROR_OUT_OF_MEMORY"
       : e == 719 ? "CUDA_ERROR_LAUNCH_FAILED" : "CUDA_ERROR_FAKE";
    return OK;
}
CUresult cuGetErrorString(CUresult e, const char **s) { return cuGetErrorName(e, s); }
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
