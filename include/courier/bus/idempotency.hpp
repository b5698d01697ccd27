// Effectively-once handling: at-least-once delivery plus an idempotency store that remembers
// which keys were handled. The dedup scope is explicit (while in flight only, or until
// completion plus a TTL), because an unstated scope is the usual source of surprise.
#pragma once

#include <courier/bus/message_context.hpp>
#include <courier/bus/subscription_options.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

COURIER_BEGIN_NAMESPACE

/// How long a key stays claimed.
enum class idempotency_scope : std::uint8_t {
    /// Only while a handler runs: a redelivery that arrives during processing is skipped, one
    /// that arrives after completion runs again.
    in_flight,
    /// While a handler runs and then `ttl` after it completed successfully.
    until_completion_plus_ttl,
};

/// What `try_claim` found.
enum class claim_result : std::uint8_t {
    claimed,    ///< the caller owns the key now and must `complete` or `release` it
    in_flight,  ///< another handler holds it
    completed,  ///< it was handled successfully within the scope
};

/// Storage of idempotency keys. Implement it over your database to make dedup survive
/// restarts and span processes; `in_memory_idempotency_store` is the default.
///
/// Thread safety: implementations must allow concurrent calls.
class idempotency_store {
public:
    virtual ~idempotency_store() = default;
    /// Claims `key` unless it is in flight or completed and not expired at `now`.
    virtual claim_result try_claim(std::string_view key, time_point now) = 0;
    /// Marks `key` handled until `expires_at`.
    virtual void complete(std::string_view key, time_point expires_at) = 0;
    /// Forgets `key` (after a failure, so a retry can claim it; or at the end of in_flight scope).
    virtual void release(std::string_view key) = 0;
};

/// A bounded in-memory store: at most `max_keys` keys; past that the least recently claimed
/// key is forgotten and counted in `evicted()` (documented loss of dedup memory, not of data).
class in_memory_idempotency_store final : public idempotency_store {
public:
    explicit in_memory_idempotency_store(std::size_t max_keys = 1'000'000) : max_keys_(max_keys) {}

    claim_result try_claim(std::string_view key, time_point now) override {
        std::lock_guard lock(mutex_);
        auto it = index_.find(std::string(key));
        if (it != index_.end()) {
            auto& e = *it->second;
            if (e.in_flight) { ++hits_; return claim_result::in_flight; }
            if (e.expires_at > now) { ++hits_; return claim_result::completed; }
            e.in_flight = true;
            order_.splice(order_.end(), order_, it->second);
            return claim_result::claimed;
        }
        if (max_keys_ != 0 && index_.size() >= max_keys_) evict_one(now);
        order_.push_back(entry{std::string(key), true, time_point{}});
        index_.emplace(order_.back().key, std::prev(order_.end()));
        return claim_result::claimed;
    }
    void complete(std::string_view key, time_point expires_at) override {
        std::lock_guard lock(mutex_);
        auto it = index_.find(std::string(key));
        if (it == index_.end()) return;
        it->second->in_flight = false;
        it->second->expires_at = expires_at;
    }
    void release(std::string_view key) override {
        std::lock_guard lock(mutex_);
        auto it = index_.find(std::string(key));
        if (it == index_.end()) return;
        order_.erase(it->second);
        index_.erase(it);
    }

    std::size_t size() const { std::lock_guard lock(mutex_); return index_.size(); }
    /// Claims refused because the key was in flight or completed.
    std::uint64_t hits() const { std::lock_guard lock(mutex_); return hits_; }
    /// Keys forgotten because the store was full.
    std::uint64_t evicted() const { std::lock_guard lock(mutex_); return evicted_; }

private:
    struct entry {
        std::string key;
        bool in_flight;
        time_point expires_at;
    };
    void evict_one(time_point now) {
        // Prefer an expired completed key; otherwise the least recently claimed one that is not in flight.
        for (auto it = order_.begin(); it != order_.end(); ++it) {
            if (!it->in_flight && it->expires_at <= now) { index_.erase(it->key); order_.erase(it); ++evicted_; return; }
        }
        for (auto it = order_.begin(); it != order_.end(); ++it) {
            if (!it->in_flight) { index_.erase(it->key); order_.erase(it); ++evicted_; return; }
        }
    }

    mutable std::mutex mutex_;
    std::list<entry> order_;
    std::unordered_map<std::string, std::list<entry>::iterator> index_;
    std::size_t max_keys_;
    std::uint64_t hits_ = 0;
    std::uint64_t evicted_ = 0;
};

/// Options of the idempotency middleware.
struct idempotency_options {
    idempotency_scope scope = idempotency_scope::until_completion_plus_ttl;
    /// How long a completed key is remembered (until_completion_plus_ttl).
    duration ttl = std::chrono::hours(24);
    /// The dedup key of a message; default: subscription name + "/" + event_id, so the same
    /// event is still handled once by each subscription.
    std::function<std::string(const message_context&)> key;
};

namespace detail {
/// Set by the idempotency middleware when it skips a duplicate, read by the delivery engine
/// to count it under `deduplicated` rather than `delivered`.
inline bool& skipped_as_duplicate() noexcept {
    thread_local bool flag = false;
    return flag;
}
}  // namespace detail

/// A handle middleware that runs the handler at most once per key within the scope; duplicates
/// are skipped (counted as `deduplicated`). A failing handler releases its key so the retry runs.
///
/// Example: `opts.middleware.push_back(courier::idempotency(store, rt.clock()));`
inline handle_middleware idempotency(std::shared_ptr<idempotency_store> store, const courier::clock& clk,
                                     idempotency_options options = {}) {
    return [store = std::move(store), &clk, options = std::move(options)](const message_context& ctx,
                                                                            const std::function<void()>& next) {
        std::string key = options.key ? options.key(ctx)
                                      : std::string(ctx.subscription()) + "/" + ctx.event_id().to_string();
        if (store->try_claim(key, clk.now()) != claim_result::claimed) {
            detail::skipped_as_duplicate() = true;
            return;
        }
        try {
            next();
        } catch (...) {
            store->release(key);
            throw;
        }
        if (options.scope == idempotency_scope::in_flight) store->release(key);
        else store->complete(key, clk.now() + options.ttl);
    };
}

COURIER_END_NAMESPACE
