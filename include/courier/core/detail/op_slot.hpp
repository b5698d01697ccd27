// A reusable block for the one Asio operation a task keeps posted at a time (a bus lane's drain).
// Asio allocates a posted handler's operation through the handler's associated allocator. With
// the default one, a post from a thread outside the executor mallocs and the executor's thread
// frees: one allocation per message, and a block that changes threads each time. A handler that
// names an op_slot_allocator is built in the slot instead; a second post while the slot is taken
// (a pooled lane's second drainer) falls back to the heap, so the slot is never shared.
#pragma once

#include <courier/core/config.hpp>

#include <atomic>
#include <cstddef>
#include <new>

COURIER_BEGIN_NAMESPACE
namespace detail {

class op_slot {
public:
    /// Enough for an io_context operation around a handler of a few pointers.
    static constexpr std::size_t capacity = 128;

    op_slot() = default;
    op_slot(const op_slot&) = delete;
    op_slot& operator=(const op_slot&) = delete;

    void* take(std::size_t bytes) {
        if (bytes <= capacity && !busy_.exchange(true, std::memory_order_acquire)) return bytes_;
        return ::operator new(bytes);
    }
    void give(void* p) noexcept {
        if (p == static_cast<void*>(bytes_)) busy_.store(false, std::memory_order_release);
        else ::operator delete(p);
    }

private:
    std::atomic<bool> busy_{false};  // first: on the line of the owner's scheduling flag
    alignas(std::max_align_t) unsigned char bytes_[capacity];
};

/// The allocator a handler returns from get_allocator() to be built in `slot`.
template <class T>
class op_slot_allocator {
public:
    using value_type = T;

    explicit op_slot_allocator(op_slot* slot) noexcept : slot_(slot) {}
    template <class U>
    op_slot_allocator(const op_slot_allocator<U>& other) noexcept : slot_(other.slot()) {}

    T* allocate(std::size_t n) {
        static_assert(alignof(T) <= alignof(std::max_align_t), "an over-aligned operation cannot use the slot");
        return static_cast<T*>(slot_->take(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t) noexcept { slot_->give(p); }

    op_slot* slot() const noexcept { return slot_; }
    template <class U>
    bool operator==(const op_slot_allocator<U>& other) const noexcept {
        return slot_ == other.slot();
    }

private:
    op_slot* slot_;
};

}  // namespace detail
COURIER_END_NAMESPACE
