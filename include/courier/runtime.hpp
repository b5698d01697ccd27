// courier::runtime: the one object applications make (executor, clock, timers, bus).
#pragma once

#include <courier/runtime/runtime.hpp>
