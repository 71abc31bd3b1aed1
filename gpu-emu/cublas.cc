//! The fake cuBLAS (`libcublas.so`) of the emulated device: a CPU GEMM behind the four
//! names cudarc resolves (cublasCreate_v2, cublasSetStream_v2, cublasGemmEx,
//! cublasDestroy_v2).
//!
//! Owns: cuBLAS's argument rules (transposes, lda/ldb/ldc against the operand shapes,
//! the f32/bf16 type combinations with CUBLAS_COMPUTE_32F), every operand's extent
//! checked against the driver's allocation registry, f32 accumulation, and never reading
//! C when beta = 0 (C may be fresh, NaN-filled memory).
//! Does not own: memory (the fake driver, `driver.cc`, through `ssr_emu_check_range`).
//! The summation order is not cuBLAS's, so results agree to rounding only.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

extern "C" int ssr_emu_check_range(const void* p, std::size_t bytes, const char* what);

namespace {
enum : int {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum : int { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum : int { CUBLAS_COMPUTE_32F = 68 };

struct Handle {
    unsigned magic = 0x55aa1234u;
    void* stream = nullptr;
};

int invalid(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int invalid(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "ssr-emu cublasGemmEx check: ");
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
    va_end(ap);
    return CUBLAS_STATUS_INVALID_VALUE;
}

float bf16_to_f32(std::uint16_t b) {
    std::uint32_t u = std::uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
std::uint16_t f32_to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return std::uint16_t(u >> 16);
}
std::size_t elem_size(int t) { return t == CUDA_R_32F ? 4 : 2; }
float load(const void* p, int t, std::size_t i) {
    return t == CUDA_R_32F ? static_cast<const float*>(p)[i] : bf16_to_f32(static_cast<const std::uint16_t*>(p)[i]);
}

// Checks one column-major operand of `rows` x `cols` stored with leading dimension `ld`.
int check_operand(const char* name, const void* p, int type, int rows, int cols, int ld) {
    if (ld < std::max(1, rows))
        return invalid("ld%s = %d is smaller than the %d rows of op(%s)'s stored matrix (%d x %d)", name, ld, rows,
                       name, rows, cols);
    if (rows == 0 || cols == 0) return 0;
    std::size_t bytes = ((std::size_t)(cols - 1) * ld + rows) * elem_size(type);
    std::string what = std::string("cublasGemmEx operand ") + name + " (ld" + name + " = " + std::to_string(ld) +
                       ", " + std::to_string(rows) + " x " + std::to_string(cols) + ")";
    if (ssr_emu_check_range(p, bytes, what.c_str()) != 0) return CUBLAS_STATUS_INVALID_VALUE;
    return 0;
}
}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT int cublasCreate_v2(void** handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new Handle();
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT int cublasDestroy_v2(void* handle) {
    auto* h = static_cast<Handle*>(handle);
    if (!h || h->magic != 0x55aa1234u) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->magic = 0;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT int cublasSetStream_v2(void* handle, void* stream) {
    auto* h = static_cast<Handle*>(handle);
    if (!h || h->magic != 0x55aa1234u) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

// C = alpha op(A) op(B) + beta C, column-major, op(A) m x k, op(B) k x n, C m x n.
EXPORT int cublasGemmEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* A,
                        int atype, int lda, const void* B, int btype, int ldb, const void* beta, void* C, int ctype,
                        int ldc, int compute, int /*algo*/) {
    auto* h = static_cast<Handle*>(handle);
    if (!h || h->magic != 0x55aa1234u) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0) return invalid("negative size m=%d n=%d k=%d", m, n, k);
    if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T) || (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T))
        return invalid("transa=%d transb=%d: only N and T are emulated", transa, transb);
    if (compute != CUBLAS_COMPUTE_32F) return invalid("compute type %d: only CUBLAS_COMPUTE_32F is emulated", compute);
    // The combinations cuBLAS supports with CUBLAS_COMPUTE_32F that the trainer uses:
    // A and B share a type (f32 or bf16); C is f32 or bf16 (f32 only for f32 A/B).
    bool types_ok = atype == btype && (atype == CUDA_R_32F || atype == CUDA_R_16BF) &&
                    (ctype == CUDA_R_32F || (ctype == CUDA_R_16BF && atype == CUDA_R_16BF));
    if (!types_ok) {
        std::fprintf(stderr, "ssr-emu cublasGemmEx check: type combination A=%d B=%d C=%d not supported\n", atype,
                     btype, ctype);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (!alpha || !beta) return invalid("null alpha or beta");
    // Stored shapes: op(A) = A is m x k (N) or A is k x m (T); likewise B.
    int ar = transa == CUBLAS_OP_N ? m : k, ac = transa == CUBLAS_OP_N ? k : m;
    int br = transb == CUBLAS_OP_N ? k : n, bc = transb == CUBLAS_OP_N ? n : k;
    if (k > 0) {
        if (int e = check_operand("a", A, atype, ar, ac, lda)) return e;
        if (int e = check_operand("b", B, btype, br, bc, ldb)) return e;
    } else if (lda < std::max(1, ar) || ldb < std::max(1, br)) {
        return invalid("lda=%d/ldb=%d smaller than the stored rows %d/%d", lda, ldb, ar, br);
    }
    if (int e = check_operand("c", C, ctype, m, n, ldc)) return e;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    // op(A) as row-major [m][k] and op(B)^T as [n][k] in f32, so each dot is contiguous.
    std::vector<float> a((std::size_t)m * k), b((std::size_t)n * k);
    for (int i = 0; i < m; i++)
        for (int l = 0; l < k; l++) {
            std::size_t idx = transa == CUBLAS_OP_N ? (std::size_t)l * lda + i : (std::size_t)i * lda + l;
            a[(std::size_t)i * k + l] = load(A, atype, idx);
        }
    for (int j = 0; j < n; j++)
        for (int l = 0; l < k; l++) {
            std::size_t idx = transb == CUBLAS_OP_N ? (std::size_t)j * ldb + l : (std::size_t)l * ldb + j;
            b[(std::size_t)j * k + l] = load(B, btype, idx);
        }
    for (int j = 0; j < n; j++) {
        const float* bj = &b[(std::size_t)j * k];
        for (int i = 0; i < m; i++) {
            const float* ai = &a[(std::size_t)i * k];
            float acc = 0.0f;  // f32 accumulation, as CUBLAS_COMPUTE_32F
            for (int l = 0; l < k; l++) acc += ai[l] * bj[l];
            std::size_t ci = (std::size_t)j * ldc + i;
            float r = al * acc;
            // beta = 0 never reads C: it may hold NaN (fresh memory), and 0 * NaN is NaN.
            if (be != 0.0f) r += be * load(C, ctype, ci);
            if (ctype == CUDA_R_32F)
                static_cast<float*>(C)[ci] = r;
            else
                static_cast<std::uint16_t*>(C)[ci] = f32_to_bf16(r);
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}
