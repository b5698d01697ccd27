// Follows the jobs the server enqueued, fed only by the job events on the courier bus
// (courier.job.started/.progressed/.completed/.failed/.expired/.cancelled.v1), and fans each
// change out to the SSE clients watching that job as ready-made Server-Sent Event frames.
#pragma once

#include <courier/bus/event_bus.hpp>
#include <courier/jobs/job_events.hpp>
#include <courier/jobs/job_handle.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace job_status_web {

/// Where the tracker sends a job's frames: an SSE connection. push() must not block and may be
/// called from any thread (the connection posts the frame to its own strand).
class sse_sink {
public:
    virtual ~sse_sink() = default;
    /// `final` is true for the frame that ends the stream (`done` or `error`).
    virtual void push(std::string frame, bool final) = 0;
};

/// One SSE frame: `event: NAME`, `data: JSON` (JSON never contains a raw newline).
inline std::string sse_frame(std::string_view event, const nlohmann::json& data) {
    std::string f;
    f.reserve(64);
    f.append("event: ").append(event).append("\ndata: ").append(data.dump()).append("\n\n");
    return f;
}

/// Counters for GET /stats, so tests can see that state is cleaned up.
struct tracker_stats {
    std::size_t jobs = 0;      ///< tracked jobs (live + finished kept)
    std::size_t live = 0;      ///< tracked jobs not finished yet
    std::size_t watchers = 0;  ///< registered SSE watchers over all jobs
    std::uint64_t events = 0;  ///< job events received from the bus
    std::uint64_t untracked_events = 0;  ///< events of jobs this tracker does not know
    std::uint64_t forgotten = 0;         ///< finished jobs evicted beyond `keep_finished`
};

/// The jobs of this server and their watchers.
///
/// Thread safety: every member may be called from any thread; bus handlers run inline in the
/// job workers' threads and only take the tracker's mutex and post to the connections.
/// Ordering: a job's events are published from the thread running it, in order, and each
/// watcher's frames are posted to its strand in that order, under the mutex.
class job_tracker {
public:
    enum class watch_outcome { unknown, live, finished };

    explicit job_tracker(courier::event_bus& bus, std::size_t keep_finished = 1000)
        : bus_(bus), keep_finished_(keep_finished) {}
    ~job_tracker() { unsubscribe(); }
    job_tracker(const job_tracker&) = delete;
    job_tracker& operator=(const job_tracker&) = delete;

    /// Subscribes to the job events. inline_call: the handler only updates a map and posts, so
    /// it runs in the publishing job's thread, with no queue between the job and the clients.
    void subscribe() {
        on<courier::job_started>([](entry& e, const courier::job_event& ev) {
            e.state = ev.state;
            return std::optional<frame>(frame{"progress", progress_json(e, ev), false});
        });
        on<courier::job_progressed>([](entry& e, const courier::job_event& ev) {
            e.state = ev.state;
            return std::optional<frame>(frame{"progress", progress_json(e, ev), false});
        });
        on<courier::job_completed>([](entry& e, const courier::job_event& ev) {
            e.state = ev.state;
            e.percent = 100;
            nlohmann::json result = e.handle ? e.handle.result_json() : nlohmann::json();
            return std::optional<frame>(frame{"done", {{"id", ev.job_id.to_string()}, {"state", ev.state}, {"percent", 100}, {"result", std::move(result)}}, true});
        });
        on<courier::job_failed>([](entry& e, const courier::job_event& ev) {
            e.state = ev.state;
            // `retrying`: another attempt follows; the stream goes on.
            if (ev.state == "retrying") {
                return std::optional<frame>(frame{"progress", progress_json(e, ev), false});
            }
            return std::optional<frame>(error_frame(ev));
        });
        on<courier::job_expired>([](entry& e, const courier::job_event& ev) {
            e.state = ev.state;
            return std::optional<frame>(error_frame(ev));
        });
        on<courier::job_cancelled>([](entry& e, const courier::job_event& ev) {
            e.state = ev.state;
            return std::optional<frame>(error_frame(ev));
        });
    }

    /// Ends the subscriptions (no handler call starts after this returns).
    void unsubscribe() {
        for (auto& s : subs_) s.unsubscribe();
        subs_.clear();
    }

    /// Runs `enqueue` (returning courier::result<courier::job_handle>) with the mutex held, so
    /// the job is known before its first event can arrive from a worker thread. (The only event
    /// published inside enqueue itself, courier.job.enqueued.v1, is not subscribed to.)
    template <class Enqueue>
    auto track(Enqueue&& enqueue) {
        std::lock_guard lock(mu_);
        auto h = std::forward<Enqueue>(enqueue)();
        if (h) {
            entry& e = jobs_[h->id()];
            e.handle = *h;
            e.state = std::string(courier::to_string(h->state()));
            ++live_;
        }
        return h;
    }

    /// Registers `sink` for the job `id_text`: sends it the current state at once (the final
    /// frame for a finished job, which then needs no registration), then every change.
    watch_outcome watch(std::string_view id_text, const std::shared_ptr<sse_sink>& sink, std::uint64_t& token) {
        auto id = courier::uuid::parse(id_text);
        if (!id) return watch_outcome::unknown;
        std::lock_guard lock(mu_);
        auto it = jobs_.find(*id);
        if (it == jobs_.end()) return watch_outcome::unknown;
        entry& e = it->second;
        if (e.final_frame) {
            sink->push(*e.final_frame, true);
            return watch_outcome::finished;
        }
        token = ++next_token_;
        e.watchers.emplace_back(token, sink);
        ++watchers_;
        nlohmann::json snap{{"id", it->first.to_string()}, {"state", e.state}, {"percent", e.percent}, {"message", e.message}};
        sink->push(sse_frame("progress", snap), false);
        return watch_outcome::live;
    }

    /// Removes a watcher (a client that went away). Unknown tokens are ignored.
    void unwatch(std::string_view id_text, std::uint64_t token) {
        auto id = courier::uuid::parse(id_text);
        if (!id || token == 0) return;
        std::lock_guard lock(mu_);
        auto it = jobs_.find(*id);
        if (it == jobs_.end()) return;
        auto& w = it->second.watchers;
        for (auto i = w.begin(); i != w.end(); ++i) {
            if (i->first == token) {
                w.erase(i);
                --watchers_;
                return;
            }
        }
    }

    tracker_stats stats() const {
        std::lock_guard lock(mu_);
        return {jobs_.size(), live_, watchers_, events_, untracked_, forgotten_};
    }

private:
    struct entry {
        courier::job_handle handle;
        std::string state;
        int percent = 0;
        std::string message;
        std::optional<std::string> final_frame;  ///< set once the job ended
        std::vector<std::pair<std::uint64_t, std::weak_ptr<sse_sink>>> watchers;
    };
    struct frame {
        std::string_view event;
        nlohmann::json data;
        bool final = false;
    };

    static nlohmann::json progress_json(entry& e, const courier::job_event& ev) {
        e.percent = ev.progress;
        e.message = ev.message;
        return {{"id", ev.job_id.to_string()}, {"state", ev.state},    {"percent", ev.progress},
                {"message", ev.message},        {"attempt", ev.attempt}, {"max_attempts", ev.max_attempts}};
    }
    static frame error_frame(const courier::job_event& ev) {
        return {"error", {{"id", ev.job_id.to_string()}, {"state", ev.state}, {"error", ev.error}, {"attempt", ev.attempt}}, true};
    }

    template <class Event, class Update>
    void on(Update update) {
        courier::subscription_options o;
        o.name = "job_status_web." + std::string(Event::event_type.str());
        o.mode = courier::delivery_mode::inline_call;
        o.guarantee = courier::delivery_guarantee::at_most_once;
        subs_.push_back(bus_.subscribe<Event>([this, update](const Event& ev) { apply(ev, update); }, std::move(o)));
    }

    template <class Update>
    void apply(const courier::job_event& ev, const Update& update) {
        // The watchers this event reaches, released only after the mutex: dropping the last
        // reference to a connection runs its destructor, which unwatches (takes the mutex).
        std::vector<std::shared_ptr<sse_sink>> reached;
        std::lock_guard lock(mu_);
        ++events_;
        auto it = jobs_.find(ev.job_id);
        if (it == jobs_.end()) {
            ++untracked_;
            return;
        }
        entry& e = it->second;
        if (e.final_frame) return;  // a late event after the end (e.g. a timed-out attempt's)
        std::optional<frame> f = update(e, ev);
        if (!f) return;
        std::string text = sse_frame(f->event, f->data);
        for (auto w = e.watchers.begin(); w != e.watchers.end();) {
            if (auto sink = w->second.lock()) {
                sink->push(text, f->final);
                reached.push_back(std::move(sink));
                ++w;
            } else {
                w = e.watchers.erase(w);
                --watchers_;
            }
        }
        if (f->final) {
            watchers_ -= e.watchers.size();
            e.watchers.clear();
            e.final_frame = std::move(text);
            --live_;
            finished_.push_back(it->first);
            while (finished_.size() > keep_finished_) {
                jobs_.erase(finished_.front());
                finished_.pop_front();
                ++forgotten_;
            }
        }
    }

    courier::event_bus& bus_;
    const std::size_t keep_finished_;
    mutable std::mutex mu_;
    std::unordered_map<courier::uuid, entry> jobs_;
    std::deque<courier::uuid> finished_;
    std::size_t live_ = 0;
    std::size_t watchers_ = 0;
    std::uint64_t events_ = 0;
    std::uint64_t untracked_ = 0;
    std::uint64_t forgotten_ = 0;
    std::uint64_t next_token_ = 0;
    std::vector<courier::subscription> subs_;
};

}  // namespace job_status_web
