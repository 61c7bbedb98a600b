// Running independent calls side by side on one process-wide, bounded set of threads (storage
// round trips of a request: write grants, landed-content checks), instead of starting threads
// per request.
#pragma once

#include <cstddef>
#include <functional>

namespace ds {

// Threads of the shared pool ParallelFor uses; started on first use, never more.
inline constexpr size_t kSharedPoolThreads = 16;

// Calls fn(i) once for every i in [0, n) and returns when all calls have returned. The calls run
// on the calling thread and on up to max_helpers - 1 threads of the shared pool, as many as are
// free: when the pool is busy with other callers the calling thread does the work itself, so a
// call always makes progress (also when made from a pool thread) and the process never runs more
// than kSharedPoolThreads helper threads however many requests call this at once.
// fn must be safe to call concurrently for different i.
void ParallelFor(size_t n, size_t max_helpers, const std::function<void(size_t)>& fn);

}  // namespace ds
