// The Redis Streams adapter (hiredis 0.14: RESP2, blocking contexts driven with select()).
// Publishing is XADD MAXLEN ~ N, pipelined, each reply a confirm; consuming is a consumer group
// (XGROUP CREATE MKSTREAM, XREADGROUP on a connection of its own so its BLOCK never holds up a
// publish, XACK), and entries a dead consumer left pending come back with XAUTOCLAIM. Each
// entry holds the fields event_type, event_id, key and envelope (JSON), so `redis-cli XRANGE`
// shows readable JSON. Link courier::bridge_redis.
#pragma once

#include <courier/bridge/detail/wire_redis.hpp>
#include <courier/bridge/registry.hpp>
#include <courier/bridge/transport.hpp>
#include <courier/bridge/url.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace bridge {

/// Options of the Redis adapter. From a URL:
/// `redis://[user:password@]host[:port][/db]?stream=orders&maxlen=1000000&claim_idle_ms=30000&block_ms=100`.
struct redis_options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string user;      ///< ACL user (Redis 6+); empty: AUTH with the password only
    std::string password;  ///< empty: no AUTH
    std::uint32_t db = 0;  ///< SELECT'ed after connecting
    /// The stream a forward route without a topic of its own writes to (empty: the event type).
    std::string stream;
    /// XADD trims each stream to about this many entries (`MAXLEN ~`); 0 never trims. Trimming
    /// can remove entries still pending in a group; XAUTOCLAIM then reports them deleted.
    std::uint64_t maxlen = 1000000;
    /// An entry pending (delivered, not acked) this long is reclaimed by XAUTOCLAIM for this consumer.
    std::chrono::milliseconds claim_idle{30000};
    /// How often each subscription runs XAUTOCLAIM.
    std::chrono::milliseconds claim_interval{1000};
    /// XREADGROUP's BLOCK: the longest a read waits on the server (new streams join the next read).
    std::chrono::milliseconds block{100};

    /// Reads the options from a parsed `redis://` URL.
    /// Errors: "[courier.bridge.url.bad_param]" for a malformed number,
    /// "[courier.bridge.redis.bad_db]" for a path that is not a database number,
    /// "[courier.bridge.redis.not_redis]" for another scheme.
    static result<redis_options> from_url(const broker_url& url) {
        if (url.scheme != broker_scheme::redis)
            return unexpected(errc::invalid_argument, "[courier.bridge.redis.not_redis] " + url.redacted() + " is not a redis:// URL");
        redis_options o;
        o.host = url.host();
        o.port = url.port();
        o.user = url.user;
        o.password = url.password;
        if (!url.path.empty()) {
            std::uint64_t db = 0;
            for (char c : url.path) {
                if (c < '0' || c > '9' || db > 100000)
                    return unexpected(errc::invalid_argument, "[courier.bridge.redis.bad_db] path '/" + url.path +
                                                                  "' is not a database number in " + url.redacted());
                db = db * 10 + static_cast<std::uint64_t>(c - '0');
            }
            o.db = static_cast<std::uint32_t>(db);
        }
        o.stream = url.param("stream");
        auto maxlen = url.param_uint("maxlen", o.maxlen);
        if (!maxlen) return unexpected(maxlen.error());
        o.maxlen = *maxlen;
        auto idle = url.param_uint("claim_idle_ms", static_cast<std::uint64_t>(o.claim_idle.count()));
        if (!idle) return unexpected(idle.error());
        o.claim_idle = std::chrono::milliseconds(*idle);
        auto interval = url.param_uint("claim_interval_ms", static_cast<std::uint64_t>(o.claim_interval.count()));
        if (!interval) return unexpected(interval.error());
        o.claim_interval = std::chrono::milliseconds(*interval);
        auto block = url.param_uint("block_ms", static_cast<std::uint64_t>(o.block.count()));
        if (!block) return unexpected(block.error());
        o.block = std::chrono::milliseconds(std::max<std::uint64_t>(1, *block));
        return o;
    }
};

namespace detail {

/// Blocks SIGPIPE in this thread while hiredis writes, so a write to a connection the server
/// closed returns EPIPE (a lost connection) instead of killing the process; a SIGPIPE raised
/// meanwhile is consumed before the mask is restored.
class sigpipe_guard {
public:
    sigpipe_guard() noexcept {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        sigpending(&pending);
        was_pending_ = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    }
    ~sigpipe_guard() {
        if (!was_pending_) {
            sigset_t pending;
            sigemptyset(&pending);
            sigpending(&pending);
            if (sigismember(&pending, SIGPIPE) == 1) {
                timespec zero{0, 0};
                while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
                }
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    sigpipe_guard(const sigpipe_guard&) = delete;
    sigpipe_guard& operator=(const sigpipe_guard&) = delete;

private:
    sigset_t pipe_{};
    sigset_t old_{};
    bool was_pending_ = false;
};

struct redis_reply_deleter {
    void operator()(redisReply* r) const noexcept {
        if (r) freeReplyObject(r);
    }
};
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_deleter>;

struct redis_context_deleter {
    void operator()(redisContext* c) const noexcept {
        if (c) redisFree(c);
    }
};
using redis_context_ptr = std::unique_ptr<redisContext, redis_context_deleter>;

/// Appends one command from its arguments (binary safe).
inline void redis_append(redisContext* c, const std::vector<std::string_view>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (auto a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data());
}

}  // namespace detail

/// A Redis Streams client (see transport.hpp for the contract).
///
/// Thread safety: as every transport: one driving thread; `wake()` and `caps()` from any thread.
class redis_transport final : public transport {
public:
    explicit redis_transport(redis_options o) : options_(std::move(o)), maxlen_text_(std::to_string(options_.maxlen)) {
        caps_.broker = "redis";
        caps_.wildcards = wildcard_dialect::none;
        caps_.per_key_order = true;  // one stream is one ordered log
        caps_.consumer_groups = true;
        caps_.redelivery = true;  // pending entries list + XAUTOCLAIM
        caps_.native_dedup = false;
        caps_.delayed_delivery = false;
        caps_.priorities = false;
        caps_.request_reply = false;
        caps_.replay = true;
        caps_.max_message_bytes = std::size_t{512} << 20;  // proto-max-bulk-len's default
        wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    ~redis_transport() override {
        close();
        if (wake_fd_ >= 0) ::close(wake_fd_);
    }

    const capabilities& caps() const noexcept override { return caps_; }
    std::string default_topic() const override { return options_.stream; }
    const redis_options& options() const noexcept { return options_; }

    result<void> connect(duration timeout) override {
        if (connected()) return {};
        detail::sigpipe_guard no_sigpipe;
        close();
        auto cmd = open(timeout);
        if (!cmd) return unexpected(cmd.error());
        auto rd = open(timeout);
        if (!rd) return unexpected(rd.error());
        cmd_ = std::move(*cmd);
        read_ = std::move(*rd);
        for (auto& s : subs_) {
            s.history = true;  // first read this consumer's own pending entries (after a restart)
            s.history_from = "0";
            s.next_claim = {};
            s.claim_cursor = "0-0";
        }
        for (auto& s : subs_) {
            if (auto r = create_group(s); !r) {
                close();
                return r;
            }
        }
        return {};
    }
    bool connected() const noexcept override { return cmd_ != nullptr && read_ != nullptr; }
    void close() noexcept override {
        cmd_.reset();
        read_.reset();
        pending_.clear();
        acks_.clear();  // not sent: the entries stay pending and come back
        read_outstanding_ = false;
        ready_confirms_.clear();
        ready_messages_.clear();
    }

    result<void> publish(std::uint64_t sequence, const wire_message& m) override {
        if (!connected()) return lost_connection("publish");
        if (m.payload.size() > caps_.max_message_bytes)
            return unexpected(errc::limit_exceeded, "[courier.bridge.redis.too_large] an entry of " +
                                                        std::to_string(m.payload.size()) + " bytes is above Redis's limit");
        // XADD <stream> [MAXLEN ~ n] * event_type .. event_id .. key .. envelope .. (no allocation here)
        const char* argv[15];
        std::size_t lens[15];
        int n = 0;
        auto arg = [&](std::string_view a) {
            argv[n] = a.data();
            lens[n++] = a.size();
        };
        arg("XADD");
        arg(m.topic);
        if (options_.maxlen) {
            arg("MAXLEN");
            arg("~");
            arg(maxlen_text_);
        }
        arg("*");
        arg("event_type");
        arg(m.event_type);
        arg("event_id");
        arg(m.event_id);
        arg("key");
        arg(m.key);
        arg("envelope");
        arg(m.payload);
        redisAppendCommandArgv(cmd_.get(), n, argv, lens);
        pending_.push_back(pending_reply{pending_kind::xadd, sequence, 0});
        return {};
    }

    result<void> subscribe(const ingest_spec& spec) override {
        for (auto& s : subs_)
            if (s.spec.topic == spec.topic && s.spec.group == spec.group && s.spec.consumer == spec.consumer)
                return connected() ? result<void>{} : lost_connection("subscribe");
        sub s;
        s.spec = spec;
        s.group = spec.group.empty() ? "courier.fanout." + (spec.consumer.empty() ? std::string("consumer") : spec.consumer) : spec.group;
        s.consumer = spec.consumer.empty() ? std::string("courier") : spec.consumer;
        subs_.push_back(std::move(s));
        if (!connected()) return lost_connection("subscribe");
        detail::sigpipe_guard no_sigpipe;
        return create_group(subs_.back());
    }

    result<void> poll(duration max_wait, std::size_t max_messages, const std::function<void(publish_confirm)>& on_confirm,
                      const std::function<void(inbound_message&&)>& on_message) override {
        if (!connected()) return lost_connection("poll");
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(max_wait);
        if (max_messages == 0) max_messages = 1;
        result<void> r;
        {
            detail::sigpipe_guard no_sigpipe;
            r = step(deadline, max_messages);
        }
        // Hand over what arrived even when the connection broke afterwards.
        auto confirms = std::move(ready_confirms_);
        auto messages = std::move(ready_messages_);
        ready_confirms_.clear();
        ready_messages_.clear();
        for (auto& c : confirms) on_confirm(std::move(c));
        for (auto& m : messages) on_message(std::move(m));
        if (!r) close();
        return r;
    }

    result<void> ack(const ingest_spec& spec, const delivery_tag& tag) override {
        if (!connected()) return lost_connection("ack");
        const sub* s = find(spec);
        if (!s) return {};
        // Collected and sent as one XACK per subscription at the next poll.
        acks_[static_cast<std::size_t>(s - subs_.data())].push_back(tag.id);
        return {};
    }

    /// Redis has no negative ack: with `requeue` the entry stays pending and comes back through
    /// XAUTOCLAIM after claim_idle; without it the entry is acked (the bridge dead-lettered it).
    result<void> nack(const ingest_spec& spec, const delivery_tag& tag, bool requeue) override {
        if (requeue) return connected() ? result<void>{} : lost_connection("nack");
        return ack(spec, tag);
    }

    void wake() noexcept override {
        if (wake_fd_ < 0) return;
        const std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    }

private:
    enum class pending_kind : std::uint8_t { xadd, claim, other };
    struct pending_reply {
        pending_kind kind;
        std::uint64_t sequence;  // xadd
        std::size_t sub;         // claim
    };
    struct sub {
        ingest_spec spec;
        std::string group;
        std::string consumer;
        bool history = true;  // read own pending entries (from history_from) before new ones (">")
        std::string history_from = "0";
        std::chrono::steady_clock::time_point next_claim{};
        std::string claim_cursor = "0-0";
    };

    static unexpected lost_connection(std::string_view what) {
        return unexpected(errc::io_error, "[courier.bridge.redis.disconnected] " + std::string(what) + ": not connected");
    }
    static unexpected io_failure(const redisContext* c, std::string_view what) {
        return unexpected(errc::io_error, "[courier.bridge.redis.io] " + std::string(what) + ": " +
                                              (c && c->err ? std::string(c->errstr) : std::string("connection lost")));
    }

    const sub* find(const ingest_spec& spec) const {
        for (auto& s : subs_)
            if (s.spec.topic == spec.topic && s.spec.group == spec.group && s.spec.consumer == spec.consumer) return &s;
        for (auto& s : subs_)
            if (s.spec.topic == spec.topic && s.spec.group == spec.group) return &s;
        return nullptr;
    }

    result<detail::redis_context_ptr> open(duration timeout) {
        const auto us = std::max<long long>(1000, std::chrono::duration_cast<std::chrono::microseconds>(timeout).count());
        timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
        detail::redis_context_ptr c(redisConnectWithTimeout(options_.host.c_str(), options_.port, tv));
        if (!c) return unexpected(errc::io_error, "[courier.bridge.redis.connect] out of memory");
        if (c->err)
            return unexpected(errc::io_error, "[courier.bridge.redis.connect] " + options_.host + ":" +
                                                  std::to_string(options_.port) + ": " + c->errstr);
        // Blocking reads and writes give up after this long (a dead server never hangs the bridge).
        timeval io{5, 0};
        redisSetTimeout(c.get(), io);
        if (!options_.password.empty()) {
            std::vector<std::string_view> args{"AUTH"};
            if (!options_.user.empty()) args.push_back(options_.user);
            args.push_back(options_.password);
            auto r = sync(c.get(), args);
            if (!r) return unexpected(r.error());
            if ((*r)->type == REDIS_REPLY_ERROR)
                return unexpected(errc::invalid_argument, "[courier.bridge.redis.auth] " + std::string(detail::reply_text(r->get())));
        }
        if (options_.db) {
            const std::string db = std::to_string(options_.db);
            auto r = sync(c.get(), {"SELECT", db});
            if (!r) return unexpected(r.error());
            if ((*r)->type == REDIS_REPLY_ERROR)
                return unexpected(errc::invalid_argument, "[courier.bridge.redis.select] " + std::string(detail::reply_text(r->get())));
        }
        return c;
    }

    static result<detail::redis_reply_ptr> sync(redisContext* c, const std::vector<std::string_view>& args) {
        detail::redis_append(c, args);
        void* raw = nullptr;
        if (redisGetReply(c, &raw) != REDIS_OK || !raw) return io_failure(c, args.front());
        return detail::redis_reply_ptr(static_cast<redisReply*>(raw));
    }

    // Reads the replies of every pipelined command first (keeping their outcomes for the next
    // poll), so a synchronous command's reply is the next one on the wire.
    result<void> drain_pending() {
        while (!pending_.empty()) {
            void* raw = nullptr;
            if (redisGetReply(cmd_.get(), &raw) != REDIS_OK || !raw) return io_failure(cmd_.get(), "reply");
            handle_reply(detail::redis_reply_ptr(static_cast<redisReply*>(raw)));
        }
        return {};
    }

    result<void> create_group(sub& s) {
        if (auto r = drain_pending(); !r) return r;
        auto r = sync(cmd_.get(), {"XGROUP", "CREATE", s.spec.topic, s.group, s.spec.from_beginning ? "0" : "$", "MKSTREAM"});
        if (!r) return unexpected(r.error());
        if ((*r)->type == REDIS_REPLY_ERROR && detail::reply_text(r->get()).substr(0, 9) != "BUSYGROUP")
            return unexpected(errc::invalid_argument, "[courier.bridge.redis.group] XGROUP CREATE " + s.spec.topic + " " + s.group +
                                                          ": " + std::string(detail::reply_text(r->get())));
        return {};
    }

    // One poll: flush what is buffered, keep a blocking XREADGROUP in flight on the read
    // connection, run due XAUTOCLAIMs, then wait (select) for replies, a wake-up or the deadline.
    result<void> step(std::chrono::steady_clock::time_point deadline, std::size_t max_messages) {
        send_acks();
        if (auto r = flush(cmd_.get()); !r) return r;
        if (!read_outstanding_ && !subs_.empty()) {
            issue_read(max_messages);
            if (auto r = flush(read_.get()); !r) return r;
        }
        const auto now = std::chrono::steady_clock::now();
        bool claimed = false;
        for (std::size_t i = 0; i < subs_.size(); ++i) {
            auto& s = subs_[i];
            if (now < s.next_claim) continue;
            s.next_claim = now + options_.claim_interval;
            const std::string idle = std::to_string(options_.claim_idle.count());
            const std::string count = std::to_string(max_messages);
            detail::redis_append(cmd_.get(), {"XAUTOCLAIM", s.spec.topic, s.group, s.consumer, idle, s.claim_cursor, "COUNT", count});
            pending_.push_back(pending_reply{pending_kind::claim, 0, i});
            claimed = true;
        }
        if (claimed)
            if (auto r = flush(cmd_.get()); !r) return r;

        for (;;) {
            if (!ready_confirms_.empty() || !ready_messages_.empty()) return {};
            fd_set fds;
            FD_ZERO(&fds);
            int top = -1;
            auto add = [&](int fd) {
                FD_SET(fd, &fds);
                top = std::max(top, fd);
            };
            if (!pending_.empty()) add(cmd_->fd);
            if (read_outstanding_) add(read_->fd);
            if (wake_fd_ >= 0) add(wake_fd_);
            const auto left = deadline - std::chrono::steady_clock::now();
            const auto us = std::max<long long>(0, std::chrono::duration_cast<std::chrono::microseconds>(left).count());
            timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
            const int n = ::select(top + 1, &fds, nullptr, nullptr, &tv);
            if (n < 0) {
                if (errno == EINTR) continue;
                return unexpected(errc::io_error, "[courier.bridge.redis.io] select failed");
            }
            bool woken = false;
            if (wake_fd_ >= 0 && FD_ISSET(wake_fd_, &fds)) {
                std::uint64_t v;
                [[maybe_unused]] auto rd = ::read(wake_fd_, &v, sizeof v);
                woken = true;
            }
            if (!pending_.empty() && FD_ISSET(cmd_->fd, &fds)) {
                if (redisBufferRead(cmd_.get()) != REDIS_OK) return io_failure(cmd_.get(), "read");
                for (;;) {
                    void* raw = nullptr;
                    if (redisGetReplyFromReader(cmd_.get(), &raw) != REDIS_OK) return io_failure(cmd_.get(), "reply");
                    if (!raw) break;
                    handle_reply(detail::redis_reply_ptr(static_cast<redisReply*>(raw)));
                }
            }
            if (read_outstanding_ && FD_ISSET(read_->fd, &fds)) {
                if (redisBufferRead(read_.get()) != REDIS_OK) return io_failure(read_.get(), "read");
                void* raw = nullptr;
                if (redisGetReplyFromReader(read_.get(), &raw) != REDIS_OK) return io_failure(read_.get(), "reply");
                if (raw) {
                    read_outstanding_ = false;
                    if (auto r = handle_read(detail::redis_reply_ptr(static_cast<redisReply*>(raw))); !r) return r;
                    if (ready_messages_.empty() && !subs_.empty()) {
                        // Nothing new (BLOCK ran out): keep a read in flight.
                        issue_read(max_messages);
                        if (auto r = flush(read_.get()); !r) return r;
                    }
                }
            }
            if (woken || n == 0 || std::chrono::steady_clock::now() >= deadline) return {};
        }
    }

    void send_acks() {
        for (auto& [i, ids] : acks_) {
            if (ids.empty() || i >= subs_.size()) continue;
            std::vector<std::string_view> args{"XACK", subs_[i].spec.topic, subs_[i].group};
            for (auto& id : ids) args.push_back(id);
            detail::redis_append(cmd_.get(), args);
            pending_.push_back(pending_reply{pending_kind::other, 0, 0});
            ids.clear();
        }
    }

    static result<void> flush(redisContext* c) {
        int done = 0;
        while (!done)
            if (redisBufferWrite(c, &done) != REDIS_OK) return io_failure(c, "write");
        return {};
    }

    void issue_read(std::size_t max_messages) {
        // One XREADGROUP per (group, consumer); a bridge usually has one subscription.
        // Subscriptions of other groups are read in turn, one per read.
        const std::size_t i = next_read_++ % subs_.size();
        auto& s = subs_[i];
        const std::string count = std::to_string(max_messages);
        const std::string block = std::to_string(options_.block.count());
        std::vector<std::string_view> args{"XREADGROUP", "GROUP", s.group, s.consumer, "COUNT", count};
        if (!s.history) args.insert(args.end(), {"BLOCK", block});
        args.insert(args.end(), {"STREAMS", s.spec.topic, s.history ? std::string_view(s.history_from) : std::string_view(">")});
        detail::redis_append(read_.get(), args);
        read_sub_ = i;
        read_outstanding_ = true;
    }

    void handle_reply(detail::redis_reply_ptr r) {
        if (pending_.empty()) return;
        const pending_reply p = pending_.front();
        pending_.pop_front();
        switch (p.kind) {
        case pending_kind::xadd:
            if (r->type == REDIS_REPLY_ERROR)
                ready_confirms_.push_back(publish_confirm{p.sequence, unexpected(errc::io_error, "[courier.bridge.redis.xadd] " +
                                                                                               std::string(detail::reply_text(r.get())))});
            else
                ready_confirms_.push_back(publish_confirm{p.sequence, {}});
            break;
        case pending_kind::claim: handle_claim(p.sub, r.get()); break;
        case pending_kind::other: break;  // XACK: an error there changes nothing (the entry comes back)
        }
    }

    // XAUTOCLAIM reply (Redis 7): [next cursor, [entries], [deleted ids]].
    void handle_claim(std::size_t i, const redisReply* r) {
        if (i >= subs_.size() || r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
            if (r->type == REDIS_REPLY_ERROR && detail::reply_text(r).substr(0, 7) == "NOGROUP" && i < subs_.size())
                regroup_ = true;
            return;
        }
        auto& s = subs_[i];
        s.claim_cursor = std::string(detail::reply_text(r->element[0]));
        if (s.claim_cursor.empty()) s.claim_cursor = "0-0";
        const redisReply* entries = r->element[1];
        if (entries->type != REDIS_REPLY_ARRAY) return;
        for (std::size_t k = 0; k < entries->elements; ++k) add_entry(s, entries->element[k], 2);
        if (s.claim_cursor != "0-0") s.next_claim = {};  // more to claim: go on at the next poll
    }

    result<void> handle_read(detail::redis_reply_ptr r) {
        if (read_sub_ >= subs_.size()) return {};
        auto& s = subs_[read_sub_];
        if (r->type == REDIS_REPLY_ERROR) {
            const auto text = detail::reply_text(r.get());
            if (text.substr(0, 7) == "NOGROUP") return create_group(s);  // the stream went away (a restart without data)
            return unexpected(errc::io_error, "[courier.bridge.redis.xreadgroup] " + std::string(text));
        }
        if (r->type != REDIS_REPLY_ARRAY) {  // nil: BLOCK ran out
            return {};
        }
        std::size_t got = 0;
        for (std::size_t k = 0; k < r->elements; ++k) {
            const redisReply* stream = r->element[k];
            if (stream->type != REDIS_REPLY_ARRAY || stream->elements < 2) continue;
            const redisReply* entries = stream->element[1];
            if (entries->type != REDIS_REPLY_ARRAY) continue;
            for (std::size_t e = 0; e < entries->elements; ++e) {
                add_entry(s, entries->element[e], s.history ? 2 : 1);
                if (s.history && entries->element[e]->type == REDIS_REPLY_ARRAY && entries->element[e]->elements > 0)
                    s.history_from = std::string(detail::reply_text(entries->element[e]->element[0]));
                ++got;
            }
        }
        if (s.history && got == 0) s.history = false;  // own pending entries all re-read: new ones now
        if (regroup_) {
            regroup_ = false;
            return create_group(s);
        }
        return {};
    }

    // One stream entry [id, [field, value, ...]] as an inbound message (see redis_read_entry).
    void add_entry(const sub& s, const redisReply* entry, std::uint32_t deliveries) {
        inbound_message m;
        switch (detail::redis_read_entry(entry, s.spec.topic, deliveries, m)) {
        case detail::redis_entry::malformed: return;
        case detail::redis_entry::deleted:
            // Deleted by trimming while pending: nothing to deliver; ack it so it leaves the PEL.
            detail::redis_append(cmd_.get(), {"XACK", s.spec.topic, s.group, m.tag.id});
            pending_.push_back(pending_reply{pending_kind::other, 0, 0});
            return;
        case detail::redis_entry::message: ready_messages_.push_back(std::move(m)); return;
        }
    }

    redis_options options_;
    std::string maxlen_text_;
    capabilities caps_;
    detail::redis_context_ptr cmd_;   // XADD, XACK, XGROUP, XAUTOCLAIM (pipelined)
    detail::redis_context_ptr read_;  // XREADGROUP ... BLOCK only
    std::deque<pending_reply> pending_;
    std::map<std::size_t, std::vector<std::string>> acks_;  // entry ids to XACK, by subscription
    std::vector<sub> subs_;
    std::size_t next_read_ = 0;
    std::size_t read_sub_ = 0;
    bool read_outstanding_ = false;
    bool regroup_ = false;
    std::vector<publish_confirm> ready_confirms_;
    std::vector<inbound_message> ready_messages_;
    int wake_fd_ = -1;
};

namespace detail {
inline const bool redis_registered = register_transport(broker_scheme::redis, [](const broker_url& url) -> result<std::unique_ptr<transport>> {
    auto o = redis_options::from_url(url);
    if (!o) return unexpected(o.error());
    return std::unique_ptr<transport>(std::make_unique<redis_transport>(std::move(*o)));
});
}  // namespace detail

}  // namespace bridge
COURIER_END_NAMESPACE
