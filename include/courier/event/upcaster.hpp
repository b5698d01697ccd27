// Schema evolution: an `upcaster_registry` holds one step per (event, version) that turns
// v(N) data into v(N+1) data, and `upcast` chains the steps, so a subscriber of
// `order.created.v3` can receive a `v1` event. The registry, not the step, sets the new
// event_type and version, so an upcast envelope always has the version asked for.
#pragma once

#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/result.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/event_traits.hpp>

#include <nlohmann/json.hpp>

#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// Upcasters for versioned events, and the chaining that applies them.
///
/// A step is registered for a source name, e.g. `order.created.v1`, and converts that
/// version's data into the next version's (v2). `upcast(e, 3)` applies v1->v2 then v2->v3.
///
/// Thread safety: every member may be called concurrently. Registration takes an exclusive
/// lock and is meant for setup time; `upcast` and `can_upcast` take a shared lock only to
/// look the steps up, then run them unlocked (steps are never removed or replaced, so a
/// step found stays valid). Steps may therefore run concurrently with each other and must
/// be thread-safe themselves (plain functions of their input are).
/// Errors: see each member. A step that throws is reported, never propagated.
///
/// Example:
/// ```
/// courier::upcaster_registry upcasters;
/// auto ok = upcasters.add("order.created.v1", [](nlohmann::json d) {
///     d["currency"] = "EUR";                           // v2 added a currency
///     return d;
/// });
/// auto v2 = upcasters.upcast(std::move(v1_envelope), 2);   // result<envelope>
/// ```
class upcaster_registry {
public:
    /// Converts the data of version N into the data of version N+1.
    using data_step = std::function<nlohmann::json(nlohmann::json)>;
    /// Converts a whole envelope of version N (data, headers, metadata) into version N+1's.
    /// The registry then sets event_type and version itself.
    using envelope_step = std::function<void(envelope&)>;

    /// Registers the step from `from` (e.g. "order.created.v1") to the next version.
    ///
    /// Errors: errc::duplicate ("[courier.upcast.duplicate]") when that step exists,
    /// errc::invalid_argument ("[courier.upcast.empty_step]") for an empty function or when
    /// `from` is already at the highest version.
    result<void> add(event_name from, data_step step) {
        if (!step) return empty_step(from);
        return insert(from, [fn = std::move(step)](envelope& e) { e.data = fn(std::move(e.data)); });
    }

    /// Registers an envelope-level step from `from` to the next version, for migrations
    /// that also touch headers or metadata.
    ///
    /// Errors: as `add`.
    result<void> add_envelope_step(event_name from, envelope_step step) {
        if (!step) return empty_step(from);
        return insert(from, std::move(step));
    }

    /// Registers a typed step: `fn(From) -> To`, where From and To are typed events of the
    /// same base name and To's version is From's plus one (both checked at compile time).
    /// The step converts through From's from_json and To's to_json.
    ///
    /// Errors: as `add`; at run time, data that does not convert to From fails the upcast.
    template <typed_event From, typed_event To, class F>
        requires std::is_invocable_r_v<To, F&, From>
    result<void> add_typed(F fn) {
        static_assert(event_type_of<From>().base() == event_type_of<To>().base(),
                      "an upcaster converts between versions of one event: From and To must share their base name");
        static_assert(event_type_of<To>().version() == event_type_of<From>().version() + 1,
                      "an upcaster converts version N to version N+1");
        return add(event_type_of<From>(), [fn = std::move(fn)](nlohmann::json data) mutable {
            return nlohmann::json(std::invoke(fn, data.template get<From>()));
        });
    }

    /// `e` brought to `target_version` by the registered steps, in order.
    ///
    /// `e` is returned unchanged when it already has that version. All steps are looked up
    /// before any runs, so a missing step costs no work. The result always has
    /// `version == target_version` and the matching event_type.
    ///
    /// Errors:
    /// - errc::invalid_name: e.event_type is not a valid event name;
    /// - errc::version_mismatch, "[courier.upcast.inconsistent_version]": e.version differs from
    ///   the event_type's vN; "[courier.upcast.downcast]": target_version is lower than
    ///   e's version; "[courier.upcast.missing_step]": a step of the chain is not registered
    ///   (the message names it);
    /// - errc::invalid_argument, "[courier.upcast.bad_target]": target_version < 1;
    /// - errc::handler_failed, "[courier.upcast.failed]": a step threw (the message says
    ///   which step and what it threw).
    result<envelope> upcast(envelope e, int target_version) const {
        const auto name = event_name::parse(e.event_type);
        if (!name) return unexpected(name.error());
        const int from = name->version();
        if (e.version != from) {
            return unexpected(errc::version_mismatch, "[courier.upcast.inconsistent_version] envelope version " +
                                                          std::to_string(e.version) + " does not match event_type " +
                                                          e.event_type);
        }
        if (target_version < 1 || target_version > detail::max_event_version) {
            return unexpected(errc::invalid_argument, "[courier.upcast.bad_target] target version " +
                                                          std::to_string(target_version) + " is not a valid version");
        }
        if (target_version == from) return e;
        if (target_version < from) {
            return unexpected(errc::version_mismatch, "[courier.upcast.downcast] cannot bring " + e.event_type +
                                                          " down to v" + std::to_string(target_version) +
                                                          ": only upcasting is supported");
        }
        const std::string base(name->base());  // a copy: the steps may change e.event_type
        auto steps = find_chain(base, from, target_version);
        if (!steps) return unexpected(std::move(steps).error());

        int version = from;
        for (const envelope_step* step : *steps) {
            try {
                (*step)(e);
            } catch (const std::exception& ex) {
                return step_failed(base, version, ex.what());
            } catch (...) {
                return step_failed(base, version, "a non-standard exception");
            }
            ++version;
            e.version = version;
            // Built from the copied base: `name` views e.event_type, which this overwrites.
            e.event_type = base + ".v" + std::to_string(version);
        }
        return e;
    }

    /// True when steps are registered for every version from `from_version` to
    /// `to_version` of `base` ("order.created"); true when the versions are equal.
    bool can_upcast(std::string_view base, int from_version, int to_version) const {
        if (from_version == to_version) return from_version >= 1;
        if (from_version < 1 || to_version < from_version) return false;
        std::shared_lock lock(mutex_);
        for (int v = from_version; v < to_version; ++v)
            if (steps_.find(key_view{base, v}) == steps_.end()) return false;
        return true;
    }

    /// Number of registered steps.
    std::size_t size() const {
        std::shared_lock lock(mutex_);
        return steps_.size();
    }

private:
    struct key {
        std::string base;
        int from;
    };
    struct key_view {
        std::string_view base;
        int from;
    };
    // Transparent, so lookups take a string_view without building a std::string.
    struct key_less {
        using is_transparent = void;
        template <class A, class B>
        bool operator()(const A& a, const B& b) const noexcept {
            const int c = std::string_view(a.base).compare(std::string_view(b.base));
            return c < 0 || (c == 0 && a.from < b.from);
        }
    };

    static unexpected empty_step(event_name from) {
        return unexpected(errc::invalid_argument,
                          "[courier.upcast.empty_step] the upcaster for " + from.to_string() + " is an empty function");
    }
    static unexpected step_failed(const std::string& base, int version, const std::string& what) {
        return unexpected(errc::handler_failed, "[courier.upcast.failed] upcaster " + base + ".v" +
                                                    std::to_string(version) + " -> v" + std::to_string(version + 1) +
                                                    " threw: " + what);
    }

    result<void> insert(event_name from, envelope_step step) {
        if (from.version() >= detail::max_event_version) {
            return unexpected(errc::invalid_argument, "[courier.upcast.empty_step] " + from.to_string() +
                                                          " is the highest version; it cannot be upcast");
        }
        std::unique_lock lock(mutex_);
        // Never replace a step: `upcast` runs steps outside the lock, so a registered step must
        // stay alive and unchanged.
        auto [it, inserted] = steps_.try_emplace(key{std::string(from.base()), from.version()}, std::move(step));
        if (!inserted) {
            return unexpected(errc::duplicate, "[courier.upcast.duplicate] an upcaster for " + from.to_string() +
                                                   " -> v" + std::to_string(from.version() + 1) +
                                                   " is already registered");
        }
        return {};
    }

    result<std::vector<const envelope_step*>> find_chain(const std::string& base, int from, int to) const {
        std::vector<const envelope_step*> chain;
        chain.reserve(static_cast<std::size_t>(to - from));
        std::shared_lock lock(mutex_);
        for (int v = from; v < to; ++v) {
            auto it = steps_.find(key_view{base, v});
            if (it == steps_.end()) {
                return unexpected(errc::version_mismatch, "[courier.upcast.missing_step] no upcaster registered for " +
                                                              base + ".v" + std::to_string(v) + " -> v" +
                                                              std::to_string(v + 1) + " (needed to bring " + base +
                                                              ".v" + std::to_string(from) + " to v" +
                                                              std::to_string(to) + ")");
            }
            chain.push_back(&it->second);  // std::map nodes are stable and never erased
        }
        return chain;
    }

    mutable std::shared_mutex mutex_;
    std::map<key, envelope_step, key_less> steps_;
};

COURIER_END_NAMESPACE
