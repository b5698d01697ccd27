// The subscriptions one event name reaches, computed once per name and cached: plain fan-out
// members split by inline/async, and queue groups that pick one member per event.
#pragma once

#include <courier/bus/detail/subscription_state.hpp>
#include <courier/core/config.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// What one thread that publishes on a bus shares with it: counters it alone writes (load +
/// store, never a read-modify-write) and a sequence that is odd while it runs inline handlers,
/// which unsubscribe waits on instead of every inline call paying for a shared counter.
struct publisher_slot {
    alignas(cache_line_size) std::atomic<std::uint64_t> dispatch_seq{0};
    std::atomic<std::uint64_t> published{0};
    std::atomic<std::uint64_t> unrouted{0};
    std::uint32_t depth = 0;  // nesting of inline dispatches; owner thread only
    std::uint32_t index = 0;  // dense per bus: picks this thread's producer token in each lane

    static void count(std::atomic<std::uint64_t>& c) noexcept {
        c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
};

struct route {
    struct group_slot {
        std::string name;
        std::vector<subscription_state*> members;
        std::atomic<std::uint32_t> next{0};
        bool any_async = false;

        /// Round robin over the members that are still active.
        subscription_state* pick() noexcept {
            const auto n = static_cast<std::uint32_t>(members.size());
            for (std::uint32_t tries = 0; tries < n; ++tries) {
                auto* s = members[next.fetch_add(1, std::memory_order_relaxed) % n];
                if (s->active()) return s;
            }
            return nullptr;
        }
    };

    std::vector<std::shared_ptr<subscription_state>> owners;  // keeps every member alive
    std::vector<subscription_state*> inline_subs;
    std::vector<subscription_state*> async_subs;
    std::vector<std::unique_ptr<group_slot>> groups;
    std::uint32_t async_count = 0;  // references a publish hands out up front (fan-out async members)
    bool needs_heap = false;        // some delivery outlives the publish call

    bool empty() const noexcept { return inline_subs.empty() && async_subs.empty() && groups.empty(); }

    void add(const std::shared_ptr<subscription_state>& s) {
        owners.push_back(s);
        const auto& group = s->options().group;
        if (!group.empty()) {
            group_slot* slot = nullptr;
            for (auto& g : groups)
                if (g->name == group) slot = g.get();
            if (!slot) {
                groups.push_back(std::make_unique<group_slot>());
                slot = groups.back().get();
                slot->name = group;
            }
            slot->members.push_back(s.get());
            if (s->is_async()) {
                slot->any_async = true;
                needs_heap = true;
            }
            return;
        }
        if (s->is_async()) {
            async_subs.push_back(s.get());
            ++async_count;
            needs_heap = true;
        } else {
            inline_subs.push_back(s.get());
        }
    }
};

}  // namespace detail
COURIER_END_NAMESPACE
