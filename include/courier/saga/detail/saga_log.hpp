// Internals: the records of one saga, in the order they were made. The saga's strand is the
// only writer; queries and the memory journal read concurrently. A record is written into a
// slot that nobody reads yet, then published by one release store of the count, so neither side
// takes a lock per transition (a lock per record and a journal mutex per record were ~20% of a
// saga of three no-op steps). A published record never changes.
#pragma once

#include <courier/core/config.hpp>
#include <courier/saga/journal.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

COURIER_BEGIN_NAMESPACE
namespace detail {

/// A record's step as an index into the definition's steps; `no_step` when it has none.
inline constexpr std::uint32_t no_step = 0xFFFFFFFFu;

/// The names a saga's records point into: its definition's, shared by every saga of it.
struct log_names : std::enable_shared_from_this<log_names> {
    std::string definition;
    std::vector<std::string> steps;
};

/// What few records carry: behind one pointer that stays null on the hot path.
struct log_rare {
    std::string step;  ///< a step name the definition does not know (records appended by hand)
    std::string error, definition, correlation_id, signal;
    nlohmann::json payload, context_json;
};

/// One record as a saga's log keeps it.
struct log_record {
    std::uint64_t seq = 0;
    time_point at{}, due{};
    std::uint32_t attempt = 0;
    std::uint32_t step = no_step;
    journal_op op = journal_op::started;
    attempt_kind kind = attempt_kind::action;
    std::unique_ptr<context_box> context;  ///< the context after it (typed), when it has one
    std::unique_ptr<log_rare> rare;

    std::string_view error() const noexcept { return rare ? std::string_view(rare->error) : std::string_view(); }
    bool has_step() const noexcept { return step != no_step || (rare && !rare->step.empty()); }
};

/// Copies what every record has (not its step, context or rare fields) from a journal record.
inline void copy_common_fields(log_record& m, const journal_record& r) noexcept {
    m.seq = r.seq;
    m.at = r.at;
    m.due = r.due;
    m.attempt = r.attempt;
    m.op = r.op;
    m.kind = r.kind;
}

/// The append-only log of one saga.
///
/// Thread safety: one writer at a time (prepare, then publish or discard); readers call size()
/// first and read only records below it. Records never move: the first few are inline, later ones in
/// linked chunks.
class saga_log {
public:
    /// `names`: the definition's (a record's step index points into them); null for records
    /// appended by hand, which carry their names. Not owned: the runner keeps its definitions
    /// while it or any of its sagas lives, and a journal that keeps the log past them holds the
    /// names through `journal_names`.
    saga_log(const uuid& id, const log_names* names, std::string&& correlation)
        : id_(id), names_(names), correlation_(std::move(correlation)) {}
    saga_log(const saga_log&) = delete;
    saga_log& operator=(const saga_log&) = delete;
    ~saga_log() {
        const std::size_t n = size_.load(std::memory_order_relaxed);
        for (std::size_t i = 0; i < n && i < inline_records; ++i) std::destroy_at(&inline_[i].record);
        for (chunk* c = first_chunk_; c != nullptr;) {
            chunk* next = c->next;
            delete c;
            c = next;
        }
    }

    const uuid& id() const noexcept { return id_; }
    const log_names* names() const noexcept { return names_; }
    std::string_view definition() const noexcept { return names_ ? std::string_view(names_->definition) : std::string_view(); }
    /// The correlation id given at start (empty: the saga id stands in).
    const std::string& correlation() const noexcept { return correlation_; }

    // ------------------------------------------------------------------ writer
    /// The slot after the last record, not yet visible to readers; publish() or discard() it
    /// before the next prepare().
    log_record& prepare() {
        const std::size_t n = size_.load(std::memory_order_relaxed);
        if (n < inline_records) return *std::construct_at(&inline_[n].record);
        const std::size_t k = n - inline_records;
        if (k / chunk_records == chunks_) {  // (a discarded record leaves its chunk for the next)
            auto* c = new chunk;
            if (last_chunk_ == nullptr) first_chunk_ = c;
            else last_chunk_->next = c;
            last_chunk_ = c;
            ++chunks_;
        }
        return last_chunk_->records[k % chunk_records];
    }
    /// Makes the prepared record visible.
    void publish() noexcept { size_.store(size_.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
    /// Forgets the prepared record (its journal append failed).
    void discard() noexcept {
        const std::size_t n = size_.load(std::memory_order_relaxed);
        if (n < inline_records) std::destroy_at(&inline_[n].record);
        else last_chunk_->records[(n - inline_records) % chunk_records] = log_record{};
    }

    // ------------------------------------------------------------------ readers
    std::size_t size() const noexcept { return size_.load(std::memory_order_acquire); }
    /// Record `i` (below a size() read before).
    const log_record& operator[](std::size_t i) const noexcept {
        if (i < inline_records) return inline_[i].record;
        i -= inline_records;
        // Chunks are linked before the records in them are published: the acquire in size()
        // that made record i readable made the links to it readable too.
        const chunk* c = first_chunk_;
        for (; i >= chunk_records; i -= chunk_records) c = c->next;
        return c->records[i];
    }
    /// The name of a record's step (empty when it has none).
    std::string_view step_name(const log_record& r) const noexcept {
        if (r.rare && !r.rare->step.empty()) return r.rare->step;
        if (r.step != no_step && names_ && r.step < names_->steps.size()) return names_->steps[r.step];
        return {};
    }

    /// Record `i` as a journal_record. Its context aliases `owner` (which keeps this log alive),
    /// or, with a null owner, is valid only as long as the record is.
    journal_record to_record(std::size_t i, const std::shared_ptr<const void>& owner) const {
        return to_record((*this)[i], owner);
    }
    journal_record to_record(const log_record& m, const std::shared_ptr<const void>& owner) const {
        journal_record r;
        r.saga_id = id_;
        r.seq = m.seq;
        r.op = m.op;
        r.at = m.at;
        r.step = std::string(step_name(m));
        r.kind = m.kind;
        r.attempt = m.attempt;
        r.due = m.due;
        if (m.context) r.context = std::shared_ptr<const context_box>(owner, m.context.get());
        if (m.op == journal_op::started) {
            r.definition = std::string(definition());
            r.correlation_id = correlation_;
        }
        if (m.rare) {
            r.error = m.rare->error;
            if (!m.rare->definition.empty()) r.definition = m.rare->definition;
            if (!m.rare->correlation_id.empty()) r.correlation_id = m.rare->correlation_id;
            r.signal = m.rare->signal;
            r.payload = m.rare->payload;
            r.context_json = m.rare->context_json;
        }
        return r;
    }

    // The memory journal's list of the logs it keeps (guarded by its lock).
    saga_log* journal_prev = nullptr;
    saga_log* journal_next = nullptr;
    std::shared_ptr<saga_log> journal_hold;  // set while listed: the journal keeps the log alive
    std::shared_ptr<const log_names> journal_names;  // set when first listed (the journal may outlive the runner)

private:
    static constexpr std::size_t inline_records = 8;  // a saga of three steps writes 8
    static constexpr std::size_t chunk_records = 16;
    struct chunk {
        log_record records[chunk_records];
        chunk* next = nullptr;
    };
    uuid id_;
    const log_names* names_;
    std::string correlation_;
    std::atomic<std::size_t> size_{0};
    // Built when written (most sagas use a few of them), destroyed with the log.
    union inline_slot {
        inline_slot() noexcept {}
        ~inline_slot() {}
        log_record record;
    };
    inline_slot inline_[inline_records];
    chunk* first_chunk_ = nullptr;
    chunk* last_chunk_ = nullptr;
    std::size_t chunks_ = 0;
};

}  // namespace detail
COURIER_END_NAMESPACE
