// The default saga journal: records in memory. It survives a runner (give the same object to a
// new runner and `recover()`), not a process.
#pragma once

#include <courier/core/config.hpp>
#include <courier/saga/detail/saga_log.hpp>
#include <courier/saga/journal.hpp>

#include <algorithm>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// The default journal: records in memory, grouped per saga. A finished saga's records are
/// dropped at its final record (unless `keep_finished`), so a long-running process does not grow.
///
/// Cost: for a runner's sagas it keeps each saga's own record list (see saga_journal::adopt), so
/// journaling a transition is the saga publishing a record it writes anyway: no copy, no lock,
/// no lookup. A runner lists its running sagas anyway, so the journal finds their logs there
/// when it is asked (load(), sagas()) and takes no lock of its own per saga; it takes over the
/// logs of a runner that goes with sagas unfinished. Records given to `append` directly are
/// copied into lists of their own.
///
/// Thread safety: every member may be called concurrently.
class memory_journal final : public saga_journal {
public:
    explicit memory_journal(bool keep_finished = false) : keep_finished_(keep_finished) {}
    ~memory_journal() override {
        std::vector<std::shared_ptr<detail::saga_log>> held;  // released after the lock
        std::lock_guard lock(mutex_);
        while (head_ != nullptr) held.push_back(unlink(*head_));
    }
    memory_journal(const memory_journal&) = delete;
    memory_journal& operator=(const memory_journal&) = delete;

    result<void> append(const journal_record& r) override {
        std::shared_ptr<detail::saga_log> dropped;  // released after the lock
        std::lock_guard lock(mutex_);
        auto it = direct_.find(r.saga_id);
        if (is_final(r.op) && !keep_finished_) {
            if (it != direct_.end()) {
                dropped = std::move(it->second);
                direct_.erase(it);
            }
            return {};
        }
        if (it == direct_.end())
            it = direct_.emplace(r.saga_id, std::make_shared<detail::saga_log>(r.saga_id, nullptr, "")).first;
        detail::saga_log& log = *it->second;
        detail::log_record& m = log.prepare();
        try {
            detail::copy_common_fields(m, r);
            if (r.context) m.context = r.context->clone();
            if (!r.step.empty() || !r.error.empty() || !r.definition.empty() || !r.correlation_id.empty() ||
                !r.signal.empty() || !r.payload.is_null() || !r.context_json.is_null())
                m.rare.reset(new detail::log_rare{r.step, r.error, r.definition, r.correlation_id, r.signal, r.payload,
                                                  r.context_json});
        } catch (...) {
            log.discard();
            throw;
        }
        log.publish();
        return {};
    }

    result<std::vector<journal_record>> load() override {
        std::vector<std::shared_ptr<detail::saga_log>> running;  // released after the lock
        std::lock_guard lock(mutex_);
        std::vector<journal_record> out;
        loaded_.clear();
        for (detail::saga_log* log = head_; log != nullptr; log = log->journal_next) {
            emit(*log, log->journal_hold, out);
            loaded_.emplace(log->id(), log);
        }
        for (auto& [id, log] : direct_) emit(*log, log, out);
        // The running sagas of attached runners. A saga listed twice (two runners recovered the
        // same saga from this journal) shows once, with the records this journal holds.
        collect_running(running);
        for (auto& log : running)
            if (!held_here(log->id())) emit(*log, log, out);
        return out;
    }

    bool adopt(const std::shared_ptr<detail::saga_log>& log, bool recovered) override {
        std::shared_ptr<detail::saga_log> replaced;  // released after the lock
        std::lock_guard lock(mutex_);
        // A saga recovered from this journal replays into a log of its own, which replaces the
        // one load() gave its records from.
        if (recovered && !loaded_.empty()) {
            if (auto it = loaded_.find(log->id()); it != loaded_.end()) {
                replaced = unlink(*it->second);
                loaded_.erase(it);
            }
        }
        if (recovered && !direct_.empty()) {
            if (auto it = direct_.find(log->id()); it != direct_.end()) {
                replaced = std::move(it->second);
                direct_.erase(it);
            }
        }
        link(log);
        return true;
    }

    void retire(const std::shared_ptr<detail::saga_log>& log, bool finished, bool adopted) override {
        const bool keep = finished && keep_finished_;
        if (!adopted && !keep) return;  // an attached runner's saga: never held here
        std::shared_ptr<detail::saga_log> held;  // released after the lock
        std::lock_guard lock(mutex_);
        if (keep) {
            link_unless_listed(log);
            return;
        }
        if (log->journal_hold == nullptr) return;  // replaced (the saga was recovered elsewhere)
        if (!loaded_.empty()) loaded_.erase(log->id());
        held = unlink(*log);
    }

    bool attach(detail::log_source& src) override {
        std::lock_guard lock(mutex_);
        sources_.push_back(&src);
        return true;
    }

    void detach(detail::log_source& src) override {
        std::vector<std::shared_ptr<detail::saga_log>> running;  // released after the lock
        std::lock_guard lock(mutex_);
        auto it = std::find(sources_.begin(), sources_.end(), &src);
        if (it == sources_.end()) return;
        src.collect_logs(running);
        sources_.erase(it);
        for (auto& log : running) link_unless_listed(log);
    }

    /// Sagas with records held.
    std::size_t sagas() const {
        std::vector<std::shared_ptr<detail::saga_log>> running;  // released after the lock
        std::lock_guard lock(mutex_);
        collect_running(running);
        std::unordered_set<uuid> counted;
        for (auto& log : running)
            if (!held_here(log->id())) counted.insert(log->id());
        return listed_ + direct_.size() + counted.size();
    }

private:
    static void emit(const detail::saga_log& log, const std::shared_ptr<const void>& owner,
                     std::vector<journal_record>& out) {
        const std::size_t n = log.size();
        for (std::size_t i = 0; i < n; ++i) out.push_back(log.to_record(i, owner));
    }

    // Caller holds mutex_ (the sources take their runner's lock under it).
    // (The caller releases them after the lock: the last hold on a log runs context destructors.)
    void collect_running(std::vector<std::shared_ptr<detail::saga_log>>& logs) const {
        for (auto* src : sources_) src->collect_logs(logs);
    }

    // Caller holds mutex_.
    void link(const std::shared_ptr<detail::saga_log>& log) {
        // The log may outlive its runner and definition here: it holds its names from now on.
        if (log->names() != nullptr && log->journal_names == nullptr) log->journal_names = log->names()->shared_from_this();
        log->journal_hold = log;
        log->journal_prev = tail_;
        if (tail_ != nullptr) tail_->journal_next = log.get();
        else head_ = log.get();
        tail_ = log.get();
        ++listed_;
        linked_ids_.insert(log->id());
    }

    // Caller holds mutex_: whether the journal holds records of saga `id` itself.
    bool held_here(const uuid& id) const { return linked_ids_.count(id) != 0 || direct_.count(id) != 0; }
    // Caller holds mutex_. A saga listed under its id already (recovered by another runner from
    // here) keeps the log it has.
    void link_unless_listed(const std::shared_ptr<detail::saga_log>& log) {
        if (log->journal_hold == nullptr && linked_ids_.count(log->id()) == 0) link(log);
    }

    // Caller holds mutex_; returns the journal's hold on `log`.
    std::shared_ptr<detail::saga_log> unlink(detail::saga_log& log) {
        if (log.journal_prev != nullptr) log.journal_prev->journal_next = log.journal_next;
        else head_ = log.journal_next;
        if (log.journal_next != nullptr) log.journal_next->journal_prev = log.journal_prev;
        else tail_ = log.journal_prev;
        log.journal_prev = log.journal_next = nullptr;
        --listed_;
        if (auto it = linked_ids_.find(log.id()); it != linked_ids_.end()) linked_ids_.erase(it);
        return std::move(log.journal_hold);
    }

    mutable std::mutex mutex_;
    detail::saga_log* head_ = nullptr;  // adopted logs, oldest first
    detail::saga_log* tail_ = nullptr;
    std::size_t listed_ = 0;
    std::unordered_map<uuid, std::shared_ptr<detail::saga_log>> direct_;  // records given to append()
    std::unordered_map<uuid, detail::saga_log*> loaded_;  // adopted logs as the last load() found them
    std::vector<detail::log_source*> sources_;            // attached runners
    std::unordered_multiset<uuid> linked_ids_;            // the sagas of the logs listed from head_
    bool keep_finished_;
};

COURIER_END_NAMESPACE
