// The saga journal: every transition of every saga is appended here before it takes effect,
// so that `saga_runner::recover()` can rebuild each unfinished saga after a restart.
// `saga_journal` is the interface; memory_journal.hpp holds the default (it survives a runner,
// not a process), file_journal.hpp the durable one.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/detail/quote.hpp>
#include <courier/core/result.hpp>
#include <courier/core/uuid.hpp>
#include <courier/event/detail/json_text.hpp>
#include <courier/saga/saga_state.hpp>

#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// What a journal record says happened.
enum class journal_op : std::uint8_t {
    started,              ///< a saga began (definition, correlation id, initial context)
    step_started,         ///< an attempt of an action or compensation began
    step_completed,       ///< it succeeded (an action's record carries the context after it)
    step_failed,          ///< it failed; `due` is the retry time, or zero when no retry follows
    waiting,              ///< a signal wait began; `due` is its deadline
    signal_received,      ///< a signal arrived: buffered (no step) or ending a wait (step + context)
    wait_timed_out,       ///< a signal wait reached its deadline
    cancel_requested,     ///< `cancel()` was called; `error` is the reason
    compensating,         ///< compensation begins (after a failure or a cancel)
    completed,            ///< final: every step succeeded
    failed,               ///< final: compensated after a failure
    compensation_failed,  ///< final: a compensation failed after its retries
    cancelled,            ///< final: compensated after a cancel
};

constexpr std::string_view to_string(journal_op op) noexcept {
    switch (op) {
    case journal_op::started: return "started";
    case journal_op::step_started: return "step_started";
    case journal_op::step_completed: return "step_completed";
    case journal_op::step_failed: return "step_failed";
    case journal_op::waiting: return "waiting";
    case journal_op::signal_received: return "signal_received";
    case journal_op::wait_timed_out: return "wait_timed_out";
    case journal_op::cancel_requested: return "cancel_requested";
    case journal_op::compensating: return "compensating";
    case journal_op::completed: return "completed";
    case journal_op::failed: return "failed";
    case journal_op::compensation_failed: return "compensation_failed";
    case journal_op::cancelled: return "cancelled";
    }
    return "unknown";
}

/// True for the records that end a saga.
constexpr bool is_final(journal_op op) noexcept { return op >= journal_op::completed; }

namespace detail {
/// A saga context held without knowing its type: the in-memory journal keeps these (no JSON on
/// the hot path); the file journal serializes them with `to_json`.
struct context_box {
    virtual ~context_box() = default;
    virtual nlohmann::json to_json() const = 0;
    /// A copy of the same type.
    virtual std::unique_ptr<context_box> clone() const = 0;
};
class saga_log;

/// A runner that lists its running sagas itself (internal; see saga_journal::attach).
class log_source {
public:
    /// Appends the logs of the sagas it runs (not the finished ones it retains).
    virtual void collect_logs(std::vector<std::shared_ptr<saga_log>>& out) = 0;

protected:
    ~log_source() = default;
};
}  // namespace detail

/// One journal record. Only the fields its `op` needs are set.
struct journal_record {
    uuid saga_id;
    std::uint64_t seq = 0;  ///< 1, 2, 3... within one saga
    journal_op op = journal_op::started;
    time_point at{};
    std::string step;  ///< step name (step, wait and signal records)
    attempt_kind kind = attempt_kind::action;
    std::uint32_t attempt = 0;
    time_point due{};            ///< step_failed: retry time (zero: none); waiting: deadline
    std::string error;           ///< failures, cancel reason, final failure
    std::string definition;      ///< started: the definition's versioned name
    std::string correlation_id;  ///< started
    std::string signal;          ///< signal_received: the signal's name
    nlohmann::json payload;      ///< signal_received: the signal's payload
    /// started, step_completed (action), signal_received (ending a wait): the context after it.
    std::shared_ptr<const detail::context_box> context;
    /// The context as JSON, when the record was read back from bytes (then `context` is null).
    nlohmann::json context_json;

    /// The context as JSON, whichever form the record holds (null when it has none).
    nlohmann::json context_value() const { return context ? context->to_json() : context_json; }
    bool has_context() const noexcept { return context != nullptr || !context_json.is_null(); }
};

namespace detail {

/// The JSON form of a record (one line of the file journal, without its checksum).
inline nlohmann::json record_to_json(const journal_record& r) {
    nlohmann::json j{{"saga", r.saga_id.to_string()}, {"seq", r.seq}, {"op", to_string(r.op)}, {"at", to_ns(r.at)}};
    if (!r.step.empty()) {
        j["step"] = r.step;
        j["kind"] = to_string(r.kind);
        j["attempt"] = r.attempt;
    }
    if (r.due != time_point{}) j["due"] = to_ns(r.due);
    if (!r.error.empty()) j["error"] = r.error;
    if (!r.definition.empty()) j["def"] = r.definition;
    if (!r.correlation_id.empty()) j["corr"] = r.correlation_id;
    if (!r.signal.empty()) {
        j["signal"] = r.signal;
        j["payload"] = r.payload;
    }
    if (r.has_context()) j["ctx"] = r.context_value();
    return j;
}

template <class Int>
void append_json_int(std::string& out, Int v) {
    char buf[24];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, static_cast<std::size_t>(res.ptr - buf));
}

/// Appends the JSON text of a record: exactly `record_to_json(r).dump()` (same keys, same sorted
/// order, same escaping), written directly instead of through a JSON tree, which made the file
/// journal spend ~10k instructions per record. One difference: a string that is not UTF-8
/// gets U+FFFD for its bad bytes (the tree's dump() would throw out of the journal).
inline void append_record_json(std::string& out, const journal_record& r) {
    const bool has_step = !r.step.empty();
    const bool has_signal = !r.signal.empty();
    // Keys in std::map order, as nlohmann's object keeps them.
    out.append("{\"at\":");
    append_json_int(out, to_ns(r.at));
    if (has_step) {
        out.append(",\"attempt\":");
        append_json_int(out, r.attempt);
    }
    if (!r.correlation_id.empty()) {
        out.append(",\"corr\":");
        append_json_string(out, r.correlation_id);
    }
    if (r.has_context()) {
        out.append(",\"ctx\":");
        out += r.context_value().dump();
    }
    if (!r.definition.empty()) {
        out.append(",\"def\":");
        append_json_string(out, r.definition);
    }
    if (r.due != time_point{}) {
        out.append(",\"due\":");
        append_json_int(out, to_ns(r.due));
    }
    if (!r.error.empty()) {
        out.append(",\"error\":");
        append_json_string(out, r.error);
    }
    if (has_step) {
        out.append(",\"kind\":\"").append(to_string(r.kind)).append(1, '"');
    }
    out.append(",\"op\":\"").append(to_string(r.op)).append(1, '"');
    if (has_signal) {
        out.append(",\"payload\":");
        out += r.payload.dump();
    }
    out.append(",\"saga\":\"");
    char id[uuid::text_size];
    r.saga_id.to_chars(id);
    out.append(id, uuid::text_size).append("\",\"seq\":");
    append_json_int(out, r.seq);
    if (has_signal) {
        out.append(",\"signal\":");
        append_json_string(out, r.signal);
    }
    if (has_step) {
        out.append(",\"step\":");
        append_json_string(out, r.step);
    }
    out.append(1, '}');
}

/// `v` as an int64 when it is a JSON integer that fits. Integer fields are read only this way:
/// nlohmann converts a float (1e300) or an out-of-range number with undefined behaviour
/// (found by fuzz/saga_journal.fuzz.cpp).
inline bool journal_int(const nlohmann::json& v, std::int64_t& out) noexcept {
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
        out = static_cast<std::int64_t>(u);
        return true;
    }
    if (!v.is_number_integer()) return false;
    out = v.get<std::int64_t>();
    return true;
}

/// Parses what record_to_json wrote; the error text says which field is wrong.
inline result<journal_record> record_from_json(const nlohmann::json& j) {
    auto bad = [](std::string what) { return unexpected(errc::malformed_envelope, std::move(what)); };
    if (!j.is_object()) return bad("not a JSON object");
    journal_record r;
    try {
        auto id = uuid::parse(j.at("saga").get<std::string>());
        if (!id) return bad("bad saga id");
        r.saga_id = *id;
        std::int64_t n = 0;
        if (!j.at("seq").is_number_unsigned()) return bad("field 'seq' must be a non-negative integer");
        r.seq = j.at("seq").get<std::uint64_t>();
        const auto op = j.at("op").get<std::string>();
        bool found = false;
        for (int i = 0; i <= static_cast<int>(journal_op::cancelled); ++i) {
            if (to_string(static_cast<journal_op>(i)) == op) {
                r.op = static_cast<journal_op>(i);
                found = true;
            }
        }
        if (!found) return bad("unknown op " + quote_for_message(op, 64));
        if (!journal_int(j.at("at"), n)) return bad("field 'at' must be an integer (nanoseconds)");
        r.at = from_ns(n);
        if (auto it = j.find("step"); it != j.end()) {
            r.step = it->get<std::string>();
            const auto kind = j.at("kind").get<std::string>();
            if (kind == "action") r.kind = attempt_kind::action;
            else if (kind == "compensation") r.kind = attempt_kind::compensation;
            else if (kind == "signal") r.kind = attempt_kind::signal;
            else return bad("unknown kind " + quote_for_message(kind, 64));
            if (!journal_int(j.at("attempt"), n) || n < 0 || n > std::numeric_limits<std::uint32_t>::max())
                return bad("field 'attempt' must be an integer in 0..4294967295");
            r.attempt = static_cast<std::uint32_t>(n);
        }
        if (auto it = j.find("due"); it != j.end()) {
            if (!journal_int(*it, n)) return bad("field 'due' must be an integer (nanoseconds)");
            r.due = from_ns(n);
        }
        if (auto it = j.find("error"); it != j.end()) r.error = it->get<std::string>();
        if (auto it = j.find("def"); it != j.end()) r.definition = it->get<std::string>();
        if (auto it = j.find("corr"); it != j.end()) r.correlation_id = it->get<std::string>();
        if (auto it = j.find("signal"); it != j.end()) {
            r.signal = it->get<std::string>();
            r.payload = j.value("payload", nlohmann::json());
        }
        if (auto it = j.find("ctx"); it != j.end()) r.context_json = *it;
    } catch (const nlohmann::json::exception& e) {
        return bad(std::string("bad field: ") + e.what());
    }
    return r;
}
}  // namespace detail

/// Where a saga runner writes its records.
///
/// Thread safety: `append` is called concurrently by different sagas; implementations lock.
/// Ordering: the records of one saga are appended in `seq` order, never concurrently.
class saga_journal {
public:
    virtual ~saga_journal() = default;
    /// Stores `r` durably enough for this journal's promise; the transition it describes takes
    /// effect only after this returns success.
    virtual result<void> append(const journal_record& r) = 0;
    /// Every stored record, each saga's in `seq` order. Errors: saga_errc::journal_corrupt or
    /// saga_errc::journal_io, naming the file and the record.
    virtual result<std::vector<journal_record>> load() = 0;

    /// For journals that live in the same process as the runner (internal): true when this
    /// journal keeps `log` itself, the saga's own record list, instead of copies of its records.
    /// Then a record is journaled when the saga publishes it into the log, and `append` is not
    /// called for that saga. `recovered`: the saga was rebuilt from what load() returned, and
    /// its log takes the place of the records it came from. A journal that keeps a log past its
    /// runner must hold its names too (`log->names()->shared_from_this()`): the log points at
    /// its definition's, which the runner keeps only while it or one of its sagas lives.
    virtual bool adopt(const std::shared_ptr<detail::saga_log>& log, bool recovered) {
        (void)log;
        (void)recovered;
        return false;
    }
    /// A saga the journal keeps the log of ended (`finished`: its final record is in the log),
    /// or never started (its start failed: nothing of it is kept). `adopted`: adopt() took its
    /// log, or may have (an attached runner that went may have handed it over); false for a saga
    /// of an attached runner, whose log the journal never held.
    virtual void retire(const std::shared_ptr<detail::saga_log>& log, bool finished, bool adopted) {
        (void)log;
        (void)finished;
        (void)adopted;
    }

    /// For journals that keep logs (internal): a runner that lists its running sagas itself
    /// offers them as `src`. True when this journal then keeps the logs of the sagas that runner
    /// starts through it, without adopt() per saga: load() asks `src` for them (taking the
    /// runner's lock under the journal's; the runner never calls the journal under its own).
    /// adopt() is still called for recovered sagas, and retire() for every saga that ends.
    virtual bool attach(detail::log_source& src) {
        (void)src;
        return false;
    }
    /// The attached runner `src` goes: the journal takes over the logs of its running sagas.
    virtual void detach(detail::log_source& src) { (void)src; }
};

COURIER_END_NAMESPACE
