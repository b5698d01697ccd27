// Recycles the memory of in-flight messages. A message is allocated by the publisher's thread
// and freed by a worker's; with malloc that is a cross-thread free per message (glibc then
// contends on the publisher's arena). Here freed blocks go to the freeing thread's cache, move
// in batches of 64 through one lock-free queue per size class, and come back to publishers in
// batches: a few vector operations per message instead of a contended malloc/free pair.
#pragma once

#include <courier/core/config.hpp>
#include <courier/detail/moodycamel.hpp>

#include <cstddef>
#include <new>
#include <algorithm>

// x86 without -mprfchw: PREFETCHW is used where CPUID reports it (see prefetch_for_write).
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(__PRFCHW__)
#include <cpuid.h>
#define COURIER_PREFETCHW_BY_CPUID 1
#else
#define COURIER_PREFETCHW_BY_CPUID 0
#endif

COURIER_BEGIN_NAMESPACE
namespace detail {

#if COURIER_PREFETCHW_BY_CPUID
/// PREFETCHW (CPUID 0x80000001 ECX bit 8). Without -mprfchw, __builtin_prefetch(p, 1) emits a
/// read prefetch, which fetches the line shared: the write that follows still has to take it
/// from the other core. Read once at start-up; false until then, which only skips hints.
inline const bool cpu_has_prefetchw = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(0x80000001u, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 8)) != 0;
}();
#endif

/// Asks for the line at `p` in a writable (exclusive) state, so a store to a line another
/// core wrote last does not wait for the transfer. A hint: nothing is dereferenced.
inline void prefetch_for_write(const void* p) noexcept {
#if COURIER_PREFETCHW_BY_CPUID
    if (cpu_has_prefetchw) asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
    else __builtin_prefetch(p, 1, 3);
#elif defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 1, 3);
#else
    (void)p;
#endif
}

/// Blocks of `Size` bytes aligned to a cache line.
///
/// Thread safety: allocate/deallocate from any thread. Memory: each thread caches at most
/// `cache_max` blocks; the shared queue keeps at most `shared_max` (beyond that blocks are
/// freed), so idle memory is bounded whatever the traffic was.
template <std::size_t Size>
class message_pool {
public:
    static constexpr std::size_t batch = 64;
    static constexpr std::size_t cache_max = 2 * batch;
    static constexpr std::size_t shared_max = 1 << 16;
    static constexpr std::align_val_t align{cache_line_size};
    static constexpr std::size_t prefetch_distance = 8;

    static void* allocate() {
        auto& c = local();
        if (c.count == 0) c.count = shared().queue.try_dequeue_bulk(c.blocks, batch);
        if (c.count != 0) {
            // Recycled blocks were last written by the consumers' cores: ask for ownership of
            // the block 8 allocations ahead now, so building it does not wait on a cross-core transfer.
            if (c.count > prefetch_distance) prefetch_for_write(c.blocks[c.count - 1 - prefetch_distance]);
            return c.blocks[--c.count];
        }
        return ::operator new(Size, align);
    }

    static void deallocate(void* p) noexcept {
        auto& c = local();
        c.blocks[c.count++] = p;
        if (c.count == cache_max) {
            // Hand the older half on in one bulk operation; keep the newer (cache-warm) half.
            auto& s = shared();
            if (s.queue.size_approx() >= shared_max || !s.queue.enqueue_bulk(c.blocks, batch)) {
                for (std::size_t i = 0; i < batch; ++i) ::operator delete(c.blocks[i], align);
            }
            std::copy(c.blocks + batch, c.blocks + cache_max, c.blocks);
            c.count -= batch;
        }
    }

private:
    struct shared_blocks {
        moodycamel::ConcurrentQueue<void*> queue{batch * 4};
        ~shared_blocks() {
            void* b = nullptr;
            while (queue.try_dequeue(b)) ::operator delete(b, align);
        }
    };
    struct local_cache {
        void* blocks[cache_max];
        std::size_t count = 0;
        ~local_cache() {
            for (std::size_t i = 0; i < count; ++i) ::operator delete(blocks[i], align);
        }
    };
    static shared_blocks& shared() {
        static shared_blocks s;
        return s;
    }
    static local_cache& local() {
        thread_local local_cache c;
        return c;
    }
};

/// The pool of the size class (a multiple of the cache line) that fits `Bytes`.
template <std::size_t Bytes>
using message_pool_for = message_pool<(Bytes + cache_line_size - 1) / cache_line_size * cache_line_size>;

/// Class-level allocation from the pool, for objects made by one thread and freed by another
/// (a message, its extras, a pending request): with malloc that is a cross-thread free each
/// time; the pool moves blocks back in batches through per-thread caches. `T` is the most
/// derived (final) class.
template <class T>
struct pooled_allocation {
    static void* operator new(std::size_t n) {
        if (n > sizeof(T)) return ::operator new(n);
        return message_pool_for<sizeof(T)>::allocate();
    }
    static void operator delete(void* p, std::size_t n) noexcept {
        if (n > sizeof(T)) return ::operator delete(p);
        message_pool_for<sizeof(T)>::deallocate(p);
    }
    // Over-aligned types: pool blocks are cache-line aligned, which covers up to 64.
    static void* operator new(std::size_t n, std::align_val_t a) {
        if (n > sizeof(T) || static_cast<std::size_t>(a) > cache_line_size) return ::operator new(n, a);
        return message_pool_for<sizeof(T)>::allocate();
    }
    static void operator delete(void* p, std::size_t n, std::align_val_t a) noexcept {
        if (n > sizeof(T) || static_cast<std::size_t>(a) > cache_line_size) return ::operator delete(p, a);
        message_pool_for<sizeof(T)>::deallocate(p);
    }
};

}  // namespace detail
COURIER_END_NAMESPACE
