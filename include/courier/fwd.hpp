// Forward declarations of courier's main types, for headers that only name them.
#pragma once

#include <courier/core/config.hpp>

#include <cstdint>

COURIER_BEGIN_NAMESPACE

class clock;
class manual_clock;
class system_clock;
struct error;
template <class T>
class result;
class uuid;
enum class errc : int;

enum class queue_status : std::uint8_t;
enum class overflow_policy : std::uint8_t;
struct mpmc_queue_traits;
template <class T, class Traits>
class mpmc_queue;
template <class T>
class bounded_queue;

class event_name;
class topic_pattern;
struct envelope;
struct event_metadata;
class upcaster_registry;

class event_bus;
class subscription;
struct subscription_options;
class message_context;
class dead_letter_store;
struct dead_letter;
class idempotency_store;

class timer_service;
class runtime;
struct runtime_options;
class saga_runner;
template <class Ctx>
class saga_definition;
class saga_journal;
class memory_journal;
class file_journal;
struct journal_record;
struct saga_info;
struct saga_options;
enum class saga_state : std::uint8_t;
enum class saga_errc : int;

COURIER_END_NAMESPACE
