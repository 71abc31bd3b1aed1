//! The fake NCCL (`libnccl.so`) of the emulated device: world size 1 only.
//!
//! Owns: a communicator of one rank (init, all-reduce as the identity, abort/destroy),
//! with the buffers bounds-checked against the driver's allocation registry. Any world
//! size other than 1 is refused with a message: the emulation has one device, so
//! collective communication across ranks is outside what it can check.
#include <cstddef>
#include <cstdio>
#include <cstring>

extern "C" int ssr_emu_check_range(const void* p, std::size_t bytes, const char* what);

namespace {
enum : int { ncclSuccess = 0, ncclInvalidArgument = 4, ncclInvalidUsage = 5 };
struct UniqueId {
    char internal[128];
};
struct Comm {
    unsigned magic = 0x4e43434cu;
};
std::size_t type_size(int t) {
    switch (t) {
        case 0: case 1: return 1;       // int8, uint8
        case 2: case 3: return 4;       // int32, uint32
        case 4: case 5: return 8;       // int64, uint64
        case 6: return 2;               // float16
        case 7: return 4;               // float32
        case 8: return 8;               // float64
        case 9: return 2;               // bfloat16
        default: return 0;
    }
}
bool valid(void* c) { return c && static_cast<Comm*>(c)->magic == 0x4e43434cu; }
}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT int ncclGetVersion(int* v) {
    *v = 22800;
    return ncclSuccess;
}
EXPORT int ncclGetUniqueId(UniqueId* id) {
    std::memset(id->internal, 0, sizeof id->internal);
    std::snprintf(id->internal, sizeof id->internal, "ssr-emu");
    return ncclSuccess;
}
EXPORT int ncclCommInitRank(void** comm, int nranks, UniqueId, int rank) {
    if (nranks != 1 || rank != 0) {
        std::fprintf(stderr, "ssr-emu nccl: world size %d (rank %d) requested; the emulation has world size 1 only\n",
                     nranks, rank);
        return ncclInvalidArgument;
    }
    *comm = new Comm();
    return ncclSuccess;
}
EXPORT int ncclCommCount(void* comm, int* n) {
    if (!valid(comm)) return ncclInvalidArgument;
    *n = 1;
    return ncclSuccess;
}
EXPORT int ncclCommUserRank(void* comm, int* r) {
    if (!valid(comm)) return ncclInvalidArgument;
    *r = 0;
    return ncclSuccess;
}
EXPORT int ncclCommAbort(void* comm) {
    if (!valid(comm)) return ncclInvalidArgument;
    static_cast<Comm*>(comm)->magic = 0;
    delete static_cast<Comm*>(comm);
    return ncclSuccess;
}
EXPORT int ncclCommDestroy(void* comm) { return ncclCommAbort(comm); }
EXPORT int ncclGroupStart() { return ncclSuccess; }
EXPORT int ncclGroupEnd() { return ncclSuccess; }
// One rank: sum, average, min and max of one contribution are that contribution.
EXPORT int ncclAllReduce(const void* send, void* recv, std::size_t count, int dtype, int op, void* comm, void*) {
    if (!valid(comm)) return ncclInvalidArgument;
    std::size_t es = type_size(dtype);
    if (es == 0 || op < 0 || op > 4) return ncclInvalidArgument;
    if (count == 0) return ncclSuccess;
    if (ssr_emu_check_range(send, count * es, "ncclAllReduce send buffer") != 0) return ncclInvalidArgument;
    if (ssr_emu_check_range(recv, count * es, "ncclAllReduce receive buffer") != 0) return ncclInvalidArgument;
    if (send != recv) std::memmove(recv, send, count * es);
    return ncclSuccess;
}
