// The delivery engine of one subscription. Async modes push a message pointer into a lane
// (a lock-free queue plus a count of scheduled drain tasks); a publisher posts a drain task
// only when none is scheduled, and the task empties the lane in batches on the executor.
// pooled = one lane, up to `concurrency` drainers; serial = one lane, one drainer;
// keyed = `lanes` lanes, one drainer each. A failed attempt is retried through the timer
// service (serial and keyed lanes hold back the messages behind it, to keep their order).
#pragma once

#include <courier/bus/dead_letter_store.hpp>
#include <courier/bus/detail/bus_core.hpp>
#include <courier/bus/detail/message.hpp>
#include <courier/bus/idempotency.hpp>
#include <courier/bus/message_context.hpp>
#include <courier/bus/metrics.hpp>
#include <courier/bus/subscription_options.hpp>
#include <courier/core/config.hpp>
#include <courier/core/detail/op_slot.hpp>
#include <courier/event/topic_pattern.hpp>
#include <courier/queue/detail/fence.hpp>
#include <courier/queue/mpmc_queue.hpp>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// Thrown by an invoker when the data cannot become the subscriber's type: never retried.
struct decode_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline std::string describe(const std::exception_ptr& ep) {
    try {
        std::rethrow_exception(ep);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown exception";
    }
}

/// The subscription running in this thread (so unsubscribe from inside its own handler does
/// not wait for itself).
inline const void*& current_subscription() noexcept {
    thread_local const void* current = nullptr;
    return current;
}

/// A delivery that failed at least once: it carries its history to the next attempt.
struct retry_state {
    message_ref msg;
    std::uint32_t attempt = 1;  // the attempt about to run
    std::vector<attempt_error> errors;
};

/// Publisher-slot index of a delivery that does not come from a bus dispatch (redrive).
inline constexpr std::uint32_t no_publisher = ~std::uint32_t{0};

class subscription_state : public std::enable_shared_from_this<subscription_state> {
public:
    /// Calls the user's handler for a message (converting or upcasting the data when the
    /// message does not carry the subscriber's type).
    using invoker = std::function<void(const message_base&, const message_context&)>;

    enum class match_kind : std::uint8_t { exact, pattern };

    subscription_state(std::shared_ptr<bus_core> core, std::string name, std::string pattern_text,
                       std::optional<topic_pattern> pattern, std::size_t type_index, subscription_options opts,
                       invoker inv)
        : core_(std::move(core)),
          name_(std::move(name)),
          pattern_text_(std::move(pattern_text)),
          // A parsed run-time pattern views the caller's string: re-parse from our own copy.
          pattern_(pattern ? std::optional<topic_pattern>(topic_pattern::parse(pattern_text_).value()) : std::nullopt),
          type_index_(type_index),
          opts_(std::move(opts)),
          invoke_(std::move(inv)) {
        {
            std::shared_lock lock(core_->middleware_mutex);
            middleware_ = core_->handle_middleware_list;
        }
        middleware_.insert(middleware_.end(), opts_.middleware.begin(), opts_.middleware.end());
        std::size_t lane_count = 0;
        max_drainers_ = 1;
        switch (opts_.mode) {
        case delivery_mode::inline_call: lane_count = 0; break;
        case delivery_mode::pooled:
            lane_count = 1;
            max_drainers_ = opts_.concurrency ? opts_.concurrency : std::max<std::uint32_t>(1, core_->services.threads);
            break;
        case delivery_mode::serial: lane_count = 1; break;
        case delivery_mode::keyed: lane_count = std::max<std::uint32_t>(1, opts_.lanes); break;
        }
        if (lane_count == 0) inline_delivered_ = std::make_unique<std::array<inline_counter, inline_counter_slots>>();
        lanes_.reserve(lane_count);
        for (std::size_t i = 0; i < lane_count; ++i) lanes_.push_back(std::make_unique<lane>());
        if (opts_.batch == 0) opts_.batch = 1;
        // Unused chunks stay under capacity/8 even with every publisher slot holding one.
        claim_chunk_ = std::clamp<std::int64_t>(static_cast<std::int64_t>(opts_.capacity) / (8 * lane::token_slots), 1, 64);
    }

    ~subscription_state() {
        // Anything still queued was accounted for by unsubscribe(); only free it here.
        for (auto& l : lanes_) {
            message_base* m = nullptr;
            while (l->queue.try_pop(m) == queue_status::ok) release(m);
        }
    }

    const std::string& name() const noexcept { return name_; }
    const std::string& pattern_text() const noexcept { return pattern_text_; }
    const std::optional<topic_pattern>& pattern() const noexcept { return pattern_; }
    std::size_t type_index() const noexcept { return type_index_; }
    const subscription_options& options() const noexcept { return opts_; }
    bool is_async() const noexcept { return !lanes_.empty(); }
    bool active() const noexcept { return active_.load(std::memory_order_acquire); }

    /// Publisher side. For async modes the caller has added one reference for this delivery.
    /// Returns false when the message was not accepted (overflow or unsubscribed).
    bool deliver(message_base* m, std::uint32_t publisher = no_publisher) {
        if (!is_async()) return deliver_inline(*m, publisher);
        if (COURIER_UNLIKELY(!active())) {
            if (core_->closed.load(std::memory_order_acquire)) {
                discard_while_closing(m);  // shutdown: accepted and handed back, like the queued ones
                return true;
            }
            release(m);  // unsubscribed: the event is simply not for us any more
            return false;
        }
        lane& l = *lanes_[lane_of(*m)];
        lane::producer* p = publisher < lane::token_slots ? &l.producers[publisher] : nullptr;
        if (!reserve(l, p, m)) return false;
        if (COURIER_UNLIKELY(l.push(m, p) != queue_status::ok)) {
            // Closed by unsubscribe or shutdown while we were on the way in. Under shutdown the
            // message was accepted and is handed back like those still queued (and counted so).
            if (core_->closed.load(std::memory_order_acquire)) {
                discard_while_closing(m);
                return true;
            }
            discard_one(m, dead_letter_reason::unsubscribed);
            return false;
        }
        // Dekker pairing with finish_drain(): our push precedes this load, the drainer's
        // scheduled RMW precedes its look at the lane, and one of us must see the other, so no
        // message is left in a lane without a drain task. The store-load barrier that needs is
        // paid by the drainer (membarrier) when it gives the lane up, not here per message.
        light_fence(asymmetric_);
        if (l.scheduled.load(std::memory_order_relaxed) < max_drainers_) try_schedule(l);
        return true;
    }

    /// Stops delivery: no handler call starts after this returns (except from inside this
    /// subscription's own handler, which finishes). Queued messages are dead-lettered
    /// (at_least_once) or counted as dropped (at_most_once).
    void unsubscribe() {
        if (active_.exchange(false, std::memory_order_seq_cst) == false) return;
        for (auto& l : lanes_) l->queue.close();
        const long self = current_subscription() == this ? 1 : 0;
        wait_for_inflight(self);
        discard_waiting_retries(dead_letter_reason::unsubscribed);
        for (auto& l : lanes_) discard_lane(*l, dead_letter_reason::unsubscribed);
    }

    /// Shutdown: waits (up to `deadline`) for queued messages to be handled, then closes and
    /// hands back (dead-letters) what is left. Returns how many were handed back.
    std::size_t drain_and_close(std::chrono::steady_clock::time_point deadline, const std::function<void()>& pump) {
        while (std::chrono::steady_clock::now() < deadline) {
            bool idle = inflight_.load(std::memory_order_acquire) == 0 && retries_pending_.load(std::memory_order_acquire) == 0;
            for (auto& l : lanes_) idle = idle && l->depth() == 0 && l->scheduled.load() == 0;
            if (idle) break;
            if (pump) pump();
            else std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        active_.store(false, std::memory_order_seq_cst);
        for (auto& l : lanes_) l->queue.close();
        wait_for_inflight(0);
        std::size_t handed_back = discard_waiting_retries(dead_letter_reason::shutdown);
        for (auto& l : lanes_) handed_back += discard_lane(*l, dead_letter_reason::shutdown);
        return handed_back + closing_discards_.exchange(0, std::memory_order_acq_rel);
    }

    /// Counters are added with release ordering (once per drained batch) and read with
    /// acquire, so a thread that sees `delivered == n` also sees what those n handlers wrote.
    subscription_metrics metrics() const {
        subscription_metrics m;
        m.name = name_;
        m.pattern = pattern_text_;
        m.delivered = counters_.delivered.load(std::memory_order_acquire);
        if (inline_delivered_)
            for (auto& c : *inline_delivered_) m.delivered += c.n.load(std::memory_order_acquire);
        m.failed = counters_.failed.load(std::memory_order_acquire);
        m.retried = counters_.retried.load(std::memory_order_acquire);
        m.dead_lettered = counters_.dead_lettered.load(std::memory_order_acquire);
        m.dropped = counters_.dropped.load(std::memory_order_acquire);
        m.deduplicated = counters_.deduplicated.load(std::memory_order_acquire);
        for (auto& l : lanes_) {
            m.queue_depth += l->depth();
        }
        m.latency_p50_ns = counters_.latency.percentile(0.50);
        m.latency_p99_ns = counters_.latency.percentile(0.99);
        m.latency_samples = counters_.latency.count();
        return m;
    }

    /// Hands one message straight to this subscription (redrive of a dead letter).
    bool redeliver(message_base* m) {
        if (!active()) {
            release(m);
            return false;
        }
        return deliver(m);
    }

private:
    // A lane counts without a read-modify-write per message: each publishing thread counts its
    // own pushes in its own cache line (load + store), drainers count pops once per batch, and
    // capacity is claimed in chunks (a lock-prefixed RMW per message would also wait for the
    // stores that built the message, which is most of a publish's cost).
    struct lane {
        using queue_type = mpmc_queue<message_base*>;
        static constexpr std::size_t token_slots = 32;

        /// What one publishing thread (by its publisher-slot index) keeps in this lane. Written
        /// by that thread only; `pushed` is read by anyone who needs the depth.
        struct alignas(cache_line_size) producer {
            // An explicit moodycamel producer skips the per-push lookup of the thread's
            // implicit producer; made on the thread's first push.
            std::atomic<queue_type::producer_token*> token{nullptr};
            std::atomic<std::uint64_t> pushed{0};  // pushes begun (a failed one is taken back)
            std::int64_t credit = 0;               // capacity slots claimed and not used yet
        };

        queue_type queue;
        std::array<producer, token_slots> producers{};

        lane() = default;
        lane(const lane&) = delete;
        lane& operator=(const lane&) = delete;
        ~lane() {
            for (auto& p : producers) delete p.token.load(std::memory_order_acquire);
        }

        queue_status push(message_base* m, producer* p) {
            if (COURIER_LIKELY(p != nullptr)) {
                auto* t = p->token.load(std::memory_order_relaxed);
                if (COURIER_UNLIKELY(!t)) {
                    t = new queue_type::producer_token(queue.make_producer_token());
                    p->token.store(t, std::memory_order_release);
                }
                // Counted before the push: a drainer that pops the message has seen the count
                // (it is sequenced before the queue's release), so depth() never goes negative.
                p->pushed.store(p->pushed.load(std::memory_order_relaxed) + 1, std::memory_order_release);
                auto st = queue.try_push(*t, std::move(m));
                if (COURIER_UNLIKELY(st != queue_status::ok))
                    p->pushed.store(p->pushed.load(std::memory_order_relaxed) - 1, std::memory_order_release);
                return st;
            }
            shared_pushed.fetch_add(1, std::memory_order_acq_rel);
            auto st = queue.try_push(std::move(m));
            if (COURIER_UNLIKELY(st != queue_status::ok)) shared_pushed.fetch_sub(1, std::memory_order_acq_rel);
            return st;
        }

        /// Messages pushed (or being pushed) and not yet popped. Exact once publishers stop.
        std::uint64_t depth() const noexcept {
            // popped first: every pop it counts had its push counted before, so the sum below
            // cannot fall short of it.
            const std::uint64_t out = popped.load(std::memory_order_acquire);
            std::uint64_t in = shared_pushed.load(std::memory_order_acquire);
            for (auto& p : producers) in += p.pushed.load(std::memory_order_acquire);
            return in > out ? in - out : 0;
        }

        void count_popped(std::size_t n) noexcept { popped.fetch_add(n, std::memory_order_acq_rel); }

        /// Capacity slots claimed (pushed, or held as a publisher's credit) and not popped.
        std::int64_t claimed_now() const noexcept {
            return claimed.load(std::memory_order_acquire) - static_cast<std::int64_t>(popped.load(std::memory_order_acquire));
        }

        alignas(cache_line_size) std::atomic<std::uint64_t> shared_pushed{0};  // publishers without a slot
        alignas(cache_line_size) std::atomic<std::int64_t> claimed{0};         // capacity claimed, ever
        alignas(cache_line_size) std::atomic<std::uint64_t> popped{0};         // ever
        alignas(cache_line_size) std::atomic<std::uint32_t> scheduled{0};  // drain tasks posted or running
        // Where a posted drain is built (a serial lane has one at a time). Not on the line of
        // `scheduled`, which every publish reads: a streaming drain re-posts itself every
        // batch, and each re-post would take that line from the publisher's core.
        alignas(cache_line_size) op_slot drain_slot;
        // Owned by the single drainer of a serial/keyed lane: messages popped but held back
        // behind a failed one that waits for its retry, in order. (A line of its own: the
        // publishers write the drain slot above.)
        alignas(cache_line_size) std::deque<message_base*> held;
        std::unique_ptr<retry_state> parked;
        duration park_delay{};  // the parked message's backoff, armed when its drain ends
    };

    std::size_t lane_of(const message_base& m) const {
        if (lanes_.size() <= 1) return 0;
        std::uint64_t h = 0;
        if (opts_.key) {
            message_context ctx(m, name_, 1, core_->services.producer);
            h = opts_.key(ctx);
        } else if (!m.key().empty()) {
            h = std::hash<std::string_view>{}(m.key());
        }
        return static_cast<std::size_t>(h % lanes_.size());
    }

    // Takes a slot in the lane under the capacity bound, applying the overflow policy. A
    // publisher with a slot claims `claim_chunk_` slots at a time and spends them one per
    // message; the bound stays exact (chunks are only taken whole under it), and the slots a
    // quiet publisher still holds only make the lane look fuller (at most capacity/8 in all).
    bool reserve(lane& l, lane::producer* p, message_base* m) {
        const auto cap = static_cast<std::int64_t>(opts_.capacity);
        if (cap == 0) return true;
        if (COURIER_LIKELY(p != nullptr && p->credit > 0)) {
            --p->credit;
            return true;
        }
        if (p != nullptr && claim_chunk_ > 1) {
            const auto prev = l.claimed.fetch_add(claim_chunk_, std::memory_order_acq_rel) -
                              static_cast<std::int64_t>(l.popped.load(std::memory_order_acquire));
            if (prev + claim_chunk_ <= cap) {
                p->credit = claim_chunk_ - 1;
                return true;
            }
            l.claimed.fetch_sub(claim_chunk_, std::memory_order_acq_rel);
        }
        // One slot at a time near the bound.
        if (l.claimed.fetch_add(1, std::memory_order_acq_rel) - static_cast<std::int64_t>(l.popped.load(std::memory_order_acquire)) < cap)
            return true;
        switch (opts_.overflow) {
        case overflow_policy::drop_oldest: {
            message_base* oldest = nullptr;
            if (l.queue.try_pop(oldest) == queue_status::ok) {
                l.count_popped(1);
                counters_.dropped.fetch_add(1, std::memory_order_release);
                dead_letter_one(*oldest, dead_letter_reason::overflow, {}, 0);
                release(oldest);
            }
            return true;  // the slot we took is ours now
        }
        case overflow_policy::block: {
            l.claimed.fetch_sub(1, std::memory_order_acq_rel);
            if (!core_->services.manual) {
                const auto deadline = std::chrono::steady_clock::now() + opts_.block_timeout;
                for (unsigned spins = 0; std::chrono::steady_clock::now() < deadline; ++spins) {
                    if (!active()) break;
                    if (l.claimed_now() < cap) {
                        if (l.claimed.fetch_add(1, std::memory_order_acq_rel) -
                                static_cast<std::int64_t>(l.popped.load(std::memory_order_acquire)) < cap)
                            return true;
                        l.claimed.fetch_sub(1, std::memory_order_acq_rel);
                    }
                    if (spins < 64) std::this_thread::yield();
                    else std::this_thread::sleep_for(std::chrono::microseconds(50));
                }
            }
            break;
        }
        case overflow_policy::fail:
        case overflow_policy::drop_newest:
            l.claimed.fetch_sub(1, std::memory_order_acq_rel);
            break;
        }
        counters_.dropped.fetch_add(1, std::memory_order_release);
        dead_letter_one(*m, dead_letter_reason::overflow, {}, 0);
        release(m);
        return false;
    }

    void try_schedule(lane& l) {
        auto s = l.scheduled.load(std::memory_order_acquire);
        while (s < max_drainers_) {
            if (l.scheduled.compare_exchange_weak(s, s + 1, std::memory_order_seq_cst)) {
                post_drain(l);
                return;
            }
        }
    }

    /// A posted drain of one lane, built in the lane's op_slot.
    struct drain_task {
        std::shared_ptr<subscription_state> self;
        lane* l;

        using allocator_type = op_slot_allocator<void>;
        allocator_type get_allocator() const noexcept { return allocator_type(&l->drain_slot); }
        void operator()() const { self->drain(*l); }
    };

    void post_drain(lane& l) { boost::asio::post(core_->services.executor, drain_task{shared_from_this(), &l}); }

    void drain(lane& l) {
        inflight_.fetch_add(1, std::memory_order_seq_cst);
        if (COURIER_UNLIKELY(!active())) {
            // unsubscribe()/shutdown own the lane now; they hand back what is in it.
            inflight_.fetch_sub(1, std::memory_order_seq_cst);
            l.scheduled.fetch_sub(1, std::memory_order_seq_cst);
            return;
        }
        const void* previous = std::exchange(current_subscription(), this);
        std::uint32_t budget = opts_.batch;
        std::uint64_t delivered = 0;
        bool parked = false;
        const bool ordered = max_drainers_ == 1 && opts_.mode != delivery_mode::pooled;

        if (ordered && l.parked) {
            // Resume a retry that held this lane.
            auto rs = std::move(l.parked);
            if (!run_attempt(std::move(rs), &l, delivered)) parked = true;
            if (budget) --budget;
        }
        message_base* batch[64];
        std::uint32_t idle_spins = 0;
        bool streaming = false;  // the last pop found messages: they arrive back to back
        while (!parked && budget > 0) {
            if (ordered && !l.held.empty()) {
                message_base* m = l.held.front();
                l.held.pop_front();
                --budget;
                if (!handle_first(m, &l, delivered)) parked = true;
                continue;
            }
            const std::size_t want = std::min<std::size_t>(budget, 64);
            const std::size_t n = l.queue.try_pop_bulk(batch, want);
            if (n == 0) {
                // Spin a little before giving the lane up: a publisher that is still sending
                // refills it within nanoseconds, while handing the lane back costs an Asio post
                // and a parked-thread wake-up (~100 us on these VMs) for the next message.
                streaming = false;
                if (idle_spins++ < opts_.idle_spin) {
                    cpu_relax();
                    continue;
                }
                break;
            }
            idle_spins = 0;
            l.count_popped(n);
            budget -= static_cast<std::uint32_t>(n);
            // Each message is a line the publisher's core wrote last: ask for the next few
            // ahead, so their transfers overlap the handlers instead of following each other.
            for (std::size_t i = 0; i < std::min(n, message_prefetch); ++i) prefetch_for_write(batch[i]);
            for (std::size_t i = 0; i < n; ++i) {
                if (i + message_prefetch < n) prefetch_for_write(batch[i + message_prefetch]);
                if (parked) {
                    l.held.push_back(batch[i]);  // keep order behind the message waiting for its retry
                    continue;
                }
                if (!handle_first(batch[i], ordered ? &l : nullptr, delivered)) parked = true;
            }
            // A handler as fast as its publisher finds one or two messages per pop, and then both
            // cores trade the queue's cache lines for every message (the publisher slowed to
            // about half: bus.exact 1P1C ran 1.6-2x faster with this pause). When pops keep
            // finding messages but not a full batch, pausing lets a batch build up; a message that
            // follows an empty pop (a request-reply ping-pong, a paced stream) is not held back.
            if (streaming && n < want)
                for (std::uint32_t i = 0; i < opts_.coalesce_spin; ++i) cpu_relax();
            streaming = true;
        }
        if (delivered) counters_.delivered.fetch_add(delivered, std::memory_order_release);
        // Read before leaving inflight_: from then on unsubscribe/shutdown may own the lane
        // (discard_lane clears `held`).
        const bool holds = max_drainers_ == 1 && !l.held.empty();
        const duration park_delay = l.park_delay;
        current_subscription() = previous;
        inflight_.fetch_sub(1, std::memory_order_seq_cst);
        if (parked) {
            // The retry timer runs the next drain; the lane stays scheduled until then, so no
            // other drain starts, and this one touches the lane no more.
            core_->services.timers.schedule_after(park_delay, [self = shared_from_this(), lp = &l] {
                self->retries_pending_.fetch_sub(1, std::memory_order_acq_rel);
                self->drain(*lp);
            });
            return;
        }
        if (budget == 0) {
            post_drain(l);  // more may be waiting: yield the thread, keep the lane scheduled
            return;
        }
        finish_drain(l, holds);
    }

    static constexpr std::size_t message_prefetch = 4;

    void finish_drain(lane& l, bool holds) {
        l.scheduled.fetch_sub(1, std::memory_order_seq_cst);
        // The publishers' half of the barrier (see deliver): after it, a push we do not see
        // below belongs to a publisher that will see scheduled < max and post a drain itself.
        heavy_fence(asymmetric_);
        if (holds || l.queue.size_approx() != 0) try_schedule(l);
    }

    // First attempt of a popped message. Returns false when an ordered lane must wait for a retry.
    bool handle_first(message_base* m, lane* ordered_lane, std::uint64_t& delivered) {
        if (COURIER_UNLIKELY(!active())) {
            discard_while_closing(m);
            return true;
        }
        auto r = attempt(*m, 1, delivered);
        if (COURIER_LIKELY(!r)) {
            release(m);
            return true;
        }
        auto rs = std::make_unique<retry_state>();
        rs->msg = message_ref(m);
        rs->attempt = 1;
        rs->errors.push_back(std::move(r->error));
        return after_failure(std::move(rs), r->error_ptr, ordered_lane, r->undecodable);
    }

    struct failure {
        attempt_error error;
        std::exception_ptr error_ptr;
        bool undecodable = false;
    };

    // Runs the handler once; returns the failure, if any. (A pointer, not an optional: the
    // success path returns in a register instead of through a failure-sized slot.)
    COURIER_ALWAYS_INLINE std::unique_ptr<failure> attempt(const message_base& m, std::uint32_t n, std::uint64_t& delivered) {
        message_context ctx(m, name_view_, n, producer_view_);
        context_scope scope(ctx);
        // A thread-local countdown: sampling must add neither a shared write nor a division
        // per message. (The countdown is shared by the subscriptions this thread runs: each
        // samples about one message in `latency_sample_every` of those the thread handles; a
        // countdown longer than this subscription's period, left by another, is cut to it: with
        // 1 every message is sampled. Unsigned: a period of 0, never sampled, never cuts it.)
        thread_local std::uint32_t sample_countdown = 1;
        const std::uint32_t every = opts_.latency_sample_every;
        bool sample = false;
        if (COURIER_UNLIKELY(--sample_countdown == 0 || sample_countdown > every - 1)) {
            sample = every != 0;
            sample_countdown = sample ? every : 1024;
        }
        const auto start = sample ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        try {
            if (middleware_.empty()) {
                invoke_(m, ctx);
            } else {
                skipped_as_duplicate() = false;
                run_chain(m, ctx, 0);
                if (std::exchange(skipped_as_duplicate(), false)) {
                    counters_.deduplicated.fetch_add(1, std::memory_order_release);
                    --delivered;  // counted below as delivered; a skipped duplicate is not
                }
            }
            ++delivered;
            if (sample)
                counters_.latency.record(static_cast<std::uint64_t>(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count()));
            return nullptr;
        } catch (const decode_failure& e) {
            counters_.failed.fetch_add(1, std::memory_order_release);
            return std::make_unique<failure>(failure{attempt_error{n, core_->services.clock.now(), e.what()}, std::current_exception(), true});
        } catch (...) {
            counters_.failed.fetch_add(1, std::memory_order_release);
            auto ep = std::current_exception();
            return std::make_unique<failure>(failure{attempt_error{n, core_->services.clock.now(), describe(ep)}, ep, false});
        }
    }

    void run_chain(const message_base& m, const message_context& ctx, std::size_t i) {
        if (i == middleware_.size()) {
            invoke_(m, ctx);
            return;
        }
        middleware_[i](ctx, [&] { run_chain(m, ctx, i + 1); });
    }

    // Runs a retry attempt; returns false when the (ordered) lane must keep waiting.
    bool run_attempt(std::unique_ptr<retry_state> rs, lane* ordered_lane, std::uint64_t& delivered) {
        if (!active()) {
            const bool closing = core_->closed.load(std::memory_order_acquire);
            dead_letter_one(*rs->msg.get(), closing ? dead_letter_reason::shutdown : dead_letter_reason::unsubscribed,
                            std::move(rs->errors), rs->attempt - 1);
            if (closing) closing_discards_.fetch_add(1, std::memory_order_acq_rel);
            return true;
        }
        auto r = attempt(*rs->msg.get(), rs->attempt, delivered);
        if (!r) return true;
        rs->errors.push_back(std::move(r->error));
        return after_failure(std::move(rs), r->error_ptr, ordered_lane, r->undecodable);
    }

    // Decides between a retry and the dead-letter store. Returns false if an ordered lane parks.
    bool after_failure(std::unique_ptr<retry_state> rs, const std::exception_ptr& ep, lane* ordered_lane,
                       bool undecodable = false) {
        const std::uint32_t failed = rs->attempt;
        const bool retry_allowed = opts_.guarantee == delivery_guarantee::at_least_once && !undecodable &&
                                   !core_->closed.load(std::memory_order_acquire);
        if (!retry_allowed || !opts_.retry.should_retry(failed, ep)) {
            dead_letter_reason reason = undecodable ? dead_letter_reason::undecodable
                                        : (opts_.guarantee == delivery_guarantee::at_least_once &&
                                           opts_.retry.is_retryable && !opts_.retry.is_retryable(ep))
                                            ? dead_letter_reason::non_retryable
                                            : dead_letter_reason::handler_failed;
            dead_letter_one(*rs->msg.get(), reason, std::move(rs->errors), failed);
            return true;
        }
        counters_.retried.fetch_add(1, std::memory_order_release);
        const auto delay = opts_.retry.delay_after(failed);
        rs->attempt = failed + 1;
        if (ordered_lane) {
            // The timer is armed by drain() once it is done with the lane (arm_parked_retry):
            // armed here, it could fire and start a second drain of this lane while this one
            // still moves the rest of its batch into `held`.
            ordered_lane->parked = std::move(rs);
            ordered_lane->park_delay = delay;
            retries_pending_.fetch_add(1, std::memory_order_acq_rel);
            return false;
        }
        std::uint64_t id;
        {
            // Kept here, not in the timer callback, so that shutdown can hand it back even if
            // the timer never fires.
            std::lock_guard lock(retry_mutex_);
            id = ++next_retry_id_;
            waiting_retries_.emplace(id, std::move(rs));
        }
        retries_pending_.fetch_add(1, std::memory_order_acq_rel);
        core_->services.timers.schedule_after(delay, [self = shared_from_this(), id] {
            std::unique_ptr<retry_state> owned;
            {
                std::lock_guard lock(self->retry_mutex_);
                auto it = self->waiting_retries_.find(id);
                if (it == self->waiting_retries_.end()) return;  // handed back at shutdown
                owned = std::move(it->second);
                self->waiting_retries_.erase(it);
            }
            self->inflight_.fetch_add(1, std::memory_order_seq_cst);
            const void* previous = std::exchange(current_subscription(), self.get());
            std::uint64_t delivered = 0;
            self->run_attempt(std::move(owned), nullptr, delivered);
            if (delivered) self->counters_.delivered.fetch_add(delivered, std::memory_order_release);
            current_subscription() = previous;
            self->inflight_.fetch_sub(1, std::memory_order_seq_cst);
            self->retries_pending_.fetch_sub(1, std::memory_order_acq_rel);
        });
        return true;
    }

public:
    // Called only by the bus inside a publisher-slot dispatch (see event_bus::publish_scope),
    // which is what unsubscribe waits for: no per-call read-modify-write here. The delivery
    // is counted in the publishing thread's own counter (a lock-prefixed add per call was a
    // third of an inline delivery).
    COURIER_ALWAYS_INLINE bool deliver_inline(const message_base& m, std::uint32_t publisher = no_publisher) {
        if (COURIER_UNLIKELY(!active_.load(std::memory_order_seq_cst))) return false;
        std::uint64_t delivered = 0;
        auto r = attempt(m, 1, delivered);
        if (COURIER_LIKELY(!r)) {
            if (COURIER_LIKELY(publisher < inline_counter_slots && inline_delivered_)) {
                auto& c = (*inline_delivered_)[publisher].n;
                c.store(c.load(std::memory_order_relaxed) + delivered, std::memory_order_release);
            } else {
                counters_.delivered.fetch_add(delivered, std::memory_order_release);
            }
            return true;
        }
        // Retries of an inline subscription run on the executor (the publisher is not kept
        // waiting through a backoff). The message must outlive this call: copy it to the heap
        // as an envelope if it lives on the publisher's stack.
        auto rs = std::make_unique<retry_state>();
        if (m.heap) {
            retain(const_cast<message_base*>(&m));
            rs->msg = message_ref(const_cast<message_base*>(&m));
        } else {
            auto* copy = new envelope_message(m.to_envelope(core_->services.producer));
            copy->heap = true;
            rs->msg = message_ref(copy);
        }
        rs->attempt = 1;
        rs->errors.push_back(std::move(r->error));
        after_failure(std::move(rs), r->error_ptr, nullptr, r->undecodable);
        return true;
    }

private:
    void wait_for_inflight(long allowed) {
        for (unsigned spins = 0; inflight_.load(std::memory_order_seq_cst) > allowed; ++spins) {
            if (spins < 100) std::this_thread::yield();
            else std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    }

    std::size_t discard_waiting_retries(dead_letter_reason reason) {
        std::map<std::uint64_t, std::unique_ptr<retry_state>> taken;
        {
            std::lock_guard lock(retry_mutex_);
            taken.swap(waiting_retries_);
        }
        for (auto& [id, rs] : taken) {
            dead_letter_one(*rs->msg.get(), reason, std::move(rs->errors), rs->attempt - 1);
            retries_pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
        return taken.size();
    }

    std::size_t discard_lane(lane& l, dead_letter_reason reason) {
        std::size_t n = 0;
        if (l.parked) {
            auto rs = std::move(l.parked);
            dead_letter_one(*rs->msg.get(), reason, std::move(rs->errors), rs->attempt - 1);
            ++n;
        }
        for (auto* m : l.held) {
            discard_one(m, reason);
            ++n;
        }
        l.held.clear();
        // depth counts pushes begun; a racing push either lands (we pop it) or sees the closed
        // queue and takes its count back, so this loop ends.
        for (unsigned spins = 0; l.depth() > 0;) {
            message_base* m = nullptr;
            if (l.queue.try_pop(m) == queue_status::ok) {
                l.count_popped(1);
                discard_one(m, reason);
                ++n;
            } else if (++spins > 1000) {
                std::this_thread::yield();
            }
        }
        return n;
    }

    // A message met after `active_` went false outside discard_lane: a drain that popped it
    // just before, or a push that found the queue closed. Under shutdown it is handed back and
    // counted into the report (drain_and_close adds the count after waiting for those drains).
    void discard_while_closing(message_base* m) {
        if (core_->closed.load(std::memory_order_acquire)) {
            discard_one(m, dead_letter_reason::shutdown);
            closing_discards_.fetch_add(1, std::memory_order_acq_rel);
        } else {
            discard_one(m, dead_letter_reason::unsubscribed);
        }
    }

    void discard_one(message_base* m, dead_letter_reason reason) {
        if (opts_.guarantee == delivery_guarantee::at_least_once || reason == dead_letter_reason::shutdown) {
            dead_letter_one(*m, reason, {}, 0);
        } else {
            counters_.dropped.fetch_add(1, std::memory_order_release);
        }
        release(m);
    }

public:
    void dead_letter_one(const message_base& m, dead_letter_reason reason, std::vector<attempt_error> errors,
                         std::uint32_t attempts) {
        dead_letter d;
        d.message = m.to_envelope(core_->services.producer);
        d.subscription = name_;
        d.reason = reason;
        d.attempts = attempts;
        const auto now = core_->services.clock.now();
        d.first_failure = errors.empty() ? now : errors.front().at;
        d.last_failure = errors.empty() ? now : errors.back().at;
        d.errors = std::move(errors);
        core_->dead_letters.add(std::move(d));
        counters_.dead_lettered.fetch_add(1, std::memory_order_release);
    }

private:
    std::shared_ptr<bus_core> core_;
    std::string name_;
    std::string_view name_view_ = name_;                   // what every message_context carries
    std::string_view producer_view_ = core_->services.producer;
    std::string pattern_text_;
    std::optional<topic_pattern> pattern_;
    std::size_t type_index_;
    subscription_options opts_;
    invoker invoke_;
    std::vector<handle_middleware> middleware_;
    std::vector<std::unique_ptr<lane>> lanes_;
    std::uint32_t max_drainers_ = 1;
    std::int64_t claim_chunk_ = 1;
    bool asymmetric_ = membarrier_available();
    // Read by every publish, written only by unsubscribe: kept with the read-only fields,
    // away from the counters below that each drain writes.
    std::atomic<bool> active_{true};
    alignas(cache_line_size) std::atomic<long> inflight_{0};
    std::atomic<std::size_t> closing_discards_{0};  // handed back outside discard_lane during shutdown
    std::atomic<long> retries_pending_{0};
    std::mutex retry_mutex_;
    std::map<std::uint64_t, std::unique_ptr<retry_state>> waiting_retries_;  // pooled/inline retries on timers
    std::uint64_t next_retry_id_ = 0;
    subscription_counters counters_;
    // Inline deliveries, one counter per publishing thread (by publisher-slot index).
    static constexpr std::uint32_t inline_counter_slots = 32;
    struct alignas(cache_line_size) inline_counter {
        std::atomic<std::uint64_t> n{0};
    };
    std::unique_ptr<std::array<inline_counter, inline_counter_slots>> inline_delivered_;
};

}  // namespace detail
COURIER_END_NAMESPACE
