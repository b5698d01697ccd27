// Recycles the memory of job records between the worker that drops a finished job and the
// producer that enqueues the next one. A record is ~500 bytes; glibc frees a block of that size
// made by another thread under that thread's arena lock, which made the free the single most
// expensive step of a no-op job. A capped lock-free free list per block size avoids it.
#pragma once

#include <courier/core/config.hpp>
#include <courier/detail/moodycamel.hpp>

#include <cstddef>
#include <memory>

// Under AddressSanitizer records are not recycled: a reused block would hide a use-after-free.
#if defined(__SANITIZE_ADDRESS__)
#define COURIER_JOBS_RECORD_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COURIER_JOBS_RECORD_POOL 0
#endif
#endif
#ifndef COURIER_JOBS_RECORD_POOL
#define COURIER_JOBS_RECORD_POOL 1
#endif

COURIER_BEGIN_NAMESPACE
namespace detail {

/// Free blocks of one size and alignment: a small cache per thread, refilled from and spilled
/// to a shared lock-free list in batches, so a block costs a shared-queue operation only once
/// per `batch` allocations (the worker that frees and the producer that allocates are usually
/// different threads).
///
/// Thread safety: get/put from any thread. At most `max_cached` blocks wait in the shared list
/// (plus 2 x `batch` per thread); beyond that, memory goes back to the heap. Blocks in the pool
/// are never returned to the heap (the pool lives until the process ends).
template <std::size_t Size, std::size_t Align>
class block_pool {
public:
    static constexpr std::size_t batch = 128;
    static constexpr std::size_t max_cached = 16384;

    /// Never destroyed: a record may be released during static destruction.
    static block_pool& instance() {
        static block_pool* pool = new block_pool;
        return *pool;
    }

    void* get() noexcept {
        cache& c = local();
        if (c.n == 0) c.n = shared_.try_dequeue_bulk(c.blocks, batch);
        return c.n != 0 ? c.blocks[--c.n] : nullptr;
    }

    /// False when the pool is full (the caller frees the block).
    bool put(void* p) noexcept {
        cache& c = local();
        if (c.n == 2 * batch) {
            // Hand the older half over to the producers' side.
            if (shared_.size_approx() >= max_cached || !shared_.enqueue_bulk(c.blocks, batch)) return false;
            for (std::size_t i = 0; i < batch; ++i) c.blocks[i] = c.blocks[batch + i];
            c.n = batch;
        }
        c.blocks[c.n++] = p;
        return true;
    }

private:
    struct cache {
        void* blocks[2 * batch];
        std::size_t n = 0;
        ~cache() {
            // Thread exit: the blocks go to the shared list (kept, as every pooled block is).
            if (n != 0) (void)instance().shared_.enqueue_bulk(blocks, n);
        }
    };
    static cache& local() noexcept {
        thread_local cache c;
        return c;
    }

    moodycamel::ConcurrentQueue<void*> shared_;
};

/// The allocator of job records and saga instances (std::allocate_shared: one block holds the
/// control block and the object). Stateless; every instance shares the pool of its block size.
template <class U>
struct pooled_allocator {
    using value_type = U;

    pooled_allocator() noexcept = default;
    template <class V>
    pooled_allocator(const pooled_allocator<V>&) noexcept {}

    U* allocate(std::size_t n) {
#if COURIER_JOBS_RECORD_POOL
        if (n == 1)
            if (void* p = block_pool<sizeof(U), alignof(U)>::instance().get()) return static_cast<U*>(p);
#endif
        return std::allocator<U>().allocate(n);
    }
    void deallocate(U* p, std::size_t n) noexcept {
#if COURIER_JOBS_RECORD_POOL
        if (n == 1 && block_pool<sizeof(U), alignof(U)>::instance().put(p)) return;
#endif
        std::allocator<U>().deallocate(p, n);
    }

    template <class V>
    friend bool operator==(const pooled_allocator&, const pooled_allocator<V>&) noexcept {
        return true;
    }
};

}  // namespace detail
COURIER_END_NAMESPACE
