// The saga journal: every transition of every saga is appended here before it takes effect,
// so that `saga_runner::recover()` can rebuild each unfinished saga after a restart.
// `saga_journal` is the interface, `memory_journal` the default (it survives a runner, not a
// process); file_journal.hpp holds the durable one.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/result.hpp>
#include <courier/core/uuid.hpp>
#include <courier/saga/saga_state.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
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
        if (!found) return bad("unknown op '" + op + "'");
        if (!journal_int(j.at("at"), n)) return bad("field 'at' must be an integer (nanoseconds)");
        r.at = from_ns(n);
        if (auto it = j.find("step"); it != j.end()) {
            r.step = it->get<std::string>();
            const auto kind = j.at("kind").get<std::string>();
            if (kind == "action") r.kind = attempt_kind::action;
            else if (kind == "compensation") r.kind = attempt_kind::compensation;
            else if (kind == "signal") r.kind = attempt_kind::signal;
            else return bad("unknown kind '" + kind + "'");
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
};

/// The default journal: records in memory, grouped per saga. A finished saga's records are
/// dropped at its final record (unless `keep_finished`), so a long-running process does not grow.
/// It survives a runner (give the same object to a new runner and `recover()`), not a process.
///
/// Thread safety: every member may be called concurrently.
class memory_journal final : public saga_journal {
public:
    explicit memory_journal(bool keep_finished = false) : keep_finished_(keep_finished) {}

    result<void> append(const journal_record& r) override {
        std::lock_guard lock(mutex_);
        if (is_final(r.op) && !keep_finished_) {
            sagas_.erase(r.saga_id);
            return {};
        }
        auto& records = sagas_[r.saga_id];
        if (records.empty()) records.reserve(16);
        records.push_back(r);
        return {};
    }
    result<std::vector<journal_record>> load() override {
        std::lock_guard lock(mutex_);
        std::vector<journal_record> out;
        for (auto& [id, recs] : sagas_) out.insert(out.end(), recs.begin(), recs.end());
        return out;
    }
    /// Sagas with records held.
    std::size_t sagas() const {
        std::lock_guard lock(mutex_);
        return sagas_.size();
    }

private:
    mutable std::mutex mutex_;
    std::unordered_map<uuid, std::vector<journal_record>> sagas_;
    bool keep_finished_;
};

COURIER_END_NAMESPACE
