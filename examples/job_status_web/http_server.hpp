// The HTTP side of the example, on Boost.Beast: an acceptor and one asynchronous session per
// connection (a strand each, no thread per client). A session answers plain requests with
// keep-alive, or turns into a Server-Sent Events stream for GET /status/{id}.
#pragma once

#include "job_tracker.hpp"
#include "page.hpp"
#include "report_job.hpp"

#include <courier/jobs/job_system.hpp>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace job_status_web {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

/// Limits of the server (command-line flags of main.cpp).
struct server_options {
    std::uint32_t default_steps = 10;
    std::uint32_t default_step_ms = 100;
    std::chrono::milliseconds heartbeat{15000};     ///< SSE comment line that keeps proxies and dead peers honest
    std::chrono::seconds request_timeout{30};       ///< reading a request, writing a response or frame
};

class session;

/// What every session shares: the job queue, the tracker, the counters, and the open sessions
/// (so a shutdown can close them). Held by shared_ptr: a session may outlive the server object.
struct server_state {
    server_state(courier::job_queue q, job_tracker& t, server_options o) : reports(q), tracker(t), options(o) {}

    courier::job_queue reports;
    job_tracker& tracker;
    server_options options;
    std::atomic<std::size_t> connections{0};
    std::atomic<std::size_t> sse_streams{0};
    std::atomic<std::uint64_t> requests{0};

    std::mutex mu;
    std::unordered_map<std::uint64_t, std::weak_ptr<session>> sessions;
    std::uint64_t next_session = 0;
    bool stopping = false;
};

/// `k=v&k2=v2` (no percent-decoding needed for the numbers and flags this server reads).
inline std::map<std::string, std::string, std::less<>> parse_query(std::string_view q) {
    std::map<std::string, std::string, std::less<>> out;
    while (!q.empty()) {
        auto amp = q.find('&');
        std::string_view kv = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
        if (kv.empty()) continue;
        auto eq = kv.find('=');
        out[std::string(kv.substr(0, eq))] = eq == std::string_view::npos ? std::string("1") : std::string(kv.substr(eq + 1));
    }
    return out;
}

/// One connection.
///
/// Thread safety: everything runs on the session's strand; push() (called by the tracker from
/// job threads) only posts to it.
class session : public sse_sink, public std::enable_shared_from_this<session> {
public:
    session(tcp::socket&& socket, std::shared_ptr<server_state> st)
        : stream_(std::move(socket)), st_(std::move(st)), heartbeat_(stream_.get_executor()) {
        st_->connections.fetch_add(1, std::memory_order_relaxed);
    }
    ~session() override {
        if (sse_ && !finished_) {
            st_->tracker.unwatch(job_id_, token_);
            st_->sse_streams.fetch_sub(1, std::memory_order_relaxed);
        }
        st_->connections.fetch_sub(1, std::memory_order_relaxed);
        std::lock_guard lock(st_->mu);
        st_->sessions.erase(id_);
    }

    /// Registers the session (refused when the server is stopping) and starts reading.
    void run() {
        {
            std::lock_guard lock(st_->mu);
            if (st_->stopping) return;  // the socket closes with the session
            id_ = ++st_->next_session;
            st_->sessions.emplace(id_, weak_from_this());
        }
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
    }

    /// Closes the connection from any thread (server shutdown).
    void close_from_outside() {
        net::post(stream_.get_executor(), [self = shared_from_this()] { self->finish(); });
    }

    void push(std::string frame, bool final) override {
        net::post(stream_.get_executor(), [self = shared_from_this(), frame = std::move(frame), final]() mutable {
            self->queue_frame(std::move(frame), final ? kind::final : kind::progress);
        });
    }

private:
    enum class kind { header, progress, comment, final };
    struct pending {
        std::string text;
        kind k;
    };

    // ------------------------------------------------------------------ plain HTTP
    void read_request() {
        parser_.emplace();
        parser_->body_limit(64 * 1024);
        stream_.expires_after(st_->options.request_timeout);
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        if (ec) return finish();  // end_of_stream, timeout, reset, a malformed request: all end the connection
        st_->requests.fetch_add(1, std::memory_order_relaxed);
        handle(parser_->release());
    }

    void handle(http::request<http::string_body>&& req) {
        const std::string_view target(req.target().data(), req.target().size());
        const auto qpos = target.find('?');
        const std::string_view path = target.substr(0, qpos);
        const auto query = parse_query(qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1));
        const auto method = req.method();

        if (path == "/") {
            if (method != http::verb::get) return method_not_allowed(req, "GET");
            return send(make_response(req, http::status::ok, "text/html; charset=utf-8", std::string(index_html)));
        }
        if (path == "/reports") {
            if (method != http::verb::post) return method_not_allowed(req, "POST");
            return enqueue_report(req, query);
        }
        if (path == "/stats") {
            if (method != http::verb::get) return method_not_allowed(req, "GET");
            return send_json(req, http::status::ok, stats_json());
        }
        constexpr std::string_view status_prefix = "/status/";
        if (path.substr(0, status_prefix.size()) == status_prefix) {
            if (method != http::verb::get) return method_not_allowed(req, "GET");
            return start_sse(req, path.substr(status_prefix.size()));
        }
        send_json(req, http::status::not_found,
                  {{"error", "[courier.example.not_found] no route for " + std::string(req.method_string()) + " " +
                                 std::string(path) + " (routes: GET /, POST /reports, GET /status/{id}, GET /stats)"}});
    }

    void enqueue_report(const http::request<http::string_body>& req,
                        const std::map<std::string, std::string, std::less<>>& query) {
        report_job job{st_->options.default_steps, st_->options.default_step_ms, 0};
        bool fail = false;
        std::string problem;
        // Parameters from the query string, or from a JSON body {"fail": true, "steps": 20, ...}.
        nlohmann::json body = nlohmann::json::object();
        if (!req.body().empty()) {
            body = nlohmann::json::parse(req.body(), nullptr, false);
            if (body.is_discarded() || !body.is_object()) {
                return send_json(req, http::status::bad_request,
                                 {{"error", "[courier.example.bad_request] the body must be a JSON object, e.g. {\"fail\": true}"}});
            }
        }
        auto number = [&](std::string_view key, std::uint32_t& out, std::uint32_t lo, std::uint32_t hi) {
            std::optional<long long> v;
            if (auto it = query.find(key); it != query.end()) {
                long long x = 0;
                auto [p, e] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), x);
                if (e == std::errc() && p == it->second.data() + it->second.size()) v = x;
                else problem = std::string(key) + " must be an integer, got '" + it->second + "'";
            } else if (auto b = body.find(key); b != body.end()) {
                if (b->is_number_integer()) v = b->get<long long>();
                else problem = std::string(key) + " must be an integer";
            }
            if (!v) return;
            if (*v < lo || *v > hi) {
                problem = std::string(key) + " must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                          std::to_string(*v);
                return;
            }
            out = static_cast<std::uint32_t>(*v);
        };
        number("steps", job.steps, 1, 1000);
        number("step_ms", job.step_ms, 0, 60000);
        number("fail_at", job.fail_at, 0, 1000);
        if (auto it = query.find("fail"); it != query.end()) fail = it->second != "0" && it->second != "false";
        else if (auto b = body.find("fail"); b != body.end()) fail = b->is_boolean() ? b->get<bool>() : (b->is_number() && b->get<double>() != 0);
        if (problem.empty() && job.fail_at > job.steps) problem = "fail_at must not exceed steps";
        if (!problem.empty()) {
            return send_json(req, http::status::bad_request, {{"error", "[courier.example.bad_request] " + problem}});
        }
        if (fail && job.fail_at == 0) job.fail_at = (job.steps + 1) / 2;

        // One attempt: a report that fails says so at once (it lands in the dead-letter store).
        courier::job_options opts;
        opts.max_attempts = 1;
        auto h = st_->tracker.track([&] { return st_->reports.enqueue(job, opts); });
        if (!h) {
            return send_json(req, http::status::service_unavailable,
                             {{"error", h.error().message}, {"code", h.error().code.message()}});
        }
        const std::string id = h->id().to_string();
        send_json(req, http::status::accepted,
                  {{"id", id}, {"status_url", "/status/" + id}, {"steps", job.steps}, {"step_ms", job.step_ms}, {"fail_at", job.fail_at}});
    }

    nlohmann::json stats_json() const {
        const tracker_stats t = st_->tracker.stats();
        const courier::job_queue_stats q = st_->reports.stats();
        return {{"jobs_tracked", t.jobs},        {"jobs_live", t.live},
                {"watchers", t.watchers},         {"job_events", t.events},
                {"untracked_events", t.untracked_events}, {"jobs_forgotten", t.forgotten},
                {"connections", st_->connections.load(std::memory_order_relaxed)},
                {"sse_streams", st_->sse_streams.load(std::memory_order_relaxed)},
                {"requests", st_->requests.load(std::memory_order_relaxed)},
                {"queue", {{"enqueued", q.enqueued}, {"completed", q.completed}, {"dead", q.dead}, {"cancelled", q.cancelled}, {"active", q.active}}}};
    }

    void method_not_allowed(const http::request<http::string_body>& req, std::string_view allow) {
        auto res = make_response(req, http::status::method_not_allowed, "application/json",
                                 nlohmann::json{{"error", "[courier.example.method_not_allowed] " +
                                                              std::string(req.method_string()) + " is not allowed here; use " +
                                                              std::string(allow)}}.dump());
        res.set(http::field::allow, beast::string_view(allow.data(), allow.size()));
        send(std::move(res));
    }

    void send_json(const http::request<http::string_body>& req, http::status status, const nlohmann::json& body) {
        send(make_response(req, status, "application/json", body.dump()));
    }

    static http::response<http::string_body> make_response(const http::request<http::string_body>& req, http::status status,
                                                           std::string_view type, std::string body) {
        http::response<http::string_body> res{status, req.version()};
        res.set(http::field::server, "courier-job-status-web");
        res.set(http::field::content_type, beast::string_view(type.data(), type.size()));
        res.set(http::field::cache_control, "no-store");
        res.keep_alive(req.keep_alive());
        res.body() = std::move(body);
        res.prepare_payload();
        return res;
    }

    void send(http::response<http::string_body>&& res) {
        auto r = std::make_shared<http::response<http::string_body>>(std::move(res));
        stream_.expires_after(st_->options.request_timeout);
        http::async_write(stream_, *r, [self = shared_from_this(), r](beast::error_code ec, std::size_t) {
            if (ec || r->need_eof()) return self->finish();
            self->read_request();
        });
    }

    // ------------------------------------------------------------------ Server-Sent Events
    void start_sse(const http::request<http::string_body>& req, std::string_view id) {
        http::response<http::empty_body> res{http::status::ok, req.version()};
        res.set(http::field::server, "courier-job-status-web");
        res.set(http::field::content_type, "text/event-stream");
        res.set(http::field::cache_control, "no-cache");
        res.set("X-Accel-Buffering", "no");
        res.keep_alive(false);  // the body is the stream, ended by closing the connection
        std::ostringstream head;
        head << res.base();
        // The header goes first; the tracker's snapshot (posted to this strand) follows it.
        out_.push_back({head.str() + "retry: 2000\n\n", kind::header});
        sse_ = true;
        job_id_ = std::string(id);
        st_->sse_streams.fetch_add(1, std::memory_order_relaxed);
        const auto outcome = st_->tracker.watch(id, shared_from_this(), token_);
        if (outcome == job_tracker::watch_outcome::unknown) {
            out_.clear();
            sse_ = false;
            st_->sse_streams.fetch_sub(1, std::memory_order_relaxed);
            return send_json(req, http::status::not_found,
                             {{"error", "[courier.example.unknown_job] no job with id '" + job_id_ +
                                            "': it was never enqueued here, or it finished long ago and was forgotten"},
                              {"id", job_id_}});
        }
        stream_.expires_never();
        watch_for_close();
        arm_heartbeat();
        write_next();
    }

    // The client sends nothing on an SSE stream: a read that completes means it closed the
    // connection (or broke the protocol); either way the stream ends and the watcher goes away.
    void watch_for_close() {
        stream_.socket().async_read_some(net::buffer(probe_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            (void)ec;
            self->finish();
        });
    }

    void arm_heartbeat() {
        heartbeat_.expires_after(st_->options.heartbeat);
        heartbeat_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (ec || self->finished_) return;
            self->queue_frame(": keep-alive\n\n", kind::comment);
            self->arm_heartbeat();
        });
    }

    void queue_frame(std::string text, kind k) {
        if (finished_ || final_queued_) return;
        // A slow reader never makes the queue grow: a progress frame that has not started
        // writing yet is replaced by the newer one (the latest percent supersedes it).
        if (k == kind::progress && out_.size() > (writing_ ? 1u : 0u) && out_.back().k == kind::progress) {
            out_.back().text = std::move(text);
        } else {
            out_.push_back({std::move(text), k});
        }
        if (k == kind::final) final_queued_ = true;
        write_next();
    }

    void write_next() {
        if (writing_ || finished_ || out_.empty()) return;
        writing_ = true;
        stream_.expires_after(st_->options.request_timeout);  // a client that stops reading is dropped
        net::async_write(stream_, net::buffer(out_.front().text), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            self->writing_ = false;
            if (ec || self->finished_) return self->finish();  // finished_: closed meanwhile, out_ is empty
            self->stream_.expires_never();
            const bool was_final = self->out_.front().k == kind::final;
            self->out_.pop_front();
            if (was_final) return self->finish();
            self->write_next();
        });
    }

    /// Ends the connection once: unregisters the watcher, stops the timer, closes the socket.
    void finish() {
        if (finished_) return;
        finished_ = true;
        if (sse_) {
            st_->tracker.unwatch(job_id_, token_);
            st_->sse_streams.fetch_sub(1, std::memory_order_relaxed);
            heartbeat_.cancel();
        }
        out_.clear();
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream_.close();
    }

    beast::tcp_stream stream_;
    std::shared_ptr<server_state> st_;
    net::steady_timer heartbeat_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::uint64_t id_ = 0;
    bool sse_ = false;
    bool finished_ = false;
    bool writing_ = false;
    bool final_queued_ = false;
    std::string job_id_;
    std::uint64_t token_ = 0;
    std::deque<pending> out_;
    char probe_[256];
};

/// Accepts connections on 127.0.0.1 and hands each to a session on its own strand.
class http_server {
public:
    http_server(net::io_context& ioc, const tcp::endpoint& at, std::shared_ptr<server_state> st)
        : ioc_(ioc), acceptor_(net::make_strand(ioc)), st_(std::move(st)) {
        acceptor_.open(at.protocol());
        acceptor_.set_option(net::socket_base::reuse_address(true));
        acceptor_.bind(at);
        acceptor_.listen(net::socket_base::max_listen_connections);
    }

    unsigned short port() const { return acceptor_.local_endpoint().port(); }

    void start() { net::dispatch(acceptor_.get_executor(), [this] { accept(); }); }

    /// Stops accepting and closes every open connection (SSE clients see the stream end).
    /// Returns at once; the io_context runs out of work when the sessions are gone.
    void stop() {
        net::post(acceptor_.get_executor(), [this] {
            beast::error_code ignored;
            acceptor_.close(ignored);
            retry_.cancel();
        });
        std::vector<std::shared_ptr<session>> open;
        {
            std::lock_guard lock(st_->mu);
            st_->stopping = true;
            for (auto& [id, w] : st_->sessions)
                if (auto s = w.lock()) open.push_back(std::move(s));
        }
        for (auto& s : open) s->close_from_outside();
    }

private:
    void accept() {
        acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
            if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
            if (!ec) {
                std::make_shared<session>(std::move(socket), st_)->run();
                return accept();
            }
            // E.g. out of descriptors: say so, wait a little (no busy loop), keep serving.
            std::cerr << "accept: " << ec.message() << "\n";
            retry_.expires_after(std::chrono::milliseconds(100));
            retry_.async_wait([this](beast::error_code e) {
                if (!e && acceptor_.is_open()) accept();
            });
        });
    }

    net::io_context& ioc_;
    tcp::acceptor acceptor_;
    net::steady_timer retry_{acceptor_.get_executor()};
    std::shared_ptr<server_state> st_;
};

}  // namespace job_status_web
